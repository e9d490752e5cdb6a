"""Services with real server software (issue 18): PostgreSQL and Redis from Debian's packages
(``testbed/app_images.py``) and an app that needs both, as plain units on a Debian 12 guest
(podman 4.3: the health gate is the unit's bounded ExecStartPost wait).

Shown: the runtime options reach ``podman inspect``; the app starts only once PostgreSQL is
healthy, by systemd's own timestamps, also when systemd alone restarts the stack; the app's
timer runs a query in its container; a second run changes nothing; a health check that never
passes and an image that cannot be pulled each end the run in bounded time naming the service
or the image, the running app untouched by the failed pull.

The guest boots the ``podman`` image variant (the toolset installed at build time); the run
configures the registries (the local registry as docker.io's mirror) and the services only.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from testbed.app_images import PG_BIN, PGDATA, TAG, app_images
from testbed.fleet import GuestSpec, Testbed
from testbed.registry import push
from tests.realhost.conftest import _TIMINGS

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one guest at a time: runs beside another one-guest module (tier.py)
MINUTES = 4.7  # last measured wall time (2026-12-01); balances the lanes (tier.py)

SPEC = GuestSpec("bookworm", "server", "podman")
DEPLOYS = ("deploys/podman_standard.py", "deploys/services.py")
ROOT = "/srv/containers/apps"
IMAGE = f"docker.io/{TAG}"
MISSING = "docker.io/library/debian-servers:no-such-tag"
NAMES = ("bench-db", "bench-cache", "bench-app")
# Under TCG initdb and PostgreSQL's start take seconds to tens of seconds: the gate has 2 minutes.
PG_CHECK = {"command": f"{PG_BIN}/pg_isready -q -h 127.0.0.1 -U postgres", "interval": "2s"}
PG_CHECK |= {"timeout": "5s", "retries": 20}
PG_START = (
    f"test -s {PGDATA}/PG_VERSION || {PG_BIN}/initdb -D {PGDATA} -A trust -U postgres; "
    f"exec {PG_BIN}/postgres -D {PGDATA} -c listen_addresses=127.0.0.1 -c jit=off -k /tmp"
)
APP = (
    f"{PG_BIN}/psql -h 127.0.0.1 -U postgres -tAc 'select 1' && redis-cli -h 127.0.0.1 ping && "
    "echo 'app: PostgreSQL and Redis answer' && exec sleep infinity"
)


TICK = ["sh", "-c", f"{PG_BIN}/psql -h 127.0.0.1 -U postgres -tAc 'select 42'"]


def services(app_image: str = IMAGE, broken: bool = False) -> list[dict]:
    stack = [
        {
            "name": "bench-db",
            "image": IMAGE,
            "command": ["sh", "-c", PG_START],
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


@pytest.fixture(scope="module")
def bed(registry, no_shared_guests, tmp_path_factory):
    with _TIMINGS.stage("app image build or cache + push"):
        for reference, img in app_images().items():
            push(f"http://{registry.address}", reference, img)
    workdir = tmp_path_factory.mktemp("services-real")
    testbed = Testbed([SPEC], workdir, workdir / "hosts.json", registry=registry)
    testbed.timings = _TIMINGS
    testbed.up()
    try:
        yield testbed
    finally:
        testbed.down()


def deploy(bed, stack: list[dict]) -> tuple[int, dict | None, str]:
    bed.data_overrides[SPEC.name] = {
        "podman_phases": ["config", "services"],
        "podman_service_root": ROOT,
        "podman_socket_enabled": False,
        "podman_rootless_users": [],
        "podman_services": stack,
    }
    bed.write_state()
    return bed.pyinfra(deploy=DEPLOYS)


def changed(result: dict) -> list[str]:
    return [op["name"] for op in result["results"]["operations"] if op["success"]]


def show(guest, name: str) -> dict[str, str]:
    props = "ActiveState,InvocationID,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic"
    out = guest.run(f"systemctl show -p {props},NRestarts {name}.service", check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def sudo(guest, command: str) -> str:
    result = guest.run(f"sudo sh -c {shlex.quote(command)}")
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def converged(bed):
    with _TIMINGS.stage("first run: registries + 3 services"):
        returncode, result, stderr = deploy(bed, services())
    assert returncode == 0, stderr[-6000:]
    return bed.guests[SPEC.name]


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


def _started_after_healthy(guest):
    db, cache, app = wait_active(guest)
    # db is "active" only once its health gate passed; the app left "inactive" after that.
    assert int(app["InactiveExitTimestampMonotonic"]) >= int(db["ActiveEnterTimestampMonotonic"])
    assert int(app["InactiveExitTimestampMonotonic"]) >= int(cache["ActiveEnterTimestampMonotonic"])
    return db, app


def test_app_starts_only_once_postgresql_is_healthy(converged):
    guest = converged
    db, app = _started_after_healthy(guest)
    # The gate took time (initdb, start): the app's first try connected, no restart needed.
    assert int(db["ActiveEnterTimestampMonotonic"]) > int(db["InactiveExitTimestampMonotonic"])
    assert app["NRestarts"] == "0"
    journal = sudo(guest, "journalctl -u bench-db.service -u bench-app.service -o cat --no-pager")
    assert "health gate: bench-db is healthy" in journal
    assert "app: PostgreSQL and Redis answer" in sudo(guest, "podman logs bench-app")
    # systemd alone: restarting db restarts the app (Requires=), after db is healthy again.
    sudo(guest, "systemctl restart bench-db.service")
    db2, app2 = _started_after_healthy(guest)
    assert app2["InvocationID"] != app["InvocationID"]
    # initdb and PostgreSQL's start again (the old container went with --rm) inside the gate.
    gate_us = int(db2["ActiveEnterTimestampMonotonic"]) - int(db2["InactiveExitTimestampMonotonic"])
    assert gate_us > 1_000_000, db2


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


def test_runtime_options_reach_podman_inspect(converged):
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


def test_a_second_run_changes_nothing(converged, bed):
    with _TIMINGS.stage("second run (no change)"):
        returncode, result, stderr = deploy(bed, services())
    assert returncode == 0, stderr[-6000:]
    assert changed(result) == []


def test_a_health_gate_that_never_passes_fails_the_run_in_bounded_time(converged, bed):
    started = time.monotonic()
    with _TIMINGS.stage("failing health gate run"):
        returncode, _, stderr = deploy(bed, services(broken=True))
    took = time.monotonic() - started
    assert returncode != 0
    assert "service bench-broken: systemctl start failed" in stderr, stderr[-4000:]
    assert "health gate: bench-broken is not healthy after" in stderr, stderr[-4000:]
    # The gate's budget (5 s) and a run's overhead: far from systemd's 90 s or a hang.
    assert took < 240, took
    assert show(converged, "bench-app")["ActiveState"] == "active"


def test_a_failed_pull_names_the_image_and_leaves_the_app_serving(converged, bed):
    before = show(converged, "bench-app")
    started = time.monotonic()
    with _TIMINGS.stage("failing pull run"):
        returncode, _, stderr = deploy(bed, services(app_image=MISSING))
    took = time.monotonic() - started
    assert returncode != 0
    assert f"image {MISSING}: pull failed 3 times" in stderr, stderr[-4000:]
    assert took < 300, took
    after = show(converged, "bench-app")
    # Pulled first: the failure came before any restart, the old container still runs.
    assert after["ActiveState"] == "active"
    assert after["InvocationID"] == before["InvocationID"]
