"""Performance benchmark (issue 7): this package's baseline against ansible-core and bare apt-get.

Run as root from the repository root with the shared venv (``.venv/bin/python -m bench.run``):

  noop   --state HOSTS.json [--runs 3]   no-op runs of deploys/linux_baseline.py and of
                                          bench/ansible/baseline.yml on already converged hosts,
                                          alternating A/B; counts pyinfra's remote commands
  first  [--runs 1]                      first converge of a fresh Debian 12 server guest vs the
                                          bare ``apt-get install`` of the same packages on an
                                          identical fresh guest (one guest at a time)
  fleet  [--sizes 1,4,8] [--runs 3]      no-op runs against 1, 4, 8 systemd-nspawn hosts
  services [--counts 0,3,6] [--runs 5]   no-op runs of the server pattern with 0, 3, 6
                                          motoko-like services on one Debian 12 guest (podman
                                          image variant), each count converged first
  all    [--runs 3] [--first-runs 2]     the three above in one run (first converge; no-op on
                                          the last guest pyinfra converged; fleet), then the
                                          goals table
  table  RESULTS.json ...                print the tables of saved results

Every run is timed on the wall clock (process start to exit) with ``uptime``'s 1-minute load
beside it; results go to ``.bench/results/*.json`` and the tables print min/median/max.
Times are never asserted anywhere: machines are noisy, quote medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / ".bench" / "results"
ANSIBLE_DIR = REPO / "bench" / "ansible"
ANSIBLE_VENV = Path(os.environ.get("BENCH_ANSIBLE_VENV", REPO / ".bench" / "ansible-venv"))
DEPLOY = "deploys/linux_baseline.py"
INVENTORY = "inventories/testbed.py"
STATE_ENV = "PODMAN_STANDARD_TESTBED"

# ---------------------------------------------------------------------------------------------
# Pure parts (fast-tier tested: tests/bench/)

_COMMAND_LINE = re.compile(r"\[pyinfra\.connectors\.\w+\] Running command on (\S+): ")
_FACT_LINE = re.compile(r"\[pyinfra\.api\.facts\] \[(\S+)\] Loaded fact (\S+)")
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
_GRAND_TOTAL = re.compile(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)")


def summary(samples: list[float]) -> dict:
    """min, median and max of ``samples`` (and how many there were)."""
    if not samples:
        raise ValueError("no samples")
    return {
        "n": len(samples),
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
    }


def remote_commands(debug_log: str) -> dict[str, dict]:
    """Per host, from pyinfra's own ``--debug`` records: how many commands its connector ran
    (``Running command on HOST``) and which facts were loaded, in order."""
    hosts: dict[str, dict] = {}
    for line in debug_log.splitlines():
        if m := _COMMAND_LINE.search(line):
            hosts.setdefault(m[1], {"commands": 0, "facts": []})["commands"] += 1
        elif m := _FACT_LINE.search(line):
            hosts.setdefault(m[1], {"commands": 0, "facts": []})["facts"].append(m[2])
    return hosts


def pyinfra_changes(output: str) -> int:
    """Operations that changed something, from pyinfra's results table ("Grand total" row:
    hosts, success, error, no change; "-" is zero). A no-op run has none."""
    m = _GRAND_TOTAL.search(output)
    if not m:
        raise ValueError("no 'Grand total' row in pyinfra's output")
    success, error = (0 if v == "-" else int(v) for v in (m[2], m[3]))
    return success + error


def ansible_changes(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook: per host ok/changed/unreachable/failed."""
    recap = {}
    for line in output.splitlines():
        if m := _RECAP.match(line.strip()):
            recap[m[1]] = {
                "ok": int(m[2]),
                "changed": int(m[3]),
                "unreachable": int(m[4]),
                "failed": int(m[5]),
            }
    return recap


def ansible_inventory(hosts: list[dict], data: dict[str, dict]) -> dict:
    """An ansible YAML/JSON inventory for the testbed ``hosts`` (hosts.json entries), each with
    its validated podman-standard data (``model.HostData`` as JSON) as the ``podman`` var."""
    return {
        "all": {
            "hosts": {
                h["name"]: {
                    "ansible_host": h["ssh_host"],
                    "ansible_port": h["ssh_port"],
                    "ansible_user": h["ssh_user"],
                    "ansible_ssh_private_key_file": h["ssh_key"],
                    "podman": data[h["name"]],
                }
                for h in hosts
            }
        }
    }


# What ansible's modules need on a managed host and ansible does not bring: ansible.builtin.apt
# imports python3-apt (a converged host need not have it; Debian 13's minimal image does not).
# Installed once per host before anything is timed, through the raw module (no Python needed);
# a host where it cannot be had is left out of the comparison, with the reason.
ANSIBLE_NEEDS = ("python3-apt",)


def ansible_prepare_command(packages=ANSIBLE_NEEDS) -> str:
    """A shell command that installs those of ``packages`` that are not installed (refreshing
    the index only when the install fails without it) and prints which it installed."""
    install = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $m"
    return (
        "m=; for p in " + " ".join(shlex.quote(p) for p in packages) + "; do "
        "dpkg-query -W -f='${db:Status-Status}' \"$p\" 2>/dev/null | grep -qx installed"
        ' || m="$m $p"; done; '
        'if [ -z "$m" ]; then echo "present: all"; else '
        f"{{ {install} || {{ apt-get update -q && {install}; }}; }} >/dev/null"
        ' && echo "installed:$m"; fi'
    )


def measured(inventory: dict, skipped: dict[str, str]) -> dict:
    """The ansible inventory without the hosts in ``skipped`` ({host: reason})."""
    hosts = inventory["all"]["hosts"]
    return {"all": {"hosts": {n: v for n, v in hosts.items() if n not in skipped}}}


def alternate(labels: list[str], runs: int) -> list[str]:
    """A/B order for ``runs`` rounds: ABAB..., the first label swapped every other round so
    neither always runs first (a warm cache after the other's run favours the second)."""
    order = []
    for i in range(runs):
        order += labels if i % 2 == 0 else list(reversed(labels))
    return order


def table(title: str, rows: list[tuple[str, dict, str]]) -> str:
    """A text table: label, n, min, median, max (seconds) and a note column."""
    lines = [
        title,
        f"{'':<34} {'n':>3} {'min s':>8} {'median s':>9} {'max s':>8}  note",
    ]
    for label, s, note in rows:
        lines.append(
            f"{label:<34} {s['n']:>3} {s['min']:>8.1f} {s['median']:>9.1f} {s['max']:>8.1f}  {note}"
        )
    return "\n".join(lines)


def ratio(a: dict, b: dict) -> float:
    """Median of ``a`` over median of ``b``."""
    return a["median"] / b["median"]


# ---------------------------------------------------------------------------------------------
# Running things


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def timed(command: list[str], env: dict | None = None, cwd: Path = REPO) -> dict:
    """Run ``command``; wall seconds, exit code, output and the 1-minute load before/after."""
    before = load1()
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return {
        "seconds": time.monotonic() - started,
        "rc": result.returncode,
        "output": result.stdout + result.stderr,
        "load_before": before,
        "load_after": load1(),
    }


def pyinfra_env(state: Path) -> dict:
    return dict(os.environ, **{STATE_ENV: str(state), "PYINFRA_PROGRESS": "off"})


def pyinfra_run(state: Path, *extra: str, inventory: str = INVENTORY) -> dict:
    command = [sys.executable, "-m", "pyinfra", "-y", *extra, inventory, DEPLOY]
    return timed(command, env=pyinfra_env(state))


def host_data(state: Path, inventory: str = INVENTORY) -> dict[str, dict]:
    """Each host's validated data, read through pyinfra's own inventory loading."""
    code = (
        "import json\n"
        "from pyinfra.api import Config, State\n"
        "from pyinfra.context import ctx_config, ctx_inventory, ctx_state\n"
        "from pyinfra_cli.inventory import make_inventory\n"
        "from model.validate import parse_host\n"
        "state, config = State(), Config()\n"
        "state.cwd = '.'\n"
        "with ctx_state.use(state), ctx_config.use(config):\n"
        f"    inv = make_inventory({inventory!r}, cwd='.')\n"
        "    with ctx_inventory.use(inv):\n"
        "        state.init(inv, config)\n"
        "        data = {h.name: parse_host(h).model_dump(mode='json') for h in inv}\n"
        "print(json.dumps(data))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=pyinfra_env(state),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def ansible_run(inventory: Path, *extra: str, tool: str = "ansible-playbook") -> dict:
    """``ansible-playbook -i INVENTORY EXTRA... baseline.yml`` (or ``tool``, e.g. ``ansible``,
    with ``extra`` as its whole argument list)."""
    # A fresh control directory per run: no run inherits the previous run's SSH master.
    with tempfile.TemporaryDirectory(prefix="bench-cp-") as control:
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=control,
            ANSIBLE_NOCOLOR="1",
            PATH=f"{ANSIBLE_VENV / 'bin'}:{os.environ['PATH']}",
        )
        playbook = [str(ANSIBLE_DIR / "baseline.yml")] if tool == "ansible-playbook" else []
        command = [str(ANSIBLE_VENV / "bin" / tool), "-i", str(inventory), *extra, *playbook]
        return timed(command, env=env)


def ansible_prepare(inventory: Path, hosts: list[str]) -> dict[str, str]:
    """Install what ansible's modules need on each host (``ANSIBLE_NEEDS``), untimed; returns
    ``{host: reason}`` for each host where that failed (left out of the comparison)."""
    skipped = {}
    for name in hosts:
        run = ansible_run(
            inventory, name, "-b", "-m", "raw", "-a", ansible_prepare_command(), tool="ansible"
        )
        last = [line for line in run["output"].splitlines() if line.strip()][-3:]
        print(f"  {name}: {' / '.join(last)}", flush=True)
        if run["rc"]:
            skipped[name] = (
                f"could not install {', '.join(ANSIBLE_NEEDS)} for ansible's modules "
                f"(rc {run['rc']}): {' / '.join(last)}"
            )
    return skipped


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _brief(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "output"}


def _fail(what: str, run: dict) -> None:
    sys.exit(f"{what} failed (rc {run['rc']}):\n{_fatal(run['output'])}{run['output'][-4000:]}")


def _fatal(output: str) -> str:
    """ansible's first failures, each with its task's name and the lines of its message: under
    -vvv they lie far above the output's tail."""
    lines, found = output.splitlines(), []
    for i, line in enumerate(lines):
        if "fatal:" in line and len(found) < 3:
            task = next((t for t in reversed(lines[:i]) if t.startswith("TASK [")), "")
            found.append("\n".join([task, *lines[i : i + 12]]))
    return "".join(f"{text}\n...\n" for text in found)


def _keep(what: str, label: str, run: dict, samples: list[dict]) -> None:
    """Stop on a failed run; else print it (progress) and keep it without its output."""
    if run["rc"]:
        _fail(f"{label} {what}", run)
    changed = f"  changed={run['changed']}" if "changed" in run else ""
    print(
        f"  {label:<8} {run['seconds']:7.1f}s{changed}  "
        f"load {run['load_before']:.1f}->{run['load_after']:.1f}",
        flush=True,
    )
    samples.append(_brief(run))


# ---------------------------------------------------------------------------------------------
# noop: pyinfra vs ansible-core on converged hosts


def noop(state: Path, runs: int, inventory: str = INVENTORY) -> dict:
    hosts = json.loads(state.read_text())["hosts"]
    ansible_inv = state.with_name(state.stem + "-ansible.json")
    full = ansible_inventory(hosts, host_data(state, inventory))
    ansible_inv.write_text(json.dumps(full))
    print("what ansible's modules need on each host (untimed)", flush=True)
    skipped = ansible_prepare(ansible_inv, [h["name"] for h in hosts])
    names = [h["name"] for h in hosts if h["name"] not in skipped]
    if not names:
        sys.exit("no host left to measure: " + "; ".join(f"{h}: {r}" for h, r in skipped.items()))
    ansible_inv.write_text(json.dumps(measured(full, skipped)))
    # pyinfra runs on the same hosts as ansible.
    limit = [arg for name in names for arg in ("--limit", name)]

    # Untimed: pyinfra's command count (from its --debug records), and a first ansible run
    # that must already change nothing (the host was converged by pyinfra).
    counted = pyinfra_run(state, "--debug", *limit, inventory=inventory)
    if counted["rc"]:
        _fail("pyinfra --debug run", counted)
    commands = remote_commands(counted["output"])
    check = ansible_run(ansible_inv, "-vvv")
    if check["rc"]:
        _fail("ansible-playbook check run", check)
    ansible_execs = len(re.findall(r"<[^>]+> SSH: EXEC ssh ", check["output"]))

    samples: dict[str, list[dict]] = {"pyinfra": [], "ansible": []}
    for label in alternate(["pyinfra", "ansible"], runs):
        if label == "pyinfra":
            run = pyinfra_run(state, *limit, inventory=inventory)
            run["changed"] = pyinfra_changes(run["output"]) if not run["rc"] else None
        else:
            run = ansible_run(ansible_inv)
            recap = ansible_changes(run["output"])
            run["changed"] = sum(h["changed"] for h in recap.values())
        _keep("no-op run", label, run, samples[label])
    return {
        "hosts": names,
        "skipped": skipped,
        "pyinfra_commands": commands,
        "ansible_ssh_execs": ansible_execs,
        "ansible_check_changed": sum(
            h["changed"] for h in ansible_changes(check["output"]).values()
        ),
        "runs": samples,
    }


def noop_report(result: dict) -> str:
    p = summary([r["seconds"] for r in result["runs"]["pyinfra"]])
    a = summary([r["seconds"] for r in result["runs"]["ansible"]])
    load = [r["load_before"] for rs in result["runs"].values() for r in rs]
    out = [
        table(
            f"No-op run on {', '.join(result['hosts'])} (load1 {min(load):.1f}-{max(load):.1f})",
            [
                ("pyinfra deploys/linux_baseline.py", p, ""),
                ("ansible-core bench/ansible", a, ""),
            ],
        ),
        f"ansible / pyinfra (medians): {ratio(a, p):.2f}x",
    ]
    for host, c in result["pyinfra_commands"].items():
        out.append(f"pyinfra remote commands on {host}: {c['commands']} ({len(c['facts'])} facts)")
    out.append(f"ansible SSH execs (one -vvv run, all hosts): {result['ansible_ssh_execs']}")
    for host, reason in result.get("skipped", {}).items():
        out.append(f"not measured: {host}: {reason}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# first: first converge vs bare apt-get, each on a fresh guest, one guest at a time


def first_converge(runs: int, then=None) -> dict:
    """``then(state_path)``, when given, runs on the last pyinfra-converged guest before it is
    torn down (``all`` measures the no-op runs there)."""
    sys.path.insert(0, str(REPO))
    from operations.packages import PODMAN_PACKAGES
    from testbed.fleet import GuestSpec, Testbed

    packages = PODMAN_PACKAGES["debian"]
    work = REPO / ".bench" / "first"
    samples: dict[str, list[dict]] = {"pyinfra": [], "apt-get": []}
    order = alternate(["pyinfra", "apt-get"], runs)
    last_pyinfra = len(order) - 1 - order[::-1].index("pyinfra")
    for i, label in enumerate(order):
        state = work / f"{label}.json"
        testbed = Testbed([GuestSpec("bookworm", "server")], work / f"{label}-run", state)
        testbed.up()
        try:
            guest = next(iter(testbed.guests.values()))
            if label == "pyinfra":
                run = pyinfra_run(state)
            else:
                bare = "sudo env DEBIAN_FRONTEND=noninteractive sh -c " + shlex.quote(
                    "apt-get update -q && apt-get install -y -q --no-install-recommends "
                    + " ".join(packages)
                )
                run = timed(guest.ssh_command(bare))
            _keep("first converge", label, run, samples[label])
            if then is not None and i == last_pyinfra:
                then(state)
        finally:
            testbed.down()
            state.unlink(missing_ok=True)
    return {"packages": packages, "runs": samples}


def first_report(result: dict) -> str:
    p = summary([r["seconds"] for r in result["runs"]["pyinfra"]])
    b = summary([r["seconds"] for r in result["runs"]["apt-get"]])
    load = [r["load_before"] for rs in result["runs"].values() for r in rs]
    return "\n".join(
        [
            table(
                "First converge, fresh Debian 12 server guest "
                f"(load1 {min(load):.1f}-{max(load):.1f})",
                [
                    ("pyinfra deploys/linux_baseline.py", p, ""),
                    ("bare apt-get update + install", b, f"{len(result['packages'])} packages"),
                ],
            ),
            f"pyinfra / bare apt-get (medians): {ratio(p, b):.2f}x",
        ]
    )


# ---------------------------------------------------------------------------------------------
# fleet: no-op runs against 1, 4, 8 systemd-nspawn hosts


def fleet(sizes: list[int], runs: int) -> dict:
    from bench import nspawn

    hosts = nspawn.Fleet(max(sizes))
    hosts.up()
    try:
        converge = pyinfra_run(hosts.state, "--no-wait", inventory=str(nspawn.INVENTORY))
        if converge["rc"]:
            _fail("fleet converge", converge)
        samples: dict[str, list[dict]] = {str(n): [] for n in sizes}
        for i in range(runs):
            for n in sizes if i % 2 == 0 else list(reversed(sizes)):
                limit = [arg for name in hosts.names[:n] for arg in ("--limit", name)]
                run = pyinfra_run(hosts.state, *limit, inventory=str(nspawn.INVENTORY))
                run["changed"] = pyinfra_changes(run["output"]) if not run["rc"] else None
                _keep("fleet no-op", f"{n} hosts", run, samples[str(n)])
        return {"converge": _brief(converge), "runs": samples}
    finally:
        hosts.down()


def fleet_report(result: dict) -> str:
    sizes = sorted(result["runs"], key=int)
    stats = {n: summary([r["seconds"] for r in result["runs"][n]]) for n in sizes}
    load = [r["load_before"] for rs in result["runs"].values() for r in rs]
    rows = [(f"{n} host(s), no-op baseline", stats[n], "") for n in sizes]
    title = f"Fleet scale, systemd-nspawn hosts (load1 {min(load):.1f}-{max(load):.1f})"
    out = [table(title, rows)]
    one = stats[sizes[0]]
    out += [
        f"{n} hosts / {sizes[0]} host (medians): {ratio(stats[n], one):.2f}x" for n in sizes[1:]
    ]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# services: the server pattern's no-op with N motoko-like services (issue 18's item 7)

BENCH_IMAGE = "docker.io/library/busybox:latest"
WEB_IMAGE = "docker.io/library/nginx:alpine"
SECRET_ENV = "PODMAN_STANDARD_BENCH_SECRET"


def motoko_like(count: int, managed_files: bool = True) -> list[dict]:
    """``count`` services shaped like motoko's (group_data/motoko.py), on the testbed's
    images: a database with a secret, a data volume and a health check on a network; a cache;
    an app requiring both, with a port, a volume, a timer and a managed file; then more of the
    same three. ``managed_files=False``: the apps without their file (the shape measured before
    it, which tests/fixtures/facts/guest-debian12/ServicesState.motoko-like-6.txt shows)."""
    shapes = [
        lambda n: {
            "name": f"db{n}",
            "image": BENCH_IMAGE,
            "command": ["sleep", "infinity"],
            "init": True,
            "network": f"net{n}",
            "secrets": {"PASSWORD": {"env": SECRET_ENV}},
            "volumes": [{"source": "data", "target": "/data"}],
            "healthcheck": {"command": "true", "interval": "30s"},
            "memory": "64m",
        },
        lambda n: {
            "name": f"cache{n}",
            "image": BENCH_IMAGE,
            "command": ["sleep", "infinity"],
            "init": True,
            "network": f"net{n}",
            "volumes": [{"source": "data", "target": "/data"}],
        },
        lambda n: {
            "name": f"app{n}",
            "image": WEB_IMAGE,
            "network": f"net{n}",
            "requires": [f"db{n}", f"cache{n}"],
            "ports": [{"host": 8080 + n, "container": 80}],
            "volumes": [{"source": "html", "target": "/www/data", "read_only": True}],
            "timers": [{"name": "cron", "on_calendar": "hourly", "command": ["true"]}],
            # A managed config file (LiteLLM's shape), reloaded with a signal on change.
            **(
                {
                    "files": [{"path": "conf/app.conf", "content": f"listen={8080 + n}\n"}],
                    "reload": {"signal": "HUP"},
                }
                if managed_files
                else {}
            ),
        },
    ]
    return [shapes[i % 3](i // 3) for i in range(count)]


def services_noop(counts: list[int], runs: int, then=None) -> dict:
    """One guest; for each count: converge with that many services (untimed, must succeed),
    count the remote commands of a --debug no-op run, then time ``runs`` no-op runs, each of
    which must change nothing. ``then(testbed, count)``, when given, runs after each count."""
    from testbed.fleet import GuestSpec, Testbed

    spec = GuestSpec("bookworm", "server", "podman")
    work = REPO / ".bench" / "services"
    state = work / "hosts.json"
    os.environ.setdefault(SECRET_ENV, "bench-only-not-a-secret")
    bed = Testbed([spec], work / "run", state)
    bed.up()
    result: dict = {"guest": spec.name, "counts": {}}
    try:
        for count in counts:
            bed.data_overrides[spec.name] = {"podman_services": motoko_like(count)}
            bed.write_state()
            converge = pyinfra_run(state)
            if converge["rc"]:
                _fail(f"converge with {count} services", converge)
            counted = pyinfra_run(state, "--debug")
            if counted["rc"]:
                _fail(f"--debug no-op with {count} services", counted)
            samples: list[dict] = []
            for _ in range(runs):
                run = pyinfra_run(state)
                run["changed"] = pyinfra_changes(run["output"]) if not run["rc"] else None
                _keep("no-op run", f"+{count}", run, samples)
            result["counts"][str(count)] = {
                "converge": _brief(converge),
                "commands": remote_commands(counted["output"]),
                "runs": samples,
            }
            if then is not None:
                then(bed, count)
    finally:
        bed.down()
    return result


def services_report(result: dict) -> str:
    rows, lines = [], []
    for count, r in sorted(result["counts"].items(), key=lambda kv: int(kv[0])):
        stats = summary([run["seconds"] for run in r["runs"]])
        changed = sum(run["changed"] or 0 for run in r["runs"])
        commands = max(c["commands"] for c in r["commands"].values())
        rows.append((f"baseline + {count} services", stats, f"{commands} commands"))
        lines.append(
            f"baseline + {count} services: changed {changed}; facts read: "
            + ", ".join(next(iter(r["commands"].values()))["facts"])
        )
    load = [run["load_before"] for r in result["counts"].values() for run in r["runs"]]
    title = (
        f"No-op, server pattern with services, {result['guest']} "
        f"(load1 {min(load):.1f}-{max(load):.1f})"
    )
    return "\n".join([table(title, rows), *lines])


# ---------------------------------------------------------------------------------------------
# all: the four figures in one run, then the goals


GOALS = {
    # figure: (how it is computed from the results, comparison, goal)
    "no-op: ansible / pyinfra (medians)": ("noop_ratio", ">=", 5.0),
    "no-op: pyinfra remote commands (server)": ("commands", "<=", 40),
    "first converge: pyinfra / bare apt-get (medians)": ("first_ratio", "<=", 1.3),
    "fleet: 8 hosts / 1 host (medians)": ("fleet_ratio", "<=", 1.5),
}


def figures(result: dict) -> dict[str, float]:
    """The four headline figures of an ``all`` result."""
    noop_r, first_r, fleet_r = result["noop"], result["first"], result["fleet"]
    med = lambda runs: summary([r["seconds"] for r in runs])  # noqa: E731
    sizes = sorted(fleet_r["runs"], key=int)
    return {
        "noop_ratio": ratio(med(noop_r["runs"]["ansible"]), med(noop_r["runs"]["pyinfra"])),
        "commands": max(c["commands"] for c in noop_r["pyinfra_commands"].values()),
        "first_ratio": ratio(med(first_r["runs"]["pyinfra"]), med(first_r["runs"]["apt-get"])),
        "fleet_ratio": ratio(med(fleet_r["runs"][sizes[-1]]), med(fleet_r["runs"][sizes[0]])),
    }


def goals_table(values: dict[str, float]) -> str:
    lines = ["Goals (issue 7)", f"{'figure':<50} {'measured':>9}  goal      result"]
    for label, (key, op, goal) in GOALS.items():
        value = values[key]
        met = value >= goal if op == ">=" else value <= goal
        shown = f"{value:.0f}" if key == "commands" else f"{value:.2f}x"
        want = f"{op} {goal:g}" + ("" if key == "commands" else "x")
        lines.append(f"{label:<50} {shown:>9}  {want:<8}  {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def everything(runs: int, first_runs: int, sizes: list[int]) -> dict:
    """First converge (A/B on fresh guests), then the no-op A/B on the last guest pyinfra
    converged, then the fleet: one guest at a time, no TCG guest during the fleet runs."""
    result: dict = {}

    def on_converged(state: Path) -> None:
        print("no-op runs on the guest pyinfra just converged", flush=True)
        result["noop"] = noop(state, runs)

    print("first converge, one fresh guest at a time", flush=True)
    result["first"] = first_converge(first_runs, then=on_converged)
    print("fleet", flush=True)
    result["fleet"] = fleet(sizes, runs)
    return result


def all_report(result: dict) -> str:
    return "\n\n".join(
        [
            first_report(result["first"]),
            noop_report(result["noop"]),
            fleet_report(result["fleet"]),
            goals_table(figures(result)),
        ]
    )


REPORTS = {
    "noop": noop_report,
    "first": first_report,
    "fleet": fleet_report,
    "all": all_report,
    "services": services_report,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("noop")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--runs", type=int, default=3)
    p = sub.add_parser("first")
    p.add_argument("--runs", type=int, default=1)
    p = sub.add_parser("fleet")
    p.add_argument("--sizes", default="1,4,8")
    p.add_argument("--runs", type=int, default=3)
    p = sub.add_parser("services")
    p.add_argument("--counts", default="0,3,6")
    p.add_argument("--runs", type=int, default=5)
    p = sub.add_parser("all")
    p.add_argument("--runs", type=int, default=3, help="no-op and fleet runs per tool/size")
    p.add_argument("--first-runs", type=int, default=2, help="first converges per tool")
    p.add_argument("--sizes", default="1,4,8")
    p = sub.add_parser("table")
    p.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.command == "table":
        for path in args.results:
            payload = json.loads(path.read_text())
            print(REPORTS[payload["kind"]](payload))
            print()
        return 0
    if args.command == "noop":
        result = noop(args.state.resolve(), args.runs)
    elif args.command == "first":
        result = first_converge(args.runs)
    elif args.command == "services":
        result = services_noop([int(n) for n in args.counts.split(",")], args.runs)
    elif args.command == "all":
        sizes = [int(n) for n in args.sizes.split(",")]
        result = everything(args.runs, args.first_runs, sizes)
    else:
        result = fleet([int(n) for n in args.sizes.split(",")], args.runs)
    result["kind"] = args.command
    path = save(args.command, result)
    print(REPORTS[args.command](result))
    print(f"saved: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
