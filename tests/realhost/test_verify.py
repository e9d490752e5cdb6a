"""deploys/verify.py and the testinfra QA suite on converged guests running services
(Debian 12 plain units, Debian 13 quadlet; root's and a rootless user's): everything passes, no
drift; then what is changed by hand (an extra container, a container publishing a port on all
interfaces, a unit file edited to another env value and a writable mount and its service
restarted, a managed config file edited, a stopped service) is named exactly, as warnings unless
the host's data is strict, with nothing changed on the hosts and no environment value printed;
then a guest broken on purpose (Docker daemon installed and running, graphRoot changed, socket
stopped) reports exactly those failures. Runs last among the modules using the converged
guests: it breaks one."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.realhost.conftest import _TIMINGS, qa_suite
from tests.realhost.test_converge import SERVER, WORKSTATION

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)
MINUTES = 12.3  # a full tier run, 2026-12-02: 736 s (tier.py balances the lanes)
GUESTS = (SERVER, WORKSTATION)
ROOT = "/srv/containers/apps"
# Root's web (a health check, a port on loopback, a timer, an env variable, a managed config
# file in a directory it mounts read-only); vagrant's userweb (a port without host_ip: all
# interfaces, as declared).
SERVICES = [
    {
        "name": "web",
        "image": "docker.io/library/nginx:alpine",
        "ports": [{"host": 8091, "container": 80, "host_ip": "127.0.0.1"}],
        "healthcheck": {"command": "test -d /www", "interval": "5s"},
        "timers": [{"name": "tick", "on_calendar": "*:0/5", "command": ["true"]}],
        "env": {"GREETING": "hello"},
        "files": [{"path": "conf/site.conf", "content": "# the site's settings\nlisten 80;\n"}],
        "volumes": [{"source": "conf", "target": "/etc/site", "read_only": True}],
    },
    {
        "name": "userweb",
        "image": "docker.io/library/nginx:alpine",
        "user": "vagrant",
        "ports": [{"host": 8092, "container": 80}],
    },
]
DECLARED = {"service_root": ROOT, "services": SERVICES}
UNIT_FILE = {
    SERVER: "/etc/systemd/system/web.service",
    WORKSTATION: "/etc/containers/systemd/web.container",
}
SITE_CONF = f"{ROOT}/web/conf/site.conf"
# The value web's unit is edited to by hand: drift-env names GREETING, never this.
HAND_VALUE = "set-by-hand-4711"
DRIFT = ["drift-containers", "drift-env", "drift-files", "drift-ports", "drift-volumes"]

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


def _set_data(testbed, data=None, **per_guest):
    """podman_* host data (keys without the prefix) over each guest's role data: ``data`` for
    both, or ``SERVER={...}`` for one; none: nothing declared."""
    for name in GUESTS:
        chosen = per_guest.get(name, data) or {}
        testbed.data_overrides[name] = {f"podman_{k}": v for k, v in chosen.items()}
    testbed.write_state()


def _on_both(testbed, function):
    with ThreadPoolExecutor(len(GUESTS)) as pool:
        return dict(
            zip(GUESTS, pool.map(lambda n: function(testbed.guests[n]), GUESTS), strict=True)
        )


def _host_state(guest) -> str:
    """What verify must not change: every container (root's and vagrant's) and which run
    (names and ids: podman 4.3's state word is "Up 5 seconds ago"), the services' units'
    invocations, the unit files' digests."""
    command = (
        "sudo podman ps -a --format '{{.Names}} {{.ID}}' | sort; echo running:; "
        "sudo podman ps --format '{{.Names}} {{.ID}}' | sort; echo vagrant:; "
        "podman ps -a --format '{{.Names}} {{.ID}}' | sort; echo running:; "
        "podman ps --format '{{.Names}} {{.ID}}' | sort; "
        "systemctl show -p Id,InvocationID,ActiveState web.service web-tick.timer; "
        "systemctl --user show -p Id,InvocationID,ActiveState userweb.service; "
        f"sudo sha256sum /etc/systemd/system/web* /etc/containers/systemd/* {ROOT}/web/conf/* "
        "~/.config/containers/systemd/* ~/.config/systemd/user/* 2>/dev/null; true"
    )
    return guest.run(command, check=True).stdout


@pytest.fixture(scope="module")
def services(testbed, converged):
    """The services on both guests (the next tests' data; the broken-host test declares
    none)."""
    _set_data(testbed, DECLARED)
    rc, result, stderr = testbed.pyinfra("--no-wait", deploy="deploys/services.py")
    assert rc == 0, stderr[-6000:]
    yield
    _set_data(testbed)


def test_verify_passes_on_converged_guests(testbed, services, tmp_path):
    rc, report, stderr = _verify(testbed, tmp_path)
    assert rc == 0, stderr[-3000:]
    assert report["passed"] is True
    assert {c["id"] for c in report["hosts"][SERVER]} >= {"graphroot", "api-socket", "docker-ps"}
    assert "docker-run" in {c["id"] for c in report["hosts"][WORKSTATION]}
    assert (tmp_path / "verify.xml").read_text().startswith("<?xml")
    assert f"{SERVER}: " in stderr and "checks passed" in stderr
    # A clean converge: no drift, the services up, the exposure listed.
    for name in GUESTS:
        assert _failed(report, name) == [] and _warned(report, name) == [], name
        assert _check(report, name, "services-running")["found"] == "2/2 active and running"
        assert _check(report, name, "services-health")["found"] == "1/1 healthy"
        assert _check(report, name, "timers-scheduled")["found"] == "1/1 scheduled"
        assert _check(report, name, "drift-env")["expected"] == (
            "1 containers with their declared environment"
        )
        assert _check(report, name, "drift-files")["found"] == "as the data says"
        assert _check(report, name, "drift-volumes")["expected"] == (
            "1 containers with their declared mounts"
        )
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
        in (_check(report, SERVER, "exposure")["details"])
    )


def _qa(testbed, ssh_config, *extra: str) -> dict[str, subprocess.CompletedProcess]:
    """The testinfra suite against each guest, both at once (one pytest per host: a suite
    runs its hosts one after another)."""

    def run(guest):
        command = qa_suite([guest.name], testbed.inventory_path, ssh_config, *extra)
        env = testbed.pyinfra_env()
        return subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )

    with _TIMINGS.stage(" ".join(["testinfra suite", *extra, "(both guests at once)"])):
        return _on_both(testbed, run)


def test_testinfra_suite_passes_on_converged_guests(testbed, services, ssh_config):
    for name, result in _qa(testbed, ssh_config).items():
        assert result.returncode == 0, (name, result.stdout[-3000:])
        assert " passed" in result.stdout.splitlines()[-1], name
        assert "failed" not in result.stdout.splitlines()[-1], name


def test_verify_names_exactly_what_was_changed_by_hand(testbed, services, ssh_config, tmp_path):
    def change(guest):
        unit = UNIT_FILE[guest.name]
        for command in (
            "sudo podman run -d --name extra docker.io/library/alpine:latest sleep 86400",
            "podman run -d --name exposed -p 8090:80 docker.io/library/nginx:alpine",
            # systemd re-creates web's container from the edited unit (the restart returns
            # once its health check passes: the unit's health gate).
            f"sudo sed -i -e 's/GREETING=hello/GREETING={HAND_VALUE}/' "
            f"-e 's#:/etc/site:ro,Z#:/etc/site:Z#' {unit} && "
            f"sudo grep -q GREETING={HAND_VALUE} {unit} && sudo grep -q /etc/site:Z {unit} && "
            "sudo systemctl daemon-reload && sudo systemctl restart web.service",
            f"echo '# edited by hand' | sudo tee -a {unit}",
            f"echo 'worker_connections 1;' | sudo tee -a {SITE_CONF}",
        ):
            result = guest.run(command, timeout=300)
            assert result.returncode == 0, (guest.name, command, result.stderr)

    with _TIMINGS.stage("changes by hand (both guests at once)"):
        _on_both(testbed, change)
    before = _on_both(testbed, _host_state)

    # Not strict: the drift warns, the run passes.
    rc, report, stderr = _verify(testbed, tmp_path / "warn")
    assert rc == 0, stderr[-3000:]
    for name in GUESTS:
        assert _failed(report, name) == [], name
        assert _warned(report, name) == DRIFT, name
        found = [
            line.split(" (")[0] for line in _check(report, name, "drift-containers")["details"]
        ]
        assert found == ["root's extra", "vagrant's exposed"]
        edited, conf = _check(report, name, "drift-files")["details"]
        # The unit's first changed lines (the volume's and the env's), the value masked.
        assert edited.startswith(f"{UNIT_FILE[name]}: changed on the host: '-"), edited
        assert "GREETING=***" in edited and "(+3 more changed lines)" in edited, edited
        assert conf == (
            f"{SITE_CONF}: changed on the host: '+worker_connections 1;'; the next converge "
            "overwrites it: put the change into the data"
        )
        assert _check(report, name, "drift-env")["details"] == [
            "root's web: env GREETING not as the data declares (missing or another value): "
            "converge (deploys/services.py) re-creates it from the data"
        ]
        assert _check(report, name, "drift-volumes")["details"] == [
            "root's web: mounted /etc/site read-write, declared read-only: converge "
            "(deploys/services.py) re-creates it from the data"
        ]
        assert _check(report, name, "drift-ports")["details"] == [
            "vagrant's exposed publishes 0.0.0.0:8090->80/tcp (all interfaces) that the data "
            "does not declare: declare it (with host_ip) or stop publishing it"
        ]
    assert "warn" in stderr and "drift-files: " in stderr and "drift-env: " in stderr
    report_text = (tmp_path / "warn" / "verify.json").read_text()
    report_text += (tmp_path / "warn" / "verify.xml").read_text()
    assert HAND_VALUE not in stderr + report_text
    assert _on_both(testbed, _host_state) == before

    # The server's data strict, vagrant's service stopped on both: exactly those fail.
    _on_both(testbed, lambda g: g.run("systemctl --user stop userweb.service", check=True))
    before = _on_both(testbed, _host_state)
    _set_data(testbed, DECLARED, **{SERVER: DECLARED | {"verify_strict": True}})
    rc, report, stderr = _verify(testbed, tmp_path / "strict")
    assert rc != 0
    assert _failed(report, SERVER) == sorted(DRIFT + ["services-running"])
    assert _failed(report, WORKSTATION) == ["services-running"]
    assert _warned(report, WORKSTATION) == DRIFT
    for name in GUESTS:
        (stopped,) = _check(report, name, "services-running")["details"]
        assert stopped.startswith("userweb (vagrant's): unit "), stopped
        assert "container missing" in stopped, stopped
    assert _on_both(testbed, _host_state) == before

    # The testinfra suite, from the same definitions: the same failures; drift warns.
    results = _qa(testbed, ssh_config, "-k", "drift or services", "-rf")
    failed = sorted(
        line.split("[", 1)[1].split("]", 1)[0]
        for result in results.values()
        for line in result.stdout.splitlines()
        if line.startswith("FAILED ")
    )
    output = "\n".join(result.stdout[-3000:] for result in results.values())
    assert failed == sorted(
        [f"{SERVER}-{c}" for c in DRIFT + ["services-running"]]
        + [f"{WORKSTATION}-services-running"]
    ), output
    assert "DriftWarning" in results[WORKSTATION].stdout, output
    assert HAND_VALUE not in output
    assert _on_both(testbed, _host_state) == before


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
