"""verify's drift-env (facts/qa.py) and its parser (facts.running.parse_inspect) on the
services' `podman container inspect` captured on Debian 12 (podman 4.3) and Debian 13
(podman 5.4) guests (tests/realhost/test_services_real.py)."""

from pathlib import Path

import pytest

from facts.qa import ProbeResult, criteria_for, evaluate
from facts.running import INSPECT, Mount, parse_inspect
from model.host_data import HostData

FIXTURES = Path(__file__).parent / "fixtures" / "facts"
CAPTURES = {
    release: FIXTURES / f"guest-{release}" / "ContainerInspect.services-real.json"
    for release in ("debian12", "debian13")
}
ROOT = "/srv/containers/apps"
SECRET = {"POSTGRES_PASSWORD": {"env": "BENCH_DB_PASSWORD"}}
APP_ENV = {"PGPASSFILE": "/etc/bench-app/pgpass"}


def _host(app_env=None, app_secrets=None, user=None) -> HostData:
    """The captured guests' services as test_services_real declares them (env and secrets
    of bench-db and bench-app; the other two declare none)."""
    image = "docker.io/library/debian-servers:bookworm"
    app = {"name": "bench-app", "image": image, "env": APP_ENV if app_env is None else app_env}
    app["secrets"] = SECRET if app_secrets is None else app_secrets
    services = [
        {"name": "bench-db", "image": image, "secrets": SECRET},
        {"name": "bench-cache", "image": image},
        app,
        {"name": "bench-net", "image": image},
    ]
    if user:
        for svc in services:
            svc["user"] = user
    data = {"service_root": ROOT, "services": services}
    if user:
        data["rootless_users"] = [{"name": user}]
    return HostData.model_validate(data)


def _drift_env(cfg: HostData):
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-env"]
    return criterion


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_parse_inspect_reads_env_state_and_mounts(release):
    found = parse_inspect(CAPTURES[release].read_text())
    assert sorted(found) == ["bench-app", "bench-cache", "bench-db", "bench-net"]
    assert all(c.running for c in found.values())
    app = found["bench-app"]
    assert app.env["PGPASSFILE"] == "/etc/bench-app/pgpass"
    assert "POSTGRES_PASSWORD" in app.env  # from the service's secrets file (--env-file)
    assert "PATH" in app.env  # the image's own
    assert Mount("/etc/bench-app", f"{ROOT}/bench-app/conf", "", False) in app.mounts
    assert "PGPASSFILE" not in found["bench-cache"].env


def test_parse_inspect_of_an_owner_without_containers():
    assert parse_inspect("") == {}


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_declared_env_and_secrets_set_pass(release):
    cfg = _host()
    criterion = _drift_env(cfg)
    assert criterion.commands == {"inspect root": INSPECT}
    check = evaluate(
        criterion, {"inspect root": ProbeResult(0, CAPTURES[release].read_text())}, cfg
    )
    assert check.passed, check.details
    assert check.expected == "2 containers with their declared environment"
    assert check.found == "as declared"


@pytest.mark.parametrize("release", sorted(CAPTURES))
def test_another_value_or_an_unset_secret_is_named_without_values(release):
    text = CAPTURES[release].read_text()
    cfg = _host(
        app_env={"PGPASSFILE": "/etc/bench-app/elsewhere", "GREETING": "hello"},
        app_secrets=SECRET | {"API_TOKEN": {"env": "BENCH_API_TOKEN"}},
    )
    check = evaluate(_drift_env(cfg), {"inspect root": ProbeResult(0, text)}, cfg)
    assert not check.passed and not check.failed  # drift: a warning unless strict
    assert check.details == (
        "root's bench-app: env GREETING, PGPASSFILE not as the data declares (missing or "
        "another value): converge (deploys/services.py) re-creates it from the data",
        "root's bench-app: secret variable(s) API_TOKEN not set: converge "
        "(deploys/services.py) re-creates it from the data",
    )
    assert check.found == "root's bench-app"
    app = parse_inspect(text)["bench-app"]
    shown = " ".join(check.details)
    assert app.env["PGPASSFILE"] not in shown and app.env["POSTGRES_PASSWORD"] not in shown
    strict = cfg.model_copy(update={"verify_strict": True})
    assert evaluate(_drift_env(strict), {"inspect root": ProbeResult(0, text)}, strict).failed


def test_a_rootless_owner_is_inspected_as_itself_and_a_failure_is_a_finding():
    cfg = _host(user="vagrant")
    criterion = _drift_env(cfg)
    (key,) = criterion.commands
    assert key == "inspect vagrant"
    assert criterion.commands[key].startswith("cd / && runuser -u vagrant -- ")
    failed = ProbeResult(125, "Error: cannot connect to Podman: no such file")
    check = evaluate(criterion, {key: failed}, cfg)
    assert not check.passed
    assert check.details == (
        "vagrant: podman container inspect: Error: cannot connect to Podman: no such file",
    )


def test_no_service_with_an_environment_no_check():
    cfg = HostData.model_validate(
        {"services": [{"name": "web", "image": "docker.io/library/nginx:alpine"}]}
    )
    assert "drift-env" not in [c.id for c in criteria_for(cfg)]
