"""The standard's QA criteria (§7.3, §8) as ONE definition, used by ``deploys/verify.py``
(through the ``Probe`` fact) and by the pytest-testinfra suite in ``tests/qa/`` (through
``host.run``), so the two cannot drift apart.

A criterion names the commands it observes and a pure ``judge`` that turns their results
(exit status + output) and the host's declared data into expected/found/passed (and one line
per finding, each saying what to do), plus the standard's §9 troubleshooting hint for a
failure. A ``drift`` criterion (what runs differs from the data) only warns unless the host's
data says ``verify_strict``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pyinfra.api import FactBase, OperationError

from facts import FactValue, running
from facts.compose import APPLIED_FILE, SERVICE_LABEL, as_user, parse_applied
from facts.services import Quadlet
from model.host_data import SECRETS_FILE, HostClass, HostData, Port, Service
from model.host_data import ComposeProject as ProjectModel
from operations.compose import _copies, input_paths, inputs_digest
from operations.services import (
    IMAGE_RECORD,
    QUADLET_SINCE,
    SYSTEM_DIRS,
    USER_DIRS,
    _version,
    file_paths,
    recorded_images,
    render_files,
    render_network,
    render_timer,
    render_unit,
)

_RC = "@@rc="
TEST_IMAGE = "docker.io/library/alpine:latest"
WORKSTATION_IMAGE = "docker.io/library/nginx:alpine"
GPU_IMAGE = "docker.io/nvidia/cuda:11.8.0-base-ubuntu22.04"
PODMAN_SOCKET = "unix:///run/podman/podman.sock"


@dataclass(frozen=True)
class ProbeResult(FactValue):
    rc: int
    output: str


class Probe(FactBase[ProbeResult]):
    """Exit status and combined output of one shell command (never fails the host)."""

    def command(self, command: str) -> str:
        return f"( {command} ) 2>&1; echo '{_RC}'$?"

    def process(self, output: list[str]) -> ProbeResult:
        rc = 127
        if output and output[-1].startswith(_RC):
            rc = int(output[-1][len(_RC) :] or 127)
            output = output[:-1]
        return ProbeResult(rc=rc, output="\n".join(output).strip())


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    expected: str
    found: str
    passed: bool
    hint: str = ""
    # "fail" or "warn": what a check that did not pass means (warn: the run still passes).
    severity: str = "fail"
    details: tuple[str, ...] = ()  # one line per finding (exposure: also what it lists)

    @property
    def failed(self) -> bool:
        return not self.passed and self.severity == "fail"

    @property
    def result(self) -> str:
        return "pass" if self.passed else ("FAIL" if self.severity == "fail" else "warn")


Results = dict[str, ProbeResult]


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    classes: frozenset[HostClass]
    commands: dict[str, str]
    # (expected, found, passed) or (expected, found, passed, one line per finding)
    judge: Callable[[Results, HostData], tuple]
    hint: str
    applies: Callable[[HostData], bool] = field(default=lambda cfg: True)
    # Commands that depend on the host's data (one per declared item), instead of ``commands``.
    commands_for: Callable[[HostData], dict[str, str]] | None = None
    # Drift from the data: a warning unless the host's data says verify_strict.
    drift: bool = False


def _first_line(result: ProbeResult) -> str:
    """The line that says most: on failure the first error line, else the first line."""
    lines = result.output.splitlines()
    if not lines:
        return f"(exit {result.rc}, no output)"
    if result.rc != 0:
        return next((line for line in lines if "error" in line.lower()), lines[0])
    return lines[0]


def _info(results: Results) -> dict:
    try:
        return json.loads(results["info"].output) if results["info"].rc == 0 else {}
    except ValueError:
        return {}


def _judge_version(r: Results, cfg: HostData):
    ok = r["podman"].rc == 0 and r["podman"].output.startswith("podman version")
    return "podman version …", _first_line(r["podman"]), ok


def _judge_info(r: Results, cfg: HostData):
    info = _info(r)
    return "podman info answers (JSON)", "ok" if info else _first_line(r["info"]), bool(info)


def _judge_graphroot(r: Results, cfg: HostData):
    found = _info(r).get("store", {}).get("graphRoot") or "(podman info failed)"
    return cfg.graphroot, found, found == cfg.graphroot


def _judge_registries(r: Results, cfg: HostData):
    found = _info(r).get("registries", {}).get("search") or []
    wanted = list(cfg.registries.search)
    return ", ".join(wanted), ", ".join(found) or "(none)", found == wanted


def _judge_no_daemon(r: Results, cfg: HostData):
    state = r["docker"].output or "(no output)"
    return "docker.service not active", state, r["docker"].rc != 0


def _judge_docker_cli(r: Results, cfg: HostData):
    ok = r["docker"].rc == 0 and r["docker"].output.startswith("podman version")
    return "docker --version shows podman", _first_line(r["docker"]), ok


def _judge_docker_ps(r: Results, cfg: HostData):
    docker, podman = r["docker_ps"], r["podman_ps"]
    if docker.rc != 0:
        return "docker ps works", _first_line(docker), False
    same = sorted(docker.output.split()) == sorted(podman.output.split())
    count = len(docker.output.split())
    found = f"{count} containers" + ("" if same else f", podman ps shows {podman.output.split()}")
    return "same containers as podman ps", found, same


def _judge_compat_layer(r: Results, cfg: HostData):
    found = r["layer"].output or "none"
    return "podman-docker or the docker wrapper", found, found in ("podman-docker", "wrapper")


def _judge_echo(token: str):
    def judge(r: Results, cfg: HostData):
        result = r["run"]
        return f"prints {token}", _first_line(result), result.rc == 0 and token in result.output

    return judge


def _judge_rc_zero(what: str):
    def judge(r: Results, cfg: HostData):
        result = r["run"]
        return what, "ok" if result.rc == 0 else _first_line(result), result.rc == 0

    return judge


def _judge_socket(r: Results, cfg: HostData):
    result = r["remote"]
    ok = result.rc == 0 and bool(result.output)
    found = f"API server {result.output}" if ok else _first_line(result)
    return "podman.socket answers the API", found, ok


def _judge_gpu(r: Results, cfg: HostData):
    result = r["run"]
    ok = result.rc == 0 and "GPU 0" in result.output
    return "nvidia-smi -L lists GPU 0", _first_line(result), ok


def _judge_desktop_docker(r: Results, cfg: HostData):
    result = r["docker_ps"]
    return "docker ps works", "ok" if result.rc == 0 else _first_line(result), result.rc == 0


def _judge_desktop_untouched(r: Results, cfg: HostData):
    result = r["docker"]
    ok = result.rc == 0 and result.output.startswith("Docker version")
    return "docker is Docker (Desktop), not podman", _first_line(result), ok


def _login_commands(cfg: HostData) -> dict[str, str]:
    """One ``podman login`` per present credential, as its user: with stored credentials and
    no terminal, podman checks them against the registry (and prompts, so fails, without)."""
    return {
        f"{c.registry} ({c.user or 'root'})": as_user(
            c.user, f"podman login {c.registry} </dev/null"
        )
        for c in cfg.registries.credentials
        if c.present
    }


def _judge_logins(r: Results, cfg: HostData):
    refused = [f"{name}: {_first_line(result)}" for name, result in r.items() if result.rc != 0]
    expected = f"{len(r)} registry login(s) accepted"
    return expected, "; ".join(refused) or expected, not refused


# SELinux (issue: a moved store needs container labels). Each probe prints the mode first
# ("none" without SELinux tools) and checks nothing more where SELinux is not enabled.
STORE_TYPES = ("container_var_lib_t", "container_ro_file_t", "container_file_t")
_MODE = 'm=$(getenforce 2>/dev/null || echo none); echo "$m"'


def _store_label_commands(cfg: HostData) -> dict[str, str]:
    return {"label": f'{_MODE}; [ "$m" = none ] || stat -c %C -- {shlex.quote(cfg.graphroot)}'}


def _selinux_mode(line: str) -> str:
    return "not installed" if line == "none" else line.lower()


def _judge_store_label(r: Results, cfg: HostData):
    lines = r["label"].output.splitlines() or ["none"]
    expected = f"{cfg.graphroot} labelled {' or '.join(STORE_TYPES)}"
    if lines[0] not in ("Enforcing", "Permissive"):
        return expected, f"SELinux {_selinux_mode(lines[0])}: nothing to label", r["label"].rc == 0
    context = lines[1] if len(lines) > 1 else "(no label)"
    parts = context.split(":")
    return expected, context, r["label"].rc == 0 and len(parts) > 2 and parts[2] in STORE_TYPES


# The test container starts as the services do, from a systemd unit: podman then runs in the
# engine's domain (container_runtime_t, refpolicy's podman_t), which is what the store's labels
# must admit; root's shell is unconfined and would not show a store podman cannot use. No
# podman runs outside the unit (on Debian's policy what an unconfined podman leaves in /run
# is not the confined engine's to open). The container's answer, or podman's error, comes
# back through the unit's journal since the run began. No network (the check is of SELinux,
# not of the network backend); RuntimeMaxSec bounds the wait.
_PROBE_UNIT = "podman-standard-selinux-probe"
_CONFINED_RUN = (
    f"u={_PROBE_UNIT}; t=$(date +%s); "
    "systemd-run --quiet --wait --collect --property=RuntimeMaxSec=180 --unit=$u "
    f"podman run --rm --replace --network=none --name=$u {TEST_IMAGE} "
    "cat /proc/self/attr/current >/dev/null 2>&1; rc=$?; "
    "journalctl -u $u --since=@$t --no-pager -q -o cat | tail -n 8; exit $rc"
)
_CONTEXT_RE = re.compile(r"^[a-z0-9_]+_u:[a-z0-9_]+_r:[a-z0-9_]+_t:\S+$")


def _judge_enforcing_container(r: Results, cfg: HostData):
    result = r["run"]
    lines = result.output.splitlines() or ["none"]
    if lines[0] != "Enforcing":
        return (
            "a confined container runs",
            f"SELinux {_selinux_mode(lines[0])}: not enforcing",
            True,
        )
    contexts = [line for line in lines[1:] if _CONTEXT_RE.match(line.strip())]
    errors = [line for line in lines[1:] if line.startswith("Error:")]
    if result.rc == 0 and contexts:
        context = contexts[-1].strip()
    else:  # podman's own reason, else the journal's last word
        context = (errors or lines[1:] or [_first_line(result)])[-1]
    return "a confined container runs", context, result.rc == 0 and ":container_t:" in context


def _repository_commands(cfg: HostData) -> dict[str, str]:
    url = shlex.quote(cfg.nvidia_repository.url)
    return {
        "sources": f"grep -l -s -F -e {url} -- /etc/yum.repos.d/*.repo /etc/apt/sources.list "
        "/etc/apt/sources.list.d/*"
    }


def _judge_repository(r: Results, cfg: HostData):
    found = r["sources"].output.splitlines()
    expected = f"a package source names {cfg.nvidia_repository.url}"
    return expected, ", ".join(found) or "no source file names it", bool(found)


# ---- §8.1 for services and users, drift, exposure ------------------------------------------
# Each owner (root, each rootless user) costs a fixed number of commands whatever the number of
# its containers and services: podman ps, docker ps, one systemctl show, one file dump.


def _owners(cfg: HostData) -> list[str | None]:
    return [None] + [u.name for u in cfg.rootless_users]


def _label(user: str | None) -> str:
    return user or "root"


def _ps(user: str | None) -> str:
    return as_user(user, running.PS)


def _present_services(cfg: HostData) -> list[Service]:
    return [s for s in cfg.services if s.present]


def _owned(cfg: HostData, user: str | None) -> list[Service]:
    """The present services of ``user`` (None: root's)."""
    return [s for s in _present_services(cfg) if s.user == user]


def _timer_units(svc: Service) -> list[str]:
    return [f"{svc.name}-{t.name}.timer" for t in svc.timers if t.present]


def _service_units(cfg: HostData, user: str | None) -> list[str]:
    units = []
    for svc in _owned(cfg, user):
        units += [f"{svc.name}.service", *_timer_units(svc)]
    return units


def _service_commands(cfg: HostData) -> dict[str, str]:
    commands = {}
    for user in _owners(cfg):
        units = _service_units(cfg, user)
        if units:
            commands[f"units {_label(user)}"] = running.units_command(user, units)
            commands[f"ps {_label(user)}"] = _ps(user)
            commands[f"docker {_label(user)}"] = as_user(user, running.DOCKER_PS)
    return commands


def _containers(r: Results, user: str | None) -> dict[str, running.Container] | str:
    """The owner's containers by name, or what went wrong asking podman."""
    result = r[f"ps {_label(user)}"]
    if result.rc != 0:
        return f"{_label(user)}: podman ps: {_first_line(result)}"
    try:
        return {c.name: c for c in running.parse_ps(result.output)}
    except (ValueError, KeyError, TypeError) as error:
        return f"{_label(user)}: podman ps: unreadable ({error})"


def _units(r: Results, user: str | None) -> dict[str, dict[str, str]] | str:
    """The owner's units by name, or why their systemd could not be asked (a rootless user's
    manager runs only while the user lingers)."""
    result = r[f"units {_label(user)}"]
    if result.rc != 0:
        return f"{_label(user)}'s systemd: {_first_line(result)}"
    return running.parse_units(result.output)


def _systemctl(user: str | None, verb: str, unit: str) -> str:
    scope = f"--user -M {user}@ " if user else ""
    return f"systemctl {scope}{verb} {unit}"


def _judge_services(r: Results, cfg: HostData):
    bad, total = [], 0
    for user in _owners(cfg):
        services = _owned(cfg, user)
        if not services:
            continue
        units = _units(r, user)
        containers = _containers(r, user)
        if isinstance(units, str) or isinstance(containers, str):
            bad.append(units if isinstance(units, str) else containers)
            continue
        docker = r[f"docker {_label(user)}"]
        listed = set(docker.output.split()) if docker.rc == 0 else set()
        for svc in services:
            total += 1
            unit = units.get(f"{svc.name}.service", {})
            active = unit.get("ActiveState", "unknown")
            container = containers.get(svc.name)
            cstate = container.state if container else "missing"
            owner = f" ({svc.user}'s)" if svc.user else ""
            if active != "active" or cstate != "running":
                bad.append(
                    f"{svc.name}{owner}: unit {active} ({unit.get('SubState', '?')}), container "
                    f"{cstate}: see `{_systemctl(svc.user, 'status', svc.name + '.service')}`"
                )
            elif container.id[:12] not in listed:
                bad.append(
                    f"{svc.name}{owner}: running, but `docker ps` does not list it "
                    f"({_first_line(docker) if docker.rc else 'other containers'}): check the "
                    "compatibility layer (§9.1)"
                )
    found = f"{total - len(bad)}/{total} active and running"
    return f"{total} services active, containers running", found, not bad, bad


def _judge_health(r: Results, cfg: HostData):
    checked = [s for s in _present_services(cfg) if s.healthcheck]
    bad = []
    for svc in checked:
        containers = _containers(r, svc.user)
        if isinstance(containers, str):
            bad.append(containers)
            continue
        container = containers.get(svc.name)
        health = (container.health or "no health status") if container else "no container"
        if health != "healthy":
            bad.append(
                f"{svc.name}: {health}: `podman healthcheck run {svc.name}`"
                + (f" as {svc.user}" if svc.user else "")
                + " shows the check's output"
            )
    found = f"{len(checked) - len(bad)}/{len(checked)} healthy"
    return f"{len(checked)} healthy", found, not bad, bad


def _judge_timers(r: Results, cfg: HostData):
    bad, total = [], 0
    for user in _owners(cfg):
        timers = [t for s in _owned(cfg, user) for t in _timer_units(s)]
        if not timers:
            continue
        units = _units(r, user)
        if isinstance(units, str):
            bad.append(units)
            continue
        for timer in timers:
            total += 1
            props = units.get(timer, {})
            active, sub, following = (
                props.get("ActiveState", "unknown"),
                props.get("SubState", "?"),
                props.get("NextElapseUSecRealtime", ""),
            )
            # While the service a timer started runs (SubState running), systemd shows no next
            # run (NextElapseUSecRealtime empty): it sets one when that run ends.
            if active != "active" or not (following or sub == "running"):
                bad.append(
                    f"{timer}: {active} ({sub}), next run {following or 'none'}: "
                    f"`{_systemctl(user, 'list-timers', timer)}`"
                )
    return f"{total} timers scheduled", f"{total - len(bad)}/{total} scheduled", not bad, bad


def _docker_ps_commands(cfg: HostData) -> dict[str, str]:
    commands = {}
    for user in _owners(cfg)[1:]:  # root's: criterion docker-ps
        commands[f"docker {_label(user)}"] = as_user(user, running.DOCKER_PS)
        commands[f"ps {_label(user)}"] = _ps(user)
    return commands


def _judge_docker_ps_owners(r: Results, cfg: HostData):
    """Per rootless user, ``docker ps`` (the compatibility layer, as that user) lists the same
    containers as their podman."""
    bad, owners = [], []
    for user in _owners(cfg):
        docker = r.get(f"docker {_label(user)}")
        if docker is None:
            continue
        owners.append(_label(user))
        containers = _containers(r, user)
        if isinstance(containers, str):
            bad.append(containers)
            continue
        if docker.rc != 0:
            bad.append(f"{_label(user)}: docker ps: {_first_line(docker)}")
            continue
        ids = {c.id[:12] for c in containers.values()}
        shown = set(docker.output.split())
        if shown != ids:
            bad.append(
                f"{_label(user)}: docker ps shows {len(shown)}, podman ps {len(ids)}"
                f" (only in podman ps: {', '.join(sorted(ids - shown)) or 'none'})"
            )
    expected = f"docker ps = podman ps as {', '.join(owners)}"
    return expected, "; ".join(bad) or "same containers", not bad, bad


def _compose_commands(cfg: HostData) -> dict[str, str]:
    users = {p.user for p in cfg.compose_projects if p.present}
    return {f"ps {_label(u)}": _ps(u) for u in _owners(cfg) if u in users}


def _judge_compose(r: Results, cfg: HostData):
    projects = [p for p in cfg.compose_projects if p.present]
    bad = []
    for project in projects:
        containers = _containers(r, project.user)
        if isinstance(containers, str):
            bad.append(containers)
            continue
        own = {n: c.state for n, c in containers.items() if c.project == project.name}
        if not own or any(state != "running" for state in own.values()):
            listed = ", ".join(f"{n} {s}" for n, s in sorted(own.items())) or "no containers"
            bad.append(f"{project.name} ({_label(project.user)}): {listed}")
    found = f"{len(projects) - len(bad)}/{len(projects)} up"
    return f"{len(projects)} projects up", found, not bad, bad


def _socket_users(cfg: HostData) -> list[str]:
    """Rootless users whose data asks for their own Docker API socket (``docker_api``: the
    rootless user's podman.socket and DOCKER_HOST; a RootlessUser without the field asks for
    none)."""
    return [u.name for u in cfg.rootless_users if u.docker_api]


USER_SOCKET = '"$XDG_RUNTIME_DIR/podman/podman.sock"'


def _user_socket_commands(cfg: HostData) -> dict[str, str]:
    return {u: as_user(u, running.ping_command(USER_SOCKET)) for u in _socket_users(cfg)}


def _judge_user_sockets(r: Results, cfg: HostData):
    bad = []
    for user, result in sorted(r.items()):
        status, body = running.parse_ping(result.output)
        if result.rc != 0 or body != "OK":
            bad.append(
                f"{user}: /_ping {status or _first_line(result)}: "
                f"`systemctl --user -M {user}@ status podman.socket`"
            )
    expected = f"/_ping answers OK as {', '.join(sorted(r))}"
    return expected, "; ".join(bad) or "OK", not bad, bad


def _drift_commands(cfg: HostData) -> dict[str, str]:
    commands = {"info": "podman info --format json", "quadlet": Quadlet().command()}
    for user in _owners(cfg):
        commands[f"ps {_label(user)}"] = _ps(user)
        dirs = list((USER_DIRS if user else SYSTEM_DIRS).values())
        secrets = [f"{cfg.service_root}/{s.name}/{SECRETS_FILE}" for s in _owned(cfg, user)]
        records = [_image_record(cfg, s) for s in _owned(cfg, user)]
        digests = []
        for svc in _owned(cfg, user):
            # A managed file holding secrets is compared by digest: its content never leaves
            # the host. One declared absent: whether it is there, by digest too.
            paths = file_paths(svc, f"{cfg.service_root}/{svc.name}")
            for file in svc.files:
                private = file.secrets or not file.present
                (digests if private else records).append(paths[file.path])
        for project in _projects(cfg, user):
            directory = project.project_directory(cfg.compose_root)
            records.append(f"{directory}/{APPLIED_FILE}")
            digests += input_paths(project, directory)
        commands[f"files {_label(user)}"] = running.dump_command(
            user, dirs, secrets, records, digests
        )
    return commands


def _with_env(cfg: HostData, user: str | None) -> list[Service]:
    return [s for s in _owned(cfg, user) if s.env or s.secrets]


def _with_volumes(cfg: HostData, user: str | None) -> list[Service]:
    return [s for s in _owned(cfg, user) if s.volumes]


def _inspect_commands(cfg: HostData, declared) -> dict[str, str]:
    """``podman container inspect`` of every container of each owner with a service that
    ``declared(cfg, owner)`` lists: one command per owner, the same for every criterion that
    reads it (the host runs it once)."""
    return {
        f"inspect {_label(user)}": as_user(user, running.INSPECT)
        for user in _owners(cfg)
        if declared(cfg, user)
    }


def _env_commands(cfg: HostData) -> dict[str, str]:
    """The inspect of each owner with a service that declares an environment (env, secrets)."""
    return _inspect_commands(cfg, _with_env)


def _volume_commands(cfg: HostData) -> dict[str, str]:
    """The inspect of each owner with a service that declares volumes."""
    return _inspect_commands(cfg, _with_volumes)


def _inspected(r: Results, user: str | None) -> dict[str, running.Inspected] | str:
    """The owner's containers as inspected, by name, or what went wrong asking podman."""
    result = r[f"inspect {_label(user)}"]
    try:
        if result.rc != 0:
            raise ValueError(_first_line(result))
        return running.parse_inspect(result.output)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return f"{_label(user)}: podman container inspect: {error}"


def _image_record(cfg: HostData, svc: Service) -> str:
    return f"{cfg.service_root}/{svc.name}/{IMAGE_RECORD}"


def _projects(cfg: HostData, user: str | None) -> list[ProjectModel]:
    """The present compose projects of ``user`` (None: root's)."""
    return [p for p in cfg.compose_projects if p.present and p.user == user]


def _podman_version(r: Results) -> tuple[int, ...]:
    return _version(_info(r).get("version", {}).get("Version", ""))


def managed_files(cfg: HostData, user: str | None, r: Results) -> dict[str, str] | str:
    """What this package would write for ``user``'s (root's) declared services, {path: content}
    (paths relative to a rootless user's home): unit files, networks, timers. Another kind of
    managed file joins the drift report by adding its entries here. A str when the host's
    podman cannot be read (then the rendering is unknown)."""
    version = _podman_version(r)
    if not version:
        return "podman info failed: the unit files' rendering is unknown"
    quadlet = r["quadlet"].rc == 0 and bool(r["quadlet"].output.strip())
    rendering = "quadlet" if quadlet and version >= QUADLET_SINCE else "plain"
    dirs = USER_DIRS if user else SYSTEM_DIRS
    exists = running.parse_dump(r[f"files {_label(user)}"].output).exists
    wanted = {}
    for svc in _owned(cfg, user):
        service_dir = f"{cfg.service_root}/{svc.name}"
        env_file = f"{service_dir}/{SECRETS_FILE}" in exists
        suffix = "container" if rendering == "quadlet" else "service"
        wanted[f"{dirs[rendering]}/{svc.name}.{suffix}"] = render_unit(
            svc, rendering, service_dir, bool(user), env_file=env_file, podman=version
        )
        if rendering == "quadlet" and svc.network:
            wanted[f"{dirs[rendering]}/{svc.network}.network"] = render_network(svc.network)
        for timer in svc.timers:
            if timer.present:
                timer_text, job_text = render_timer(svc, timer)
                wanted[f"{dirs['plain']}/{svc.name}-{timer.name}.timer"] = timer_text
                wanted[f"{dirs['plain']}/{svc.name}-{timer.name}.service"] = job_text
    return wanted


# An environment variable's value in a unit file's line: podman's ``--env NAME=value``
# (plain units), quadlet's ``Environment=NAME=value``, quoted or not.
_ENV_VALUE = re.compile(
    r"^([+-]?\s*(?:--env\s+|Environment=)[\"']?[A-Za-z_][A-Za-z0-9_]*=).*?([\"']?(?:\s+\\)?)$"
)


def _masked(line: str) -> str:
    """A unit file's line with any environment value replaced by ``***``: a value set by
    hand may be a secret (drift-env names variables only, for the same reason)."""
    return _ENV_VALUE.sub(r"\1***\2", line)


def _first_difference(found: str, wanted: str) -> str:
    """The first changed lines of a unified diff (the table shows one line per finding),
    environment values masked."""
    diff = [
        _masked(line)
        for line in difflib.unified_diff(wanted.splitlines(), found.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    shown = " / ".join(repr(line) for line in diff[:2])
    more = f" (+{len(diff) - 2} more changed lines)" if len(diff) > 2 else ""
    return shown + more


def _judge_drift_files(r: Results, cfg: HostData):
    findings = []
    for user in _owners(cfg):
        wanted = managed_files(cfg, user, r)
        if isinstance(wanted, str):
            findings.append(f"{_label(user)}: {wanted}")
            continue
        on_host = running.parse_dump(r[f"files {_label(user)}"].output).files
        where = f"{user}'s ~/" if user else ""
        for path in sorted(set(wanted) | set(on_host)):
            if path not in on_host:
                findings.append(
                    f"{where}{path}: missing: converge (deploys/services.py) to write it"
                )
            elif path not in wanted:
                findings.append(
                    f"{where}{path}: written by podman-standard for nothing declared now: "
                    "declare its service with present: false to remove it"
                )
            elif on_host[path] != wanted[path]:
                findings.append(
                    f"{where}{path}: changed on the host: "
                    f"{_first_difference(on_host[path], wanted[path])}; the next converge "
                    "overwrites it: put the change into the data"
                )
        findings += _service_file_drift(cfg, user, r)
    found = "; ".join(f.split(":", 1)[0] for f in findings) or "as the data says"
    return "managed files as the data renders them", found, not findings, findings


def _service_file_drift(cfg: HostData, user: str | None, r: Results) -> list[str]:
    """The owner's services' managed files (``files``) against what the data renders: a
    file holding secrets by its digest only (no diff: its content never leaves the host), the
    others with their first changed lines. Rendered on the controller as converge does (the
    secrets a template reads, from the controller's environment or files)."""
    dump = running.parse_dump(r[f"files {_label(user)}"].output)
    findings = []
    for svc in _owned(cfg, user):
        if not svc.files:
            continue
        paths = file_paths(svc, f"{cfg.service_root}/{svc.name}")
        try:
            rendered = render_files(svc, cfg)
        except OperationError as error:  # names the file and the secret, never a value
            findings.append(
                f"{cfg.service_root}/{svc.name}: its managed files not compared: {error}"
            )
            continue
        for file in svc.files:
            path = paths[file.path]
            on_host = dump.sha256.get(path) if file.secrets else dump.records.get(path)
            if not file.present:
                if path in dump.sha256:
                    findings.append(
                        f"{path}: declared present: false, still on the host: converge "
                        "(deploys/services.py) removes it"
                    )
                continue
            text = rendered[file.path][1]
            if on_host is None:
                findings.append(f"{path}: missing: converge (deploys/services.py) to write it")
            elif file.secrets:
                if on_host != hashlib.sha256(text.encode()).hexdigest():
                    findings.append(
                        f"{path}: changed on the host (it holds secrets: no diff shown); the "
                        "next converge overwrites it: put the change into the data"
                    )
            elif on_host != text:
                findings.append(
                    f"{path}: changed on the host: {_first_difference(on_host, text)}; the "
                    "next converge overwrites it: put the change into the data"
                )
    return findings


def _judge_drift_containers(r: Results, cfg: HostData):
    findings = []
    for user in _owners(cfg):
        containers = _containers(r, user)
        if isinstance(containers, str):
            findings.append(containers)
            continue
        services = {s.name: s for s in _owned(cfg, user)}
        projects = {p.name for p in cfg.compose_projects if p.present and p.user == user}
        owner = f"{user}'s" if user else "root's"
        for name, c in sorted(containers.items()):
            if c.infra:
                continue
            svc = services.get(name)
            if svc and svc.image and c.image != svc.image:
                findings.append(
                    f"{owner} {name} runs {c.image}, the data says {svc.image}: converge "
                    "(deploys/services.py) to re-create it"
                )
            elif not svc and c.project and c.project not in projects:
                findings.append(
                    f"{owner} {name} ({c.state}) belongs to compose project {c.project}, "
                    "not declared: declare the project, or `podman-compose down` it"
                )
            elif not svc and not c.project:
                who = f" as {user}" if user else ""
                findings.append(
                    f"{owner} {name} ({c.image}, {c.state}) is not declared: declare it in "
                    f"podman_services, or remove it (`podman rm -f {name}`{who})"
                )
    found = "; ".join(f.split(" (", 1)[0].split(" runs ")[0] for f in findings)
    return "only declared containers", found or "only declared containers", not findings, findings


def _owners_with(r: Results, cfg: HostData, declared, findings: list[str], read=_containers):
    """(owner, what ``declared(cfg, owner)`` lists, the owner's containers by name) for each
    owner that has something declared; ``read``: how they are read (``podman ps``, or
    ``_inspected``); an owner whose podman failed is a finding."""
    for user in _owners(cfg):
        items = declared(cfg, user)
        if not items:
            continue
        containers = read(r, user)
        if isinstance(containers, str):
            findings.append(containers)
            continue
        yield user, items, containers


def _judge_drift_images(r: Results, cfg: HostData):
    """Each declared service's running container runs the image its last converge recorded
    (``<service_dir>/image-record``, "current"): another one means the container was
    re-created outside a converge (a pull and restart by hand, podman auto-update)."""
    findings, total = [], 0
    for user, services, containers in _owners_with(r, cfg, _owned, findings):
        records = running.parse_dump(r[f"files {_label(user)}"].output).records
        owner = f"{user}'s" if user else "root's"
        for svc in services:
            container = containers.get(svc.name)
            if container is None or not container.image_id:
                continue  # no container: services-running says so
            total += 1
            path = _image_record(cfg, svc)
            if path not in records:
                findings.append(
                    f"{owner} {svc.name}: no image record ({path}): converge "
                    "(deploys/services.py) records the image it runs"
                )
                continue
            current = recorded_images(records[path]).get("current", "")
            if current != container.image_id:
                findings.append(
                    f"{owner} {svc.name} runs image {container.image_id[:12]}, the last converge "
                    f"recorded {current[:12] or 'none'}: it was re-created outside a converge "
                    "(a pull and restart by hand, podman auto-update): converge "
                    "(deploys/services.py) to record it, or set the service's pull policy "
                    "(pull: always re-pulls on each converge)"
                )
    found = "; ".join(f.split(" runs ")[0].split(": ")[0] for f in findings)
    expected = f"{total} containers on their recorded image"
    return expected, found or "as recorded", not findings, findings


def _rendered(project: ProjectModel, directory: str) -> dict[str, str]:
    """{path: sha256} of the files this package writes for ``project`` from the data (a
    template rendered, the controller's own files); {} when the controller's files cannot be
    read (then only the host's files are compared with the record)."""
    try:
        copies = _copies(project, directory)
    except OperationError:  # naming the controller's file: converge says it too
        return {}
    return {path: hashlib.sha256(text.encode()).hexdigest() for path, (text, _) in copies.items()}


def _project_drift(project: ProjectModel, cfg: HostData, dump, containers) -> list[str]:
    directory = project.project_directory(cfg.compose_root)
    who = f" ({project.user}'s)" if project.user else ""
    name = f"compose project {project.name}{who}"
    inputs, services = parse_applied(dump.records.get(f"{directory}/{APPLIED_FILE}"))
    if not inputs:
        return [
            f"{name}: no record of its last bring-up ({directory}/{APPLIED_FILE}): converge "
            "(deploys/compose.py) brings it up and records it"
        ]
    findings = []
    paths = input_paths(project, directory)
    missing = [p for p in paths if p not in dump.sha256]
    for path in missing:
        findings.append(f"{name}: {path} is missing on the host: converge (deploys/compose.py)")
    for path, digest in sorted(_rendered(project, directory).items()):
        if path in dump.sha256 and dump.sha256[path] != digest:
            findings.append(
                f"{name}: {path} differs from what the data renders (edited on the host, or "
                "the data changed): the next converge overwrites it and re-creates the "
                "services it changes: put the change into the data"
            )
    if not missing and inputs_digest({p: dump.sha256[p] for p in paths}) != inputs:
        findings.append(
            f"{name}: its files on the host are not those it was last brought up from: "
            "converge (deploys/compose.py) brings it up from them"
        )
    own = {n: c for n, c in containers.items() if c.project == project.name}
    if services is not None and own:  # no containers: compose-projects says so
        running_services = {c.labels.get(SERVICE_LABEL, "") for c in own.values()}
        for service in sorted(set(services) - running_services):
            findings.append(
                f"{name}: its file's service {service} has no container: converge "
                "(deploys/compose.py) creates it"
            )
        for cname, c in sorted(own.items()):
            if c.labels.get(SERVICE_LABEL, "") not in services:
                findings.append(
                    f"{name}: container {cname} is of service "
                    f"{c.labels.get(SERVICE_LABEL) or '(none)'}, not in its file: converge "
                    "(deploys/compose.py) removes it"
                )
    return findings


def _judge_drift_compose(r: Results, cfg: HostData):
    """Each declared compose project runs from its files as the data writes them, and as it
    was last brought up (the helper's record beside its compose file): the inputs digest the
    operation computes, over the host's files; its containers are its file's services."""
    findings, total = [], 0
    for user, projects, containers in _owners_with(r, cfg, _projects, findings):
        dump = running.parse_dump(r[f"files {_label(user)}"].output)
        for project in projects:
            total += 1
            findings += _project_drift(project, cfg, dump, containers)
    found = _subjects(findings)
    return f"{total} projects as their files", found or "as their files", not findings, findings


def _subjects(findings: list[str]) -> str:
    """What the findings are about (each one's text before its first ": "), once each."""
    return "; ".join(dict.fromkeys(f.split(": ", 1)[0] for f in findings))


def _running_declared(r: Results, cfg: HostData, declared, findings: list[str]):
    """Each running container of a service ``declared(cfg, owner)`` lists, as (the owner's
    name, the service, its container as inspected); an owner whose inspect failed is a
    finding. A service without a running container is skipped: services-running says so."""
    for user, services, containers in _owners_with(r, cfg, declared, findings, _inspected):
        owner = f"{user}'s" if user else "root's"
        for svc in services:
            container = containers.get(svc.name)
            if container is not None and container.running:
                yield owner, svc, container


def _judge_drift_env(r: Results, cfg: HostData):
    """Each running declared service's container has each declared env variable with its
    value, and each secret's variable (its value is not read: only that it is set). Variables
    the data does not name are not findings: the image sets its own (PATH, …)."""
    findings, total = [], 0
    for owner, svc, container in _running_declared(r, cfg, _with_env, findings):
        total += 1
        # Values are not printed: what a container was given by hand may be a secret.
        wrong = [k for k, v in sorted(svc.env.items()) if container.env.get(k) != v]
        unset = [k for k in sorted(svc.secrets) if k not in container.env]
        if wrong:
            findings.append(
                f"{owner} {svc.name}: env {', '.join(wrong)} not as the data declares "
                "(missing or another value): converge (deploys/services.py) re-creates it "
                "from the data"
            )
        if unset:
            findings.append(
                f"{owner} {svc.name}: secret variable(s) {', '.join(unset)} not set: "
                "converge (deploys/services.py) re-creates it from the data"
            )
    found = _subjects(findings)
    expected = f"{total} containers with their declared environment"
    return expected, found or "as declared", not findings, findings


def _mount_source(mount: running.Mount) -> str:
    return f"volume {mount.name}" if mount.name else mount.source


def _mount_drift(volume, mount: running.Mount, service_dir: str) -> list[str]:
    """How ``mount`` differs from the declared ``volume``: its source (the bind directory
    under the service directory, or the named volume), its read-only flag."""
    wrong = []
    if volume.source is not None:
        wanted = f"{service_dir}/{volume.source}"
    else:
        wanted = f"volume {volume.volume}"
    if _mount_source(mount) != wanted:
        wrong.append(f"{volume.target} from {_mount_source(mount)}, declared {wanted}")
    if mount.rw == volume.read_only:
        found, declared = ("read-write", "read-only") if mount.rw else ("read-only", "read-write")
        wrong.append(f"{volume.target} {found}, declared {declared}")
    return wrong


def _judge_drift_volumes(r: Results, cfg: HostData):
    """Each declared volume (bind mount or named volume) of a running declared service is
    mounted at its target, from its source (the bind directory, or the named volume), read-only
    as declared (``podman container inspect``). Mounts the data does not name are not findings:
    podman gives an image's own VOLUME an anonymous volume."""
    findings, total = [], 0
    for owner, svc, container in _running_declared(r, cfg, _with_volumes, findings):
        total += 1
        mounts = {m.destination: m for m in container.mounts}
        missing = [v.target for v in svc.volumes if v.target not in mounts]
        if missing:
            mounted = ", ".join(sorted(mounts)) or "nothing"
            findings.append(
                f"{owner} {svc.name}: declared mount(s) {', '.join(missing)} not mounted "
                f"(it mounts {mounted}): converge (deploys/services.py) re-creates it "
                "from the data"
            )
        service_dir = f"{cfg.service_root}/{svc.name}"
        wrong = [
            difference
            for v in svc.volumes
            if v.target in mounts
            for difference in _mount_drift(v, mounts[v.target], service_dir)
        ]
        if wrong:
            findings.append(
                f"{owner} {svc.name}: mounted {'; '.join(wrong)}: converge "
                "(deploys/services.py) re-creates it from the data"
            )
    found = _subjects(findings)
    expected = f"{total} containers with their declared mounts"
    return expected, found or "as declared", not findings, findings


def _socket_commands(user: str | None) -> str:
    return running.units_command(user, ["podman.socket"]).replace(
        "--property=", "--property=Listen,"
    )


def _exposure_commands(cfg: HostData) -> dict[str, str]:
    commands = {}
    for user in _owners(cfg):
        commands[f"ps {_label(user)}"] = _ps(user)
        commands[f"socket {_label(user)}"] = _socket_commands(user)
    return commands


def _declared_port(svc: Service | None, port: running.Published) -> Port | None:
    for declared in svc.ports if svc else ():
        if (declared.host, declared.protocol) == (port.host_port, port.protocol):
            return declared
    return None


def _exposure(r: Results, cfg: HostData) -> tuple[list[str], list[str], list[str]]:
    """(every published port and listening socket, one line each; ports bound wider than
    declared; ports that differ from the data: undeclared, or declared and not published)."""
    listing, wider, undeclared = [], [], []
    for user in _owners(cfg):
        owner = f"{user}'s" if user else "root's"
        containers = _containers(r, user)
        if isinstance(containers, str):
            listing.append(containers)
            continue
        services = {s.name: s for s in _owned(cfg, user)}
        projects = {p.name for p in cfg.compose_projects if p.present and p.user == user}
        for name, c in sorted(containers.items()):
            svc = services.get(name)
            for port in c.ports:
                declared = _declared_port(svc, port)
                scope = "all interfaces" if port.all_interfaces else "one address"
                if declared is None and c.project in projects and not svc:
                    # Declared by the project's compose file, which the data names.
                    listing.append(
                        f"{owner} {name} {port.address}: {scope}, declared (compose project "
                        f"{c.project}'s file)"
                    )
                    continue
                if declared is None:
                    listing.append(f"{owner} {name} {port.address}: {scope}, NOT declared")
                    undeclared.append(
                        f"{owner} {name} publishes {port.address} ({scope}) that the data does "
                        "not declare: declare it (with host_ip) or stop publishing it"
                    )
                    continue
                said = (
                    "no host_ip: all interfaces"
                    if declared.host_ip is None
                    else (f"host_ip {declared.host_ip}")
                )
                listing.append(f"{owner} {name} {port.address}: {scope}, declared ({said})")
                if declared.host_ip is not None and port.all_interfaces:
                    wider.append(
                        f"{owner} {name} {port.address} is bound to all interfaces, declared on "
                        f"{declared.host_ip}: converge (deploys/services.py) re-creates it"
                    )
                elif declared.host_ip is not None and port.host_ip != str(declared.host_ip):
                    wider.append(
                        f"{owner} {name} {port.address} is bound elsewhere than declared "
                        f"({declared.host_ip}): converge re-creates it"
                    )
            for declared in svc.ports if svc and c.state == "running" else ():
                if not any(
                    (p.host_port, p.protocol) == (declared.host, declared.protocol) for p in c.ports
                ):
                    undeclared.append(
                        f"{owner} {name}: declared port {declared.spec} is not published"
                    )
        sockets = running.parse_units(r[f"socket {_label(user)}"].output)
        socket = sockets.get("podman.socket", {})
        if socket.get("ActiveState") == "active":
            listen = socket.get("Listen", "").split(" (")[0] or "?"
            listing.append(f"{owner} podman.socket listens on {listen}")
    return listing, wider, undeclared


def _judge_exposure(r: Results, cfg: HostData):
    listing, wider, _ = _exposure(r, cfg)
    ports = sum(" publishes " not in line and "->" in line for line in listing)
    everywhere = sum("all interfaces" in line.split(": ", 1)[-1][:15] for line in listing)
    found = f"{ports} published ({everywhere} on all interfaces)"
    if wider:
        found = "; ".join(line.split(" is bound")[0] for line in wider)
    return "no port bound wider than declared", found, not wider, wider + listing


def _judge_exposure_drift(r: Results, cfg: HostData):
    _, _, undeclared = _exposure(r, cfg)
    found = "; ".join(line.split(" (")[0].split(": declared")[0] for line in undeclared)
    return "published ports as declared", found or "as declared", not undeclared, undeclared


LINUX = frozenset({HostClass.server, HostClass.workstation})
DESKTOP = frozenset({HostClass.desktop})
_LAYER = (
    "if command -v rpm >/dev/null 2>&1 && rpm -q podman-docker >/dev/null 2>&1; "
    "then echo podman-docker; "
    "elif grep -qs 'managed by podman-standard' /usr/local/bin/docker; then echo wrapper; "
    "else echo none; fi"
)

CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "podman-installed",
        "Podman installed",
        LINUX,
        {"podman": "podman --version"},
        _judge_version,
        "Install it: deploys/podman_standard.py with podman_phases=install (§5.1).",
    ),
    Criterion(
        "podman-info",
        "podman info works",
        LINUX,
        {"info": "podman info --format json"},
        _judge_info,
        "Run `podman info` on the host; a broken storage.conf is the usual cause.",
    ),
    Criterion(
        "graphroot",
        "graphRoot as declared",
        LINUX,
        {"info": "podman info --format json"},
        _judge_graphroot,
        "Converge storage (podman_phases=storage); check /etc/containers/storage.conf and that "
        "no storage.conf.d drop-in disagrees (§2.4).",
    ),
    Criterion(
        "no-docker-daemon",
        "No Docker daemon running",
        LINUX,
        {"docker": "systemctl is-active docker.service"},
        _judge_no_daemon,
        "Migrate the host: deploys/migrate_from_docker.py (§6.1); never run both runtimes.",
    ),
    Criterion(
        "docker-cli",
        "docker --version shows Podman",
        LINUX,
        {"docker": "docker --version"},
        _judge_docker_cli,
        '"docker: command not found": install podman-docker (Fedora) or the wrapper '
        "(Debian/Ubuntu) with podman_phases=install (§9.1).",
    ),
    Criterion(
        "docker-ps",
        "docker ps shows the podman containers",
        LINUX,
        {
            "docker_ps": "docker ps -a --format '{{.ID}}'",
            "podman_ps": "podman ps -a --format '{{.ID}}'",
        },
        _judge_docker_ps,
        "Root vs rootless mismatch: compare `sudo podman ps` with `podman ps` (§9.1).",
    ),
    Criterion(
        "docker-ps-users",
        "docker ps as each rootless user shows their podman containers",
        LINUX,
        {},
        _judge_docker_ps_owners,
        "`docker ps` as the user talks to another engine than their podman: check DOCKER_HOST "
        "and the wrapper (§9.1); compare with `podman ps -a` as the user.",
        applies=lambda cfg: bool(cfg.rootless_users),
        commands_for=_docker_ps_commands,
    ),
    Criterion(
        "services-running",
        "Declared services active, their containers running",
        LINUX,
        {},
        _judge_services,
        "`systemctl status NAME` (rootless: `systemctl --user -M USER@ status NAME`) and "
        "`journalctl -u NAME` say why; converge deploys/services.py (§7.2, §8.1).",
        applies=lambda cfg: bool(_present_services(cfg)),
        commands_for=_service_commands,
    ),
    Criterion(
        "services-health",
        "Services with a health check are healthy",
        LINUX,
        {},
        _judge_health,
        "`podman healthcheck run NAME` prints the check's result; `podman logs NAME` (§8.1).",
        applies=lambda cfg: any(s.healthcheck for s in _present_services(cfg)),
        commands_for=_service_commands,
    ),
    Criterion(
        "timers-scheduled",
        "Service timers scheduled",
        LINUX,
        {},
        _judge_timers,
        "`systemctl list-timers` shows them; converge deploys/services.py (§8.1).",
        applies=lambda cfg: any(_timer_units(s) for s in _present_services(cfg)),
        commands_for=_service_commands,
    ),
    Criterion(
        "compose-projects",
        "Declared compose projects up",
        LINUX,
        {},
        _judge_compose,
        "`podman-compose -p NAME ps` in the project's directory, as its user; converge "
        "deploys/compose.py (§2.3).",
        applies=lambda cfg: any(p.present for p in cfg.compose_projects),
        commands_for=_compose_commands,
    ),
    Criterion(
        "user-sockets",
        "Each user's Docker API socket answers /_ping",
        LINUX,
        {},
        _judge_user_sockets,
        "systemctl --user enable --now podman.socket as the user (linger on); DOCKER_HOST="
        "unix://$XDG_RUNTIME_DIR/podman/podman.sock in their session (§2.3, §9.1).",
        applies=lambda cfg: bool(_socket_users(cfg)),
        commands_for=_user_socket_commands,
    ),
    Criterion(
        "exposure",
        "Published ports no wider than declared",
        LINUX,
        {},
        _judge_exposure,
        "Rootful ports bypass the host firewall's zones (netavark's NAT rules): give each port "
        "the host_ip it should listen on and converge (README, Services).",
        commands_for=_exposure_commands,
    ),
    Criterion(
        "drift-containers",
        "Only declared containers, on the declared images",
        LINUX,
        {},
        _judge_drift_containers,
        "Declare what should run (podman_services, podman_compose_projects); remove the rest.",
        commands_for=_drift_commands,
        drift=True,
    ),
    Criterion(
        "drift-files",
        "Managed files as the data renders them",
        LINUX,
        {},
        _judge_drift_files,
        "A file edited on the host is overwritten by the next converge: put the change into the "
        "host data instead.",
        commands_for=_drift_commands,
        drift=True,
    ),
    Criterion(
        "drift-images",
        "Services run the image their last converge recorded",
        LINUX,
        {},
        _judge_drift_images,
        "A container re-created outside a converge runs another image than the data's last "
        "converge recorded (its rollback keeps the recorded one): converge to record it, or "
        "pin the image by digest.",
        applies=lambda cfg: bool(_present_services(cfg)),
        commands_for=_drift_commands,
        drift=True,
    ),
    Criterion(
        "drift-compose",
        "Compose projects run from their files as last brought up",
        LINUX,
        {},
        _judge_drift_compose,
        "A compose file edited on the host, or containers made or removed by hand: converge "
        "(deploys/compose.py) brings the project up from the data's files.",
        applies=lambda cfg: any(p.present for p in cfg.compose_projects),
        commands_for=_drift_commands,
        drift=True,
    ),
    Criterion(
        "drift-env",
        "Declared environment set",
        LINUX,
        {},
        _judge_drift_env,
        "A container re-created by hand or from an edited unit lacks the data's environment: "
        "converge (deploys/services.py) re-creates it from the data.",
        applies=lambda cfg: any(s.env or s.secrets for s in _present_services(cfg)),
        commands_for=_env_commands,
        drift=True,
    ),
    Criterion(
        "drift-volumes",
        "Declared volumes mounted",
        LINUX,
        {},
        _judge_drift_volumes,
        "A container created by hand or from an edited unit lacks the data's mounts: converge "
        "(deploys/services.py) re-creates it from the data.",
        applies=lambda cfg: any(s.volumes for s in _present_services(cfg)),
        commands_for=_volume_commands,
        drift=True,
    ),
    Criterion(
        "drift-ports",
        "Published ports as declared",
        LINUX,
        {},
        _judge_exposure_drift,
        "Declare each published port (with host_ip) or stop publishing it.",
        commands_for=_exposure_commands,
        drift=True,
    ),
    Criterion(
        "compat-layer",
        "podman-docker or wrapper present",
        LINUX,
        {"layer": _LAYER},
        _judge_compat_layer,
        "Converge podman_phases=install (§2.2).",
        applies=lambda cfg: cfg.docker_compat.value != "none",
    ),
    Criterion(
        "registries",
        "Registries configured",
        LINUX,
        {"info": "podman info --format json"},
        _judge_registries,
        "Converge podman_phases=config; check /etc/containers/registries.conf.d/ (§5.1).",
    ),
    Criterion(
        "registry-logins",
        "Registries accept the deployed logins",
        LINUX,
        {},
        _judge_logins,
        "Check the secret on the controller and converge podman_phases=config; `podman login "
        "REGISTRY` as the user shows the registry's answer (§5.1).",
        applies=lambda cfg: any(c.present for c in cfg.registries.credentials),
        commands_for=_login_commands,
    ),
    Criterion(
        "test-container",
        "A test container runs",
        LINUX,
        {"run": f"podman run --rm {TEST_IMAGE} echo podman-works"},
        _judge_echo("podman-works"),
        "Check registry access (`podman pull`) and `podman info` (§7.3).",
    ),
    Criterion(
        "docker-run",
        "docker run --rm nginx:alpine works",
        frozenset({HostClass.workstation}),
        {"run": f"docker run --rm {WORKSTATION_IMAGE} true"},
        _judge_rc_zero("exits 0"),
        "Check the compatibility layer and registry access (§8.2).",
    ),
    Criterion(
        "api-socket",
        "Podman API socket answers",
        LINUX,
        {"remote": f"podman --url {PODMAN_SOCKET} version --format '{{{{.Server.Version}}}}'"},
        _judge_socket,
        "systemctl enable --now podman.socket (§9.1).",
        applies=lambda cfg: cfg.socket_enabled,
    ),
    Criterion(
        "gpu-cdi",
        "NVIDIA GPU visible in a container (CDI)",
        LINUX,
        {"run": f"podman run --rm --device nvidia.com/gpu=all {GPU_IMAGE} nvidia-smi -L"},
        _judge_gpu,
        "Regenerate the CDI spec (nvidia-ctk cdi generate) or enable nvidia-cdi-refresh.path; "
        "check `nvidia-ctk cdi list` (§5.1, §8.1).",
        applies=lambda cfg: cfg.nvidia_enabled is True,
    ),
    Criterion(
        "selinux-store-label",
        "SELinux: the store has container storage labels",
        LINUX,
        {},
        _judge_store_label,
        "Converge podman_phases=storage (selinux.store_labels): `semanage fcontext -a -e "
        "/var/lib/containers/storage GRAPHROOT; restorecon -R GRAPHROOT`.",
        commands_for=_store_label_commands,
    ),
    Criterion(
        "selinux-enforcing-container",
        "SELinux: a test container runs confined while enforcing",
        LINUX,
        {"run": f'{_MODE}; [ "$m" = Enforcing ] || exit 0; {_CONFINED_RUN}'},
        _judge_enforcing_container,
        "`ausearch -m avc -ts recent` names the denial; a store without container labels is "
        "the usual cause (selinux-store-label).",
    ),
    Criterion(
        "nvidia-repository",
        "NVIDIA's container toolkit repository configured",
        LINUX,
        {},
        _judge_repository,
        "Converge podman_phases=config (deploys/nvidia.py) or add the host's own source for "
        "nvidia-container-toolkit (podman_nvidia_repository).",
        applies=lambda cfg: cfg.nvidia_enabled is True and cfg.nvidia_repository.enabled,
        commands_for=_repository_commands,
    ),
    Criterion(
        "docker-desktop",
        "Docker Desktop functioning",
        DESKTOP,
        {"docker_ps": "docker ps"},
        _judge_desktop_docker,
        "Start Docker Desktop; this package changes nothing on this host (§8.3).",
    ),
    Criterion(
        "desktop-untouched",
        "No Podman-related changes applied",
        DESKTOP,
        {"docker": "docker --version"},
        _judge_desktop_untouched,
        "`docker` should be Docker Desktop's CLI; remove any podman alias (§8.3).",
    ),
)


def criteria_for(cfg: HostData) -> list[Criterion]:
    """The criteria that apply to this host, their data-dependent commands filled in."""
    return [
        replace(c, commands=c.commands_for(cfg)) if c.commands_for else c
        for c in CRITERIA
        if cfg.host_class in c.classes and c.applies(cfg)
    ]


def evaluate(criterion: Criterion, results: Results, cfg: HostData) -> Check:
    expected, found, passed, *details = criterion.judge(results, cfg)
    return Check(
        criterion.id,
        criterion.title,
        expected,
        found,
        passed,
        "" if passed else criterion.hint,
        "warn" if criterion.drift and not cfg.verify_strict else "fail",
        tuple(details[0]) if details else (),
    )


def run_criteria(cfg: HostData, run: Callable[[str], ProbeResult]) -> list[Check]:
    """Evaluate every criterion for this host, running each distinct command once."""
    cache: dict[str, ProbeResult] = {}
    checks = []
    for criterion in criteria_for(cfg):
        results = {}
        for name, command in criterion.commands.items():
            if command not in cache:
                cache[command] = run(command)
            results[name] = cache[command]
        checks.append(evaluate(criterion, results, cfg))
    return checks
