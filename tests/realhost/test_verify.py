"""deploys/verify.py and the testinfra QA suite on converged guests; services converged on
both (Debian 12 plain units, Debian 13 quadlet; root's and a rootless user's) show no drift;
then what is changed by hand (an extra container, a container publishing a port on all
interfaces, an edited unit file, a stopped service) is named exactly, as warnings unless the
host's data is strict, with nothing changed on the hosts; then a guest broken on purpose (Docker
daemon installed and running, graphRoot changed, socket stopped) reports exactly those
failures. Runs last among the modules using the converged guests: it breaks one."""

import json
import subprocess

import pytest

from tests.realhost.conftest import qa_suite
from tests.realhost.test_converge import SERVER, WORKSTATION

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)
MINUTES = 6  # last measured wall time; see the module's stage timings
GUESTS = (SERVER, WORKSTATION)
ROOT = "/srv/containers/apps"
# Root's web (health check, port on loopback) and worker (a timer); vagrant's userweb (a port
# without host_ip: all interfaces, as declared).
SERVICES = [
    {
        "name": "web",
        "image": "docker.io/library/nginx:alpine",
        "ports": [{"host": 8091, "container": 80, "host_ip": "127.0.0.1"}],
        "healthcheck": {"command": "test -d /www", "interval": "5s"},
    },
    {
        "name": "worker",
        "image": "docker.io/library/alpine:latest",
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        "timers": [{"name": "tick", "on_calendar": "*:0/5", "command": ["true"]}],
    },
    {
        "name": "userweb",
        "image": "docker.io/library/nginx:alpine",
        "user": "vagrant",
        "ports": [{"host": 8092, "container": 80}],
    },
]
UNIT_FILE = {
    SERVER: "/etc/systemd/system/web.service",
    WORKSTATION: "/etc/containers/systemd/web.container",
}
DRIFT = ["drift-containers", "drift-files", "drift-ports"]

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _verify(testbed, tmp_path, *args):
    env = {"PODMAN_STANDARD_REPORT_DIR": str(tmp_path)}
    rc, _, stderr = testbed.pyinfra(*args, deploy="deploys/verify.py", env=env)
    report = json.loads((tmp_path / "verify.json").read_text())
    return rc, report, stderr


def _failed(report, host):
    return sorted(c["id"] for c in report["hosts"][host] if c["result"] == "FAIL")


def _warned(report, host):
    return sorted(c["id"] for c in report["hosts"][host] if c["result"] == "warn")


def _check(report, host, check_id):
    return next(c for c in report["hosts"][host] if c["id"] == check_id)


def _set_data(testbed, **data):
    """podman_* host data over both guests' role data (``name={...}`` per guest for one)."""
    for name in GUESTS:
        testbed.data_overrides[name] = {
            f"podman_{k}": v for k, v in (data.get(name) or data.get("both") or {}).items()
        }
    testbed.write_state()


def _host_state(guest) -> str:
    """What verify must not change: every container (root's and vagrant's) and which run
    (names and ids: podman 4.3's state word is "Up 5 seconds ago"), the services' units'
    invocations, the unit files' digests."""
    command = (
        "sudo podman ps -a --format '{{.Names}} {{.ID}}' | sort; echo running:; "
        "sudo podman ps --format '{{.Names}} {{.ID}}' | sort; echo vagrant:; "
        "podman ps -a --format '{{.Names}} {{.ID}}' | sort; echo running:; "
        "podman ps --format '{{.Names}} {{.ID}}' | sort; "
        "systemctl show -p Id,InvocationID,ActiveState web.service worker.service; "
        "sudo sha256sum /etc/systemd/system/web* /etc/systemd/system/worker* "
        "/etc/containers/systemd/* ~/.config/containers/systemd/* ~/.config/systemd/user/* "
        "2>/dev/null; true"
    )
    return guest.run(command, check=True).stdout


def test_verify_passes_on_converged_guests(testbed, converged, tmp_path):
    rc, report, stderr = _verify(testbed, tmp_path)
    assert rc == 0, stderr[-3000:]
    assert report["passed"] is True
    assert {c["id"] for c in report["hosts"][SERVER]} >= {"graphroot", "api-socket", "docker-ps"}
    assert "docker-run" in {c["id"] for c in report["hosts"][WORKSTATION]}
    assert (tmp_path / "verify.xml").read_text().startswith("<?xml")
    assert f"{SERVER}: " in stderr and "checks passed" in stderr


def test_testinfra_suite_passes_on_converged_guests(testbed, converged, ssh_config):
    result = subprocess.run(
        qa_suite([SERVER, WORKSTATION], testbed.inventory_path, ssh_config),
        cwd=REPO,
        env=testbed.pyinfra_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]
    assert "failed" not in result.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def services(testbed, converged):
    """The services on both guests; afterwards none declared (what is left warns, never
    fails: the next test's failures stay exactly the broken ones)."""
    _set_data(testbed, both={"service_root": ROOT, "services": SERVICES})
    rc, result, stderr = testbed.pyinfra("--no-wait", deploy="deploys/services.py")
    assert rc == 0, stderr[-6000:]
    yield
    _set_data(testbed)


def test_converged_services_show_no_drift(testbed, services, tmp_path):
    rc, report, stderr = _verify(testbed, tmp_path)
    assert rc == 0, stderr[-3000:]
    for name in GUESTS:
        assert _failed(report, name) == [] and _warned(report, name) == [], name
        assert _check(report, name, "services-running")["found"] == "3/3 active and running"
        assert _check(report, name, "services-health")["found"] == "1/1 healthy"
        assert _check(report, name, "timers-scheduled")["found"] == "1/1 scheduled"
        assert _check(report, name, "docker-ps-users")["passed"]
        exposure = _check(report, name, "exposure")["details"]
        assert "root's web 127.0.0.1:8091->80/tcp: one address, declared (host_ip 127.0.0.1)" in (
            exposure
        )
        assert (
            "vagrant's userweb 0.0.0.0:8092->80/tcp: all interfaces, declared (no host_ip: all "
            "interfaces)" in exposure
        )
    assert (
        "root's podman.socket listens on /run/podman/podman.sock"
        in _check(report, SERVER, "exposure")["details"]
    )


def test_verify_names_exactly_what_was_changed_by_hand(testbed, services, ssh_config, tmp_path):
    for name in GUESTS:
        guest = testbed.guests[name]
        for command in (
            "sudo podman run -d --name extra docker.io/library/alpine:latest sleep 86400",
            "podman run -d --name exposed -p 8090:80 docker.io/library/nginx:alpine",
            f"echo '# edited by hand' | sudo tee -a {UNIT_FILE[name]}",
        ):
            result = guest.run(command, timeout=300)
            assert result.returncode == 0, (name, command, result.stderr)
    before = {name: _host_state(testbed.guests[name]) for name in GUESTS}

    # Not strict: the drift warns, the run passes.
    rc, report, stderr = _verify(testbed, tmp_path / "warn")
    assert rc == 0, stderr[-3000:]
    for name in GUESTS:
        assert _failed(report, name) == [], name
        assert _warned(report, name) == DRIFT, name
        assert [
            line.split(" (")[0] for line in _check(report, name, "drift-containers")["details"]
        ] == ["root's extra", "vagrant's exposed"]
        (edited,) = _check(report, name, "drift-files")["details"]
        assert edited.startswith(f"{UNIT_FILE[name]}: changed on the host: '+# edited by hand'")
        assert _check(report, name, "drift-ports")["details"] == [
            "vagrant's exposed publishes 0.0.0.0:8090->80/tcp (all interfaces) that the data "
            "does not declare: declare it (with host_ip) or stop publishing it"
        ]
    assert "warn" in stderr and "drift-files: " in stderr
    assert {name: _host_state(testbed.guests[name]) for name in GUESTS} == before

    # The server's data strict, a service stopped on both: exactly those fail.
    for name in GUESTS:
        testbed.guests[name].run("sudo systemctl stop worker.service", check=True)
    before = {name: _host_state(testbed.guests[name]) for name in GUESTS}
    _set_data(
        testbed,
        **{
            SERVER: {"service_root": ROOT, "services": SERVICES, "verify_strict": True},
            WORKSTATION: {"service_root": ROOT, "services": SERVICES},
        },
    )
    rc, report, stderr = _verify(testbed, tmp_path / "strict")
    assert rc != 0
    assert _failed(report, SERVER) == sorted(DRIFT + ["services-running"])
    assert _failed(report, WORKSTATION) == ["services-running"]
    assert _warned(report, WORKSTATION) == DRIFT
    for name in GUESTS:
        (stopped,) = _check(report, name, "services-running")["details"]
        assert stopped.startswith("worker: unit ") and "container missing" in stopped, stopped
    assert {name: _host_state(testbed.guests[name]) for name in GUESTS} == before

    # The testinfra suite, from the same definitions: the same failures; drift warns.
    result = subprocess.run(
        qa_suite(GUESTS, testbed.inventory_path, ssh_config, "-k", "drift or services", "-rf"),
        cwd=REPO,
        env=testbed.pyinfra_env(),
        capture_output=True,
        text=True,
    )
    failed = sorted(
        line.split("[", 1)[1].split("]", 1)[0]
        for line in result.stdout.splitlines()
        if line.startswith("FAILED ")
    )
    assert failed == sorted(
        [f"{SERVER}-{c}" for c in DRIFT + ["services-running"]]
        + [f"{WORKSTATION}-services-running"]
    ), result.stdout[-3000:]
    assert "DriftWarning" in result.stdout, result.stdout[-3000:]
    assert {name: _host_state(testbed.guests[name]) for name in GUESTS} == before
    _set_data(testbed)  # nothing declared for the next test (the fixture ends with the module)


def test_verify_reports_exactly_what_was_broken(testbed, converged, tmp_path):
    _set_data(testbed)  # no services declared: what the tests before left only warns
    guest = testbed.guests[SERVER]
    for command in (
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "docker.io",
        "sudo systemctl enable --now docker.service",
        "sudo sed -i 's#^graphroot = .*#graphroot = \"/var/lib/containers/elsewhere\"#' "
        "/etc/containers/storage.conf",
        "sudo systemctl stop podman.socket",
    ):
        result = guest.run(command, timeout=1800)
        assert result.returncode == 0, (command, result.stderr)
    rc, report, stderr = _verify(testbed, tmp_path, "--limit", SERVER)
    assert rc != 0
    assert _failed(report, SERVER) == ["api-socket", "graphroot", "no-docker-daemon"]
    assert "QA checks failed on 1 host(s)" in stderr
    assert "Migrate the host" in stderr  # the §9 hint is printed with the failure
