"""services.service while pyinfra executes (not plans) it: what an earlier operation should
have provided (podman, a running user manager) is now required. The JSON cases run the
operation as pyinfra plans it, so these two cases live here."""

import pytest
from pyinfra.api import OperationError
from pyinfra.api.util import get_kwargs_str
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

import tests.test_operations  # noqa: F401  (attribute access on fact values)
from operations import services

WEB = "/srv/containers/apps/web"


def _state(probe: dict, value: dict) -> dict:
    """ServicesState's fake: ``value`` for exactly the ``probe`` the operation asks."""
    return {"services.ServicesState": {get_kwargs_str(probe): value}}


def _run(facts, **kwargs):
    state = FakeState()
    state.is_executing = True
    host = create_host(state, facts=facts)
    with ctx_state.use(state), ctx_host.use(host):
        return list(services.service._inner(**kwargs))


def test_podman_missing_when_the_operation_runs():
    probe = {
        "files": [
            "/etc/containers/systemd/web.container",
            "/etc/systemd/system/web.service",
            f"{WEB}/secrets.env",
        ],
        "dirs": ["/etc/containers/systemd", "/etc/systemd/system", "/srv/containers/apps", WEB],
        "records": [f"{WEB}/image-record"],
        "units": ["web.service"],
        "user_units": {},
    }
    facts = _state(probe, {"podman_version": None})
    with pytest.raises(OperationError, match="service web: podman is not installed"):
        _run(facts, service={"name": "web", "image": "docker.io/library/nginx:1.27.3"})


def test_user_manager_unreachable_when_the_operation_runs():
    home = "/home/svc-web"
    probe = {
        "files": [
            f"{home}/.config/containers/systemd/web.container",
            f"{home}/.config/systemd/user/web.service",
            f"{WEB}/secrets.env",
        ],
        "dirs": [
            *(f"{home}/.config{sub}" for sub in ("", "/containers", "/containers/systemd")),
            *(f"{home}/.config{sub}" for sub in ("/systemd", "/systemd/user")),
            "/srv",
            "/srv/containers",
            "/srv/containers/apps",
            WEB,
        ],
        "records": [f"{WEB}/image-record"],
        "units": [],
        "user_units": {"svc-web": ["web.service"]},
    }
    facts = {
        "rootless.UserAccount": {"user=svc-web": {"uid": 1001, "home": home, "group": "svc-web"}},
        **_state(probe, {"podman_version": "4.3.1", "scopes": {"svc-web": {"reachable": False}}}),
    }
    with pytest.raises(OperationError, match="systemd user manager of svc-web is not running"):
        _run(
            facts,
            service={"name": "web", "image": "docker.io/library/nginx:1.27.3", "user": "svc-web"},
        )


def test_a_spec_given_as_json_is_validated_once_naming_the_service():
    spec = '{"name": "web", "image": "docker.io/library/nginx:1.27.3", "shm_size": "8G"}'
    with pytest.raises(OperationError) as error:
        _run({}, service=spec)
    assert str(error.value) == (
        "service web: shm_size: '8G' is not a valid size (a number of bytes, or with b, k, m "
        "or g: 512m)"
    )
