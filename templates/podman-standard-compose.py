#!/usr/bin/python3
# managed by podman-standard (operations/compose.py); local changes are overwritten.
"""Bounded podman-compose for one compose project (standard §2.3, §7.2), run as the project's
user in the project's directory:

  compose up    PROJECT FILE TIMEOUT --record FILE --inputs DIGEST   (a deploy run's bring-up)
  compose start PROJECT FILE TIMEOUT                                 (the boot unit's start)
  compose stop  PROJECT FILE TIMEOUT                                 (the boot unit's stop)
  compose down  PROJECT FILE TIMEOUT                                 (the project's removal)

Every step, and all of them together, end within TIMEOUT seconds: a podman-compose that does
not finish in time is killed with everything it started (its process group), e.g. podman-compose
>= 1.1 waiting without end in ``podman wait --condition=running`` for a dependency that exited.
``up`` and ``start`` then wait, within the same TIMEOUT, until every container of the project
runs (and is healthy where it has a health check). A timeout, a container that exited or is
unhealthy ends the command with status 1, naming the project and each such container and
printing its last log lines.

``up`` re-creates only the services whose inputs changed since the last successful ``up``
(recorded in --record): a service's definition in FILE, the variables it reads ($VAR, ${VAR}:
from .env or the environment), the files its env_file names, and the file's top-level keys other
than ``services`` (networks, volumes). podman-compose's own ``up`` re-creates every container
of the project (>= 1.1: when its config-hash label differs) or none (1.0), so the changed
services' containers are removed first and ``up -d`` is given those services. A changed service
takes along every service linked to it by ``depends_on``, ``links`` or ``extends``, either way:
podman-compose >= 1.1 creates a dependent with ``--requires`` on its dependency's container
(which podman then refuses to remove alone) and takes a named service's dependencies down
with it. The linked containers are removed dependents first. The record is written only when
the project is up: a failed bring-up is tried again by the next run.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
LOG_LINES = 20
POLL_S = 2
# $VAR or ${VAR...}; "$$" is a literal "$" in compose files.
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


class Failed(Exception):
    """The project did not come up: the message, and the containers to show logs of."""

    def __init__(self, message, containers=()):
        super().__init__(message)
        self.containers = list(containers)


def run(command, deadline, what):
    """``command`` (a list) within ``deadline`` (time.monotonic()); its output passes through
    to stderr. On time out, its whole process group is killed and Failed raised."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise Failed(f"no time left for {what}")
    proc = subprocess.Popen(command, stdout=sys.stderr, start_new_session=True)
    try:
        return proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        raise Failed(f"{what} did not finish within the project's timeout; stopped") from None


def containers(project):
    """The project's containers: [{name, service, state, status}] from podman's JSON."""
    out = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label={PROJECT_LABEL}={project}", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise Failed(f"podman ps failed: {out.stderr.strip()[-500:]}")
    found = []
    for item in json.loads(out.stdout or "[]") or []:
        names = item.get("Names") or [item.get("Id", "?")[:12]]
        found.append(
            {
                "name": names[0] if isinstance(names, list) else str(names),
                "service": (item.get("Labels") or {}).get(SERVICE_LABEL, ""),
                "state": str(item.get("State", "")).lower(),
                "status": str(item.get("Status", "")),
            }
        )
    return found


def dotenv(path):
    """KEY=VALUE lines of ``path`` (compose's .env; comments and blank lines skipped)."""
    values = {}
    if not os.path.isfile(path):
        return values
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.removeprefix("export ").split("=", 1)
            values[key.strip()] = value.strip()
    return values


def file_digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def load(compose_file):
    import yaml  # podman-compose's own dependency

    with open(compose_file, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def dependencies(data):
    """Service name -> the services it depends on (``depends_on`` as a list or a mapping,
    ``links`` as NAME or NAME:ALIAS, ``extends.service``), only those the file defines."""
    services = data.get("services") or {}
    found = {}
    for name, service in services.items():
        service = service or {}
        named = service.get("depends_on") or []
        named = list(named) if isinstance(named, (list, dict)) else [named]
        links = service.get("links") or []
        named += [
            str(link).split(":", 1)[0] for link in (links if isinstance(links, list) else [links])
        ]
        extends = service.get("extends")
        if isinstance(extends, dict) and extends.get("service"):
            named.append(extends["service"])
        found[name] = {str(n) for n in named if str(n) in services and str(n) != name}
    return found


def linked(services, depends):
    """``services`` and every service reachable from them by a dependency, either way."""
    neighbours = {name: set(deps) for name, deps in depends.items()}
    for name, deps in depends.items():
        for dep in deps:
            neighbours.setdefault(dep, set()).add(name)
    seen, todo = set(), list(services)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(neighbours.get(name, ()))
    return seen


def dependents_first(services, depends):
    """``services`` ordered so that a service comes before the ones it depends on."""
    order, done = [], set()

    def visit(name, path):
        if name in done or name in path:  # a cycle: podman-compose refuses it itself
            return
        for other in sorted(services):
            if name in depends.get(other, ()):
                visit(other, path | {name})
        done.add(name)
        order.append(name)

    for name in sorted(services):
        visit(name, frozenset())
    return order


def service_digests(compose_file, data=None):
    """Service name -> sha256 of everything that service's container is made from."""
    if data is None:
        data = load(compose_file)
    env = {**dotenv(".env")}
    shared = {k: v for k, v in data.items() if k != "services"}
    digests = {}
    for name, service in (data.get("services") or {}).items():
        text = json.dumps([service, shared], sort_keys=True, default=str)
        names = sorted(set(VARIABLE.findall(text.replace("$$", ""))))
        values = {n: env.get(n, os.environ.get(n)) for n in names}
        env_files = (service or {}).get("env_file") or []
        if isinstance(env_files, str):
            env_files = [env_files]
        paths = [e.get("path", "") if isinstance(e, dict) else str(e) for e in env_files]
        reads = {p: file_digest(p) for p in paths}
        blob = json.dumps([service, shared, values, reads], sort_keys=True, default=str)
        digests[name] = hashlib.sha256(blob.encode()).hexdigest()
    return digests


def wait_running(project, services, deadline):
    """Until every container of the project runs (healthy where it has a check) and each of
    ``services`` has one; Failed at once for an exited or unhealthy container, or at the
    deadline naming what is not up."""
    while True:
        found = containers(project)
        down = [c for c in found if c["state"] in ("exited", "dead", "stopped")]
        unhealthy = [c for c in found if "(unhealthy)" in c["status"]]
        if down or unhealthy:
            bad = down + unhealthy
            words = ", ".join(f"{c['name']} ({c['status'] or c['state']})" for c in bad)
            raise Failed(f"container {words} is not running", bad)
        have = {c["service"] for c in found}
        missing = sorted(set(services) - have)
        waiting = [c for c in found if c["state"] != "running" or "(starting)" in c["status"]]
        if found and not missing and not waiting:
            return found
        if time.monotonic() >= deadline:
            words = [f"{c['name']} ({c['status'] or c['state']})" for c in waiting]
            words += [f"service {s} has no container" for s in missing]
            raise Failed(
                f"not up within the project's timeout: {', '.join(words) or 'no containers'}",
                waiting,
            )
        time.sleep(POLL_S)


def compose(args, *words):
    return ["podman-compose", "-p", args.project, "-f", args.file, *words]


def up(args, deadline):
    data = load(args.file)
    wanted = service_digests(args.file, data)
    depends = dependencies(data)
    try:
        with open(args.record, encoding="utf-8") as f:
            recorded = json.load(f).get("services", {})
    except (OSError, ValueError, AttributeError):
        recorded = {}
    found = containers(args.project)
    orphans = [c["name"] for c in found if c["service"] not in wanted]
    changed = {c["service"] for c in found if c["service"] in wanted} - {
        s for s in wanted if recorded.get(s) == wanted[s]
    }
    along = linked(changed, depends) - changed
    recreate = changed | along
    stale = [
        c["name"]
        for service in dependents_first(recreate, depends)
        for c in found
        if c["service"] == service
    ]
    if orphans or stale:
        words = ", ".join(sorted(changed)) or "-"
        if along:
            words += f" (and, linked to it, {', '.join(sorted(along))})"
        print(
            f"compose project {args.project}: re-creating {words}; "
            f"removing {', '.join(orphans) or '-'}",
            file=sys.stderr,
        )
        # One container at a time, dependents first: podman refuses to remove a container
        # another one requires.
        for name in orphans + stale:
            if run(["podman", "rm", "-f", name], deadline, "podman rm") != 0:
                raise Failed(f"podman rm -f {name} failed")
    if not found:
        targets = []  # the whole project
    else:
        have = {c["service"] for c in found if c["name"] not in stale + orphans}
        targets = sorted(set(wanted) - have)
    if not found or targets:
        if run(compose(args, "up", "-d", *targets), deadline, "podman-compose up") != 0:
            raise Failed("podman-compose up failed")
    stopped = [
        c["name"] for c in found if c["name"] not in stale + orphans and c["state"] != "running"
    ]
    if stopped and run(["podman", "start", *stopped], deadline, "podman start") != 0:
        raise Failed(f"podman start {' '.join(stopped)} failed")
    wait_running(args.project, wanted, deadline)
    record = {"inputs": args.inputs, "services": wanted}
    tmp = f"{args.record}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, sort_keys=True)
        f.write("\n")
    os.replace(tmp, args.record)


def start(args, deadline):
    # The containers the last run made (no pull, no re-creation at boot); when there are none
    # (taken down by hand), the whole project is brought up.
    words = ("start",) if containers(args.project) else ("up", "-d")
    if run(compose(args, *words), deadline, f"podman-compose {words[0]}") != 0:
        raise Failed(f"podman-compose {words[0]} failed")
    wait_running(args.project, service_digests(args.file), deadline)


def stop(args, deadline):
    if run(compose(args, "stop"), deadline, "podman-compose stop") != 0:
        raise Failed("podman-compose stop failed")


def down(args, deadline):
    if run(compose(args, "down"), deadline, "podman-compose down") != 0:
        raise Failed("podman-compose down failed")
    left = [c["name"] for c in containers(args.project)]
    if left:
        raise Failed(f"containers left after podman-compose down: {', '.join(left)}")


def show_logs(project, found):
    for c in found:
        print(
            f"compose project {project}: the last {LOG_LINES} log lines of container {c['name']}:",
            file=sys.stderr,
        )
        try:
            subprocess.run(
                ["podman", "logs", "--tail", str(LOG_LINES), c["name"]],
                stdout=sys.stderr,
                stderr=sys.stderr,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            print("  (podman logs did not answer within 30 s)", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="compose")
    parser.add_argument("action", choices=["up", "start", "stop", "down"])
    parser.add_argument("project")
    parser.add_argument("file")
    parser.add_argument("timeout", type=int)
    parser.add_argument("--record", default="")
    parser.add_argument("--inputs", default="")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    action = {"up": up, "start": start, "stop": stop, "down": down}[args.action]
    try:
        action(args, deadline)
    except Failed as error:
        print(
            f"compose project {args.project}: {args.action} failed"
            f" (timeout {args.timeout}s): {error}",
            file=sys.stderr,
        )
        shown = error.containers
        if not shown and args.action in ("up", "start"):
            # A bring-up stopped short (e.g. podman-compose waiting on a dependency that
            # exited): the containers that do not run are the ones to look at.
            try:
                shown = [c for c in containers(args.project) if c["state"] != "running"]
            except (Failed, OSError, ValueError, subprocess.TimeoutExpired):
                shown = []
            if shown:
                names = ", ".join(f"{c['name']} ({c['status'] or c['state']})" for c in shown)
                print(f"compose project {args.project}: not running: {names}", file=sys.stderr)
        show_logs(args.project, shown)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
