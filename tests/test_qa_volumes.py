"""verify's drift-volumes (facts/qa.py): each declared volume of a running service mounted at
its target, from its source, read-only as declared; judged on the services' `podman container
inspect` captured on Debian 12 (podman 4.3) and Debian 13 (podman 5.4) guests
(tests/realhost/test_services_real.py: bench-app mounts its conf directory read-only). The
changed cases change the data, never the capture."""

from pathlib import Path

import pytest

from facts.qa import ProbeResult, criteria_for, evaluate
from facts.running import INSPECT
from model.host_data import HostData

FIXTURES = Path(__file__).parent / "fixtures" / "facts"
CAPTURES = {
    release: FIXTURES / f"guest-{release}" / "ContainerInspect.services-real.json"
    for release in ("debian12", "debian13")
}
ROOT = "/srv/containers/apps"
IMAGE = "docker.io/library/debian-servers:bookworm"
CONF = {"source": "conf", "target": "/etc/bench-app", "read_only": True}
HINT = "converge (deploys/services.py) re-creates it from the data"


def _host(app_volumes, net_volumes=(), root=ROOT, **data) -> HostData:
    """The captured guests' services with bench-app's (and bench-net's) volumes as given."""
    services = [
        {"name": "bench-db", "image": IMAGE},
        {"name": "bench-cache", "image": IMAGE},
        {"name": "bench-app", "image": IMAGE, "volumes": list(app_volumes)},
        {"name": "bench-net", "image": IMAGE, "volumes": list(net_volumes)},
    ]
    return HostData.model_validate({"service_root": root, "services": services} | data)


def _check(cfg: HostData, release: str, result: ProbeResult | None = None):
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-volumes"]
    result = result or ProbeResult(0, CAPTURES[release].read_text())
    return evaluate(criterion, {k: result for k in criterion.commands}, cfg)


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_the_volumes_as_deployed_pass(release):
    cfg = _host([CONF])
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-volumes"]
    # The same command as drift-env's: the host runs it once for both.
    assert criterion.drift and criterion.commands == {"inspect root": INSPECT}
    check = _check(cfg, release)
    assert check.passed, check.details
    assert (check.expected, check.found) == (
        "1 containers with their declared mounts",
        "as declared",
    )


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_a_mount_from_another_source_or_writable_is_named(release):
    check = _check(_host([CONF | {"read_only": False}]), release)
    assert not check.passed and not check.failed  # drift: a warning unless strict
    assert check.found == "root's bench-app"
    assert check.details == (
        f"root's bench-app: mounted /etc/bench-app read-only, declared read-write: {HINT}",
    )
    check = _check(_host([CONF | {"source": "config"}]), release)
    assert check.details == (
        f"root's bench-app: mounted /etc/bench-app from {ROOT}/bench-app/conf, declared "
        f"{ROOT}/bench-app/config: {HINT}",
    )
    # The service root moved in the data, the container still mounts the old directory.
    check = _check(_host([CONF | {"read_only": False}], root="/space/apps"), release)
    assert check.details == (
        f"root's bench-app: mounted /etc/bench-app from {ROOT}/bench-app/conf, declared "
        f"/space/apps/bench-app/conf; /etc/bench-app read-only, declared read-write: {HINT}",
    )


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_a_bind_mount_where_a_named_volume_is_declared(release):
    volume = {"volume": "appconf", "target": "/etc/bench-app", "read_only": True}
    check = _check(_host([volume]), release)
    assert check.details == (
        f"root's bench-app: mounted /etc/bench-app from {ROOT}/bench-app/conf, declared "
        f"volume appconf: {HINT}",
    )


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_a_declared_mount_missing_and_strict(release):
    data = {"source": "data", "target": "/data"}
    cfg = _host([CONF, data], net_volumes=[data])
    check = _check(cfg, release)
    assert check.found == "root's bench-app; root's bench-net"
    assert check.details == (
        f"root's bench-app: declared mount(s) /data not mounted (it mounts /etc/bench-app): {HINT}",
        f"root's bench-net: declared mount(s) /data not mounted (it mounts nothing): {HINT}",
    )
    strict = cfg.model_copy(update={"verify_strict": True})
    assert _check(strict, release).failed


def test_a_rootless_owner_is_inspected_as_the_user_and_a_failed_inspect_is_a_finding():
    cfg = _host([], rootless_users=[{"name": "vagrant"}])
    services = [s.model_copy(update={"user": "vagrant"}) for s in cfg.services]
    services[2] = services[2].model_copy(update={"volumes": _host([CONF]).services[2].volumes})
    cfg = cfg.model_copy(update={"services": services})
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-volumes"]
    (key,) = criterion.commands
    assert key == "inspect vagrant" and "runuser" in criterion.commands[key]
    assert INSPECT in criterion.commands[key]
    check = _check(cfg, "debian13")
    assert check.passed, check.details
    failed = _check(cfg, "debian13", ProbeResult(125, "Error: cannot connect to podman"))
    assert failed.details == ("vagrant: podman container inspect: Error: cannot connect to podman",)


def test_no_volumes_declared_means_no_check():
    assert "drift-volumes" not in {c.id for c in criteria_for(_host([]))}
