"""Services with real server software (issue 18): PostgreSQL and Redis from Debian's packages
(``testbed/app_images.py``) and an app that needs both, on a Debian 12 guest (plain units,
podman 4.3: the health gate is the unit's bounded ExecStartPost wait), then on a Debian 13
guest (quadlet, podman 5.4: Notify=healthy), one after the other.

Shown on both: the runtime options reach ``podman inspect``; the app starts only once
PostgreSQL is healthy, by systemd's own timestamps, also when systemd alone restarts the
stack; the app logs in to PostgreSQL with a password from its managed ``pgpass`` (a template
reading the service's secret, 0600, the password in no line of pyinfra's ``--debug`` output)
and reads its managed config file; changing that file reloads the app (SIGHUP, its
InvocationID kept) and restarts a service without a reload, and nothing else; a service joins
two networks with their aliases; a second run
changes nothing; a health check that never passes ends the run in bounded time naming the
service. On Debian 12 only (the same plain timer units and pull script on both): the app's
timer runs a query in its container; an image that cannot be pulled ends the run in bounded
time naming the image, the running app untouched.

The guest boots the ``podman`` image variant (the toolset installed at build time); the run
configures the registries (the local registry as docker.io's mirror) and the services only.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest

from facts.files import ManagedFiles
from testbed.app_images import PG_BIN, PGDATA, TAG, app_images
from testbed.fleet import GuestSpec, Testbed
from testbed.registry import push
from tests.realhost.conftest import _TIMINGS

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one guest at a time: runs beside another one-guest module (tier.py)
MINUTES = 32.8  # a full tier run, 2026-12-02: 1967 s (tier.py balances the lanes)

SPECS = {release: GuestSpec(release, "server", "podman") for release in ("bookworm", "trixie")}
DEPLOYS = ("deploys/podman_standard.py", "deploys/services.py")
ROOT = "/srv/containers/apps"
IMAGE = f"docker.io/{TAG}"
MISSING = "docker.io/library/debian-servers:no-such-tag"
NAMES = ("bench-db", "bench-cache", "bench-app")
# The database's password: a controller secret the db initialises with and the app's managed
# pgpass file holds (quotes, '$', ':' and '\\' on purpose).
PASSWORD = "pw:'s3cr\\et\" $HOME"
SECRET = {"POSTGRES_PASSWORD": {"env": "BENCH_DB_PASSWORD"}}
# Under TCG initdb and PostgreSQL's start take seconds to tens of seconds: the gate has 2 minutes.
PG_CHECK = {"command": f"{PG_BIN}/pg_isready -q -h 127.0.0.1 -U postgres", "interval": "2s"}
PG_CHECK |= {"timeout": "5s", "retries": 20}
# Password authentication (scram) for every connection: the app gets in only through pgpass.
PG_START = (
    f"test -s {PGDATA}/PG_VERSION || {{ printf '%s\\n' \"$POSTGRES_PASSWORD\" > /tmp/pw && "
    f"{PG_BIN}/initdb -D {PGDATA} -A scram-sha-256 -U postgres --pwfile=/tmp/pw; "
    "rm -f /tmp/pw; }; "
    f"exec {PG_BIN}/postgres -D {PGDATA} -c listen_addresses=127.0.0.1 -c jit=off -k /tmp"
)
CONF = "/etc/bench-app"
# -w: never ask for a password (there is no terminal): pgpass or nothing. HUP re-reads the
# config (catatonit, the init, forwards it to the shell).
APP = (
    f"{PG_BIN}/psql -w -h 127.0.0.1 -U postgres -tAc 'select 1' && redis-cli -h 127.0.0.1 ping && "
    "echo 'app: PostgreSQL and Redis answer' && "
    f'load() {{ . {CONF}/app.conf; echo "app: greeting $greeting"; }}; trap load HUP; load; '
    "while :; do sleep 1 & wait $!; done"
)


TICK = ["sh", "-c", f"{PG_BIN}/psql -w -h 127.0.0.1 -U postgres -tAc 'select 42'"]


def services(app_image: str = IMAGE, broken: bool = False, greeting: str = "hello") -> list[dict]:
    stack = [
        {
            "name": "bench-db",
            "image": IMAGE,
            "command": ["sh", "-c", PG_START],
            "secrets": SECRET,
            "host_network": True,  # the three talk over the guest's loopback
            "container_user": "postgres",
            "shm_size": "256m",
            "memory": "512m",
            "cpus": 1,
            "pids_limit": 200,
            "stop_timeout": 30,
            "labels": {"org.podman-standard/test": "services-real"},
            "healthcheck": PG_CHECK,
        },
        {
            "name": "bench-cache",
            "image": IMAGE,
            "command": ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            "host_network": True,
            "container_user": "redis",
            "read_only": True,
            "tmpfs": [{"target": "/data", "size": "16m"}],
            "working_dir": "/data",
            "cap_drop": ["ALL"],
            "ulimits": {"nofile": "10032:10032"},
            "healthcheck": {
                "command": "redis-cli -h 127.0.0.1 ping | grep -q PONG",
                "interval": "2s",
            },
        },
        {
            "name": "bench-app",
            "image": app_image,
            "command": ["sh", "-c", APP],
            "host_network": True,
            "init": True,
            "requires": ["bench-db", "bench-cache"],
            # Every 15 s (systemd's default accuracy lets it fire up to a minute late).
            "timers": [{"name": "tick", "on_calendar": "*:*:0/15", "command": TICK}],
            "secrets": SECRET,  # for its pgpass template only
            "env": {"PGPASSFILE": f"{CONF}/pgpass"},
            "volumes": [{"source": "conf", "target": CONF, "read_only": True}],
            "files": [
                {"path": "conf/app.conf", "content": f"greeting={greeting}\n"},
                {
                    "path": "conf/pgpass",
                    "template": "pgpass.j2",
                    "vars": {"host": "127.0.0.1", "user": "postgres"},
                    "mode": "0600",
                },
            ],
            "reload": {"signal": "HUP"},
        },
        {
            # Two networks with aliases; a managed file and no reload: a change restarts it.
            "name": "bench-net",
            "image": IMAGE,
            "command": ["sleep", "infinity"],
            "init": True,
            "networks": [
                {"name": "bench-a", "aliases": ["alpha"]},
                {"name": "bench-b", "aliases": ["beta", "gamma"]},
            ],
            "files": [{"path": "note", "content": f"{greeting}\n", "mode": "0640"}],
        },
    ]
    if broken:
        stack.append(
            {
                "name": "bench-broken",
                "image": IMAGE,
                "command": ["sleep", "infinity"],
                "init": True,
                "restart": "no",  # failed once is enough: no retries in the background
                "healthcheck": {
                    "command": "false",
                    "interval": "1s",
                    "timeout": "2s",
                    "retries": 2,
                },
            }
        )
    return stack


@pytest.fixture(scope="module", params=list(SPECS))
def bed(request, registry, no_shared_guests, tmp_path_factory):
    with _TIMINGS.stage("app image build or cache + push"):
        for reference, img in app_images().items():
            push(f"http://{registry.address}", reference, img)
    spec = SPECS[request.param]
    workdir = tmp_path_factory.mktemp(f"services-real-{spec.release}")
    testbed = Testbed([spec], workdir, workdir / "hosts.json", registry=registry)
    testbed.timings = _TIMINGS
    testbed.spec = spec
    testbed.up()
    try:
        yield testbed
    finally:
        testbed.down()


def deploy(bed, stack: list[dict], *args: str) -> tuple[int, dict | None, str]:
    bed.data_overrides[bed.spec.name] = {
        "podman_phases": ["config", "services"],
        "podman_service_root": ROOT,
        "podman_socket_enabled": False,
        "podman_rootless_users": [],
        "podman_services": stack,
    }
    bed.write_state()
    return bed.pyinfra(*args, deploy=DEPLOYS, env={"BENCH_DB_PASSWORD": PASSWORD})


def changed(result: dict) -> list[str]:
    return [op["name"] for op in result["results"]["operations"] if op["success"]]


def show(guest, name: str) -> dict[str, str]:
    props = "ActiveState,InvocationID,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic"
    out = guest.run(f"systemctl show -p {props},NRestarts {name}.service", check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _capture(bed, name: str, text: str) -> None:
    """A guest's output for the fast tier's fixtures (tests/fixtures/facts/), into
    ``services/`` of PODMAN_STANDARD_CAPTURE_DIR when set, else of the module's workdir."""
    capture = Path(os.environ.get("PODMAN_STANDARD_CAPTURE_DIR") or bed.workdir) / "services"
    capture.mkdir(parents=True, exist_ok=True)
    (capture / name).write_text(text)


def sudo(guest, command: str) -> str:
    result = guest.run(f"sudo sh -c {shlex.quote(command)}")
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def first_run(bed):
    with _TIMINGS.stage(f"{bed.spec.release}: first run (--debug): registries + 4 services"):
        returncode, result, stderr = deploy(bed, services(), "--debug")
    assert returncode == 0, stderr[-6000:]
    return json.dumps(result), stderr


@pytest.fixture(scope="module")
def converged(bed, first_run):
    return bed.guests[bed.spec.name]


def wait_active(guest, timeout: float = 120) -> list[dict[str, str]]:
    """Each of NAMES once all are active (systemctl returns when its own job is done, the
    dependents' jobs may still run); fails naming the states after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        states = [show(guest, name) for name in NAMES]
        if all(s["ActiveState"] == "active" for s in states):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"not all of {NAMES} active after {timeout}s: {states}")
        time.sleep(2)


def wait_app_answered(guest, timeout: float = 60) -> str:
    """bench-app's log once it says PostgreSQL and Redis answered: its unit is active as soon
    as the container runs, before its shell has run psql and redis-cli (seconds under
    emulation). Fails with the log's last lines after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        log = sudo(guest, "podman logs bench-app")
        if "app: PostgreSQL and Redis answer" in log:
            return log
        if time.monotonic() > deadline:
            tail = "\n".join(log.splitlines()[-20:])
            pytest.fail(f"bench-app did not log that both answered within {timeout}s: {tail}")
        time.sleep(2)


def _started_after_healthy(guest, timeout: float = 120):
    db, cache, app = wait_active(guest, timeout)
    # db is "active" only once its health gate passed; the app left "inactive" after that.
    assert int(app["InactiveExitTimestampMonotonic"]) >= int(db["ActiveEnterTimestampMonotonic"])
    assert int(app["InactiveExitTimestampMonotonic"]) >= int(cache["ActiveEnterTimestampMonotonic"])
    return db, app


def test_app_starts_only_once_postgresql_is_healthy(converged, bed):
    guest = converged
    db, app = _started_after_healthy(guest)
    # The gate took time (initdb, start): the app's first try connected, no restart needed.
    assert int(db["ActiveEnterTimestampMonotonic"]) > int(db["InactiveExitTimestampMonotonic"])
    assert app["NRestarts"] == "0"
    if bed.spec.release == "bookworm":  # podman 4.3: the unit's own wait; 5.4: Notify=healthy
        journal = sudo(guest, "journalctl -u bench-db.service -o cat --no-pager")
        assert "health gate: bench-db is healthy" in journal
    else:
        unit = sudo(guest, "systemctl cat bench-db.service")
        assert "--sdnotify=healthy" in unit and "health-gate" not in unit
    wait_app_answered(guest)
    # systemd alone: restarting db restarts the app (Requires=), after db is healthy again.
    sudo(guest, "systemctl restart bench-db.service")
    db2, app2 = _started_after_healthy(guest)
    assert app2["InvocationID"] != app["InvocationID"]
    # initdb and PostgreSQL's start again (the old container went with --rm) inside the gate.
    gate_us = int(db2["ActiveEnterTimestampMonotonic"]) - int(db2["InactiveExitTimestampMonotonic"])
    assert gate_us > 1_000_000, db2


@pytest.mark.parametrize("bed", ["bookworm"], indirect=True)  # plain timer units on both
def test_the_apps_timer_fires_in_its_container(converged):
    guest = converged
    deadline = time.monotonic() + 150
    while True:
        journal = sudo(guest, "journalctl -u bench-app-tick.service -o cat --no-pager")
        if "42" in journal.split():
            break
        if time.monotonic() > deadline:
            pytest.fail(f"bench-app-tick did not run within 150 s: {journal[-2000:]}")
        time.sleep(5)
    assert sudo(guest, "systemctl is-enabled bench-app-tick.timer").strip() == "enabled"


def test_runtime_options_reach_podman_inspect(converged, bed):
    guest = converged
    fmt = (
        "{{.HostConfig.ShmSize}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} "
        "{{.HostConfig.NanoCpus}} {{.HostConfig.NetworkMode}} {{.Config.User}} "
        '{{index .Config.Labels "org.podman-standard/test"}} {{.Config.StopTimeout}}'
    )
    db = sudo(guest, f"podman inspect bench-db --format '{fmt}'").split()
    assert db == ["268435456", "536870912", "200", "1000000000", "host", "postgres"] + [
        "services-real",
        "30",
    ]
    cache = json.loads(sudo(guest, "podman inspect bench-cache"))[0]
    assert cache["HostConfig"]["ReadonlyRootfs"] is True
    assert cache["Config"]["User"] == "redis" and cache["Config"]["WorkingDir"] == "/data"
    assert "/data" in cache["HostConfig"]["Tmpfs"]
    assert {"Name": "RLIMIT_NOFILE", "Soft": 10032, "Hard": 10032} in [
        {k: u[k] for k in ("Name", "Soft", "Hard")} for u in cache["HostConfig"]["Ulimits"]
    ]
    assert cache["EffectiveCaps"] in (None, [])
    app = json.loads(sudo(guest, "podman inspect bench-app"))[0]
    assert app["HostConfig"]["Init"] is True
    # For the fast tier's fixtures (env, mounts: tests/fixtures/facts/): every service's
    # container as `podman container inspect` prints it, into PODMAN_STANDARD_CAPTURE_DIR.
    output = sudo(guest, f"podman container inspect {' '.join((*NAMES, 'bench-net'))}")
    assert [c["Name"] for c in json.loads(output)] == [*NAMES, "bench-net"]
    _capture(bed, f"ContainerInspect.services-real.{bed.spec.release}.json", output)


def test_the_app_reads_its_managed_files_and_the_secret_is_shown_nowhere(converged, first_run):
    guest = converged
    # -w: psql never prompts; it got in with scram through the pgpass file alone.
    assert "app: greeting hello" in sudo(guest, "podman logs bench-app")
    conf = f"{ROOT}/bench-app/conf"
    modes = sudo(
        guest, f"stat -c '%n %a %U:%G' {conf}/app.conf {conf}/pgpass {ROOT}/bench-net/note"
    )
    assert modes.split("\n")[:3] == [
        f"{conf}/app.conf 644 root:root",
        f"{conf}/pgpass 600 root:root",
        f"{ROOT}/bench-net/note 640 root:root",
    ], modes
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    assert sudo(guest, f"tail -n 1 {conf}/pgpass").rstrip("\n") == (
        f"127.0.0.1:*:*:postgres:{escaped}"
    )
    # Nowhere in the run's --debug log or its JSON (commands, facts, outputs).
    result, stderr = first_run
    # --debug logs each command and fact: the pgpass file's handling is in it.
    assert f"{conf}/pgpass" in stderr
    for text in (result, stderr):
        assert PASSWORD not in text and escaped not in text
        assert "s3cr" not in text


def test_the_managed_files_fact_reads_them_all_in_one_command(converged, bed):
    paths = [
        f"{ROOT}/bench-app/conf/app.conf",
        f"{ROOT}/bench-app/conf/pgpass",
        f"{ROOT}/bench-app/conf",  # a directory
        f"{ROOT}/bench-app/conf/missing.conf",
    ]
    fact = ManagedFiles()
    output = sudo(converged, fact.command(paths=paths).get_raw_value())
    found = fact.process(output.splitlines())
    assert [found[p].kind for p in paths] == ["file", "file", "other", "absent"], found
    assert (found[paths[1]].uid, found[paths[1]].user, found[paths[1]].mode) == ("0", "root", "600")
    _capture(bed, f"ManagedFiles.service-files.{bed.spec.release}.txt", output)


def test_a_service_joins_two_networks_with_their_aliases(converged, bed):
    networks = json.loads(sudo(converged, "podman inspect bench-net"))[0]["NetworkSettings"]
    aliases = {name: set(n.get("Aliases") or []) for name, n in networks["Networks"].items()}
    assert set(aliases) == {"bench-a", "bench-b"}, aliases
    assert {"alpha"} <= aliases["bench-a"] and {"beta", "gamma"} <= aliases["bench-b"]
    assert "alpha" not in aliases["bench-b"]
    if bed.spec.release == "bookworm":
        return  # Debian 12's CNI networks have no DNS (Debian ships no dnsname plugin)
    # netavark's aardvark-dns answers each alias with the address on its own network.
    for alias, network in (("alpha", "bench-a"), ("gamma", "bench-b")):
        found = sudo(converged, f"podman exec bench-net getent hosts {alias}").split()
        assert found[:1] == [networks["Networks"][network]["IPAddress"]], (alias, found)


def test_a_second_run_changes_nothing(converged, bed):
    with _TIMINGS.stage(f"{bed.spec.release}: second run (no change)"):
        returncode, result, stderr = deploy(bed, services())
    assert returncode == 0, stderr[-6000:]
    assert changed(result) == []


def test_a_reboot_brings_the_stack_back_in_order(converged, bed):
    """systemd alone starts the stack at boot: the app once PostgreSQL and Redis are healthy
    (its first try connects: no restart), its timer scheduled again."""
    guest = converged
    with _TIMINGS.stage(f"{bed.spec.release}: reboot, the stack back healthy"):
        guest.reboot(timeout=600)
        # initdb again (the container went with --rm) inside the db's gate after the boot.
        db, app = _started_after_healthy(guest, timeout=300)
    assert app["NRestarts"] == "0", app
    wait_app_answered(guest)
    assert sudo(guest, "systemctl is-active bench-app-tick.timer").strip() == "active"


def test_a_changed_file_reloads_the_app_restarts_a_service_without_reload_only(converged, bed):
    guest = converged
    before = {name: show(guest, name) for name in (*NAMES, "bench-net")}
    with _TIMINGS.stage(f"{bed.spec.release}: config change run"):
        returncode, result, stderr = deploy(bed, services(greeting="changed"))
    assert returncode == 0, stderr[-6000:]
    names = sorted(name.rsplit(" | ", 1)[-1] for name in changed(result))
    assert names == ["Service bench-app", "Service bench-net"], changed(result)
    after = {name: show(guest, name) for name in (*NAMES, "bench-net")}
    # db and cache untouched; the app reloaded (same invocation), bench-net restarted.
    for name in ("bench-db", "bench-cache", "bench-app"):
        assert after[name]["InvocationID"] == before[name]["InvocationID"], name
        assert after[name]["ActiveState"] == "active", (name, after[name])
    assert after["bench-net"]["InvocationID"] != before["bench-net"]["InvocationID"]
    deadline = time.monotonic() + 30
    while "app: greeting changed" not in sudo(guest, "podman logs bench-app"):
        if time.monotonic() > deadline:
            pytest.fail(
                f"bench-app did not re-read app.conf: {sudo(guest, 'podman logs bench-app')}"
            )
        time.sleep(1)
    assert sudo(guest, f"cat {ROOT}/bench-net/note") == "changed\n"


def test_a_health_gate_that_never_passes_fails_the_run_in_bounded_time(converged, bed):
    started = time.monotonic()
    with _TIMINGS.stage(f"{bed.spec.release}: failing health gate run"):
        returncode, _, stderr = deploy(bed, services(broken=True, greeting="changed"))
    took = time.monotonic() - started
    # Where the time went, for the tier's log: the run's output and the unit's journal.
    journal = sudo(converged, "journalctl -u bench-broken.service -o short-monotonic --no-pager")
    (bed.workdir / "failing-health-gate.log").write_text(f"{stderr}\n--- journal\n{journal}")
    assert returncode != 0
    assert "service bench-broken: systemctl start failed" in stderr, stderr[-4000:]
    if bed.spec.release == "bookworm":
        assert "health gate: bench-broken is not healthy after" in stderr, stderr[-4000:]
    # The gate's budget (5 s), systemd's start timeout (budget + a check + 60 s) with
    # Notify=healthy, and a run's overhead: far from a hang.
    assert took < 240, took
    assert show(converged, "bench-app")["ActiveState"] == "active"


@pytest.mark.parametrize("bed", ["bookworm"], indirect=True)  # the same script on both
def test_a_failed_pull_names_the_image_and_leaves_the_app_serving(converged, bed):
    before = show(converged, "bench-app")
    started = time.monotonic()
    with _TIMINGS.stage(f"{bed.spec.release}: failing pull run"):
        returncode, _, stderr = deploy(bed, services(app_image=MISSING, greeting="changed"))
    took = time.monotonic() - started
    assert returncode != 0
    assert f"image {MISSING}: pull failed 3 times" in stderr, stderr[-4000:]
    assert took < 300, took
    after = show(converged, "bench-app")
    # Pulled first: the failure came before any restart, the old container still runs.
    assert after["ActiveState"] == "active"
    assert after["InvocationID"] == before["InvocationID"]
