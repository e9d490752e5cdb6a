"""services.service while pyinfra executes (not plans) it: what an earlier operation should
have provided (podman, a running user manager) is now required. The JSON cases run the
operation as pyinfra plans it, so these two cases live here."""

import pytest
from pyinfra.api import OperationError
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

import tests.test_operations  # noqa: F401  (attribute access on fact values)
from operations import services

NOT_FOUND = {
    "load_state": "not-found",
    "active_state": "inactive",
    "sub_state": "dead",
    "unit_file_state": "",
    "fragment_path": "",
    "source_path": "",
    "reachable": True,
}


def _run(facts, **kwargs):
    state = FakeState()
    state.is_executing = True
    host = create_host(state, facts=facts)
    with ctx_state.use(state), ctx_host.use(host):
        return list(services.service._inner(**kwargs))


def test_podman_missing_when_the_operation_runs():
    facts = {
        "services.SystemdUnit": {"unit=web.service, user=None": NOT_FOUND},
        "podman.PodmanInfo": None,
    }
    with pytest.raises(OperationError, match="service web: podman is not installed"):
        _run(facts, service={"name": "web", "image": "docker.io/library/nginx:1.27.3"})


def test_user_manager_unreachable_when_the_operation_runs():
    facts = {
        "server.Users": {"svc-web": {"home": "/home/svc-web", "group": "svc-web"}},
        "services.SystemdUnit": {
            "unit=web.service, user=svc-web": {**NOT_FOUND, "reachable": False}
        },
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
