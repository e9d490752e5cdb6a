"""The entry point end to end, against pyinfra's @fake connector: validation before any
command, dispatch by group, nothing for Windows/macOS hosts."""

from pathlib import Path

import pytest
from pyinfra.api import Config, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_config, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory
from pyinfra_cli.util import load_deploy_file

from model import HostDataError

ROOT = Path(__file__).resolve().parents[2]
# Real output of pyinfra's LinuxDistribution command on a Debian 12 testbed guest.
DEBIAN_12 = (ROOT / "tests/fixtures/deploys/bookworm-linux-distribution.txt").read_text()


def _plan(tmp_path, monkeypatch, inventory_text: str):
    """Load deploys/linux_baseline.py for a @fake inventory; return state and hosts by name."""
    monkeypatch.chdir(ROOT)
    inv = tmp_path / "inventory.py"
    inv.write_text(inventory_text)
    state = State()
    state.cwd = str(ROOT)
    config = Config()
    with ctx_state.use(state), ctx_config.use(config):
        inventory = make_inventory(str(inv), cwd=str(ROOT))
        with ctx_inventory.use(inventory):
            state.init(inventory, config)
            connect_all(state)
    return state, {h.name: h for h in inventory}


def _fake(name, **data):
    responses = {"-release": DEBIAN_12}
    return (
        f"@fake/{name}",
        {"fake_delay": 0, "fake_delay_jitter": 0, "fake_responses": responses, **data},
    )


def _ops(state, host):
    return [state.op_meta[h].names for h in state.get_op_order() if h in state.ops[host]]


def _load(state):
    with ctx_state.use(state), ctx_config.use(state.config), ctx_inventory.use(state.inventory):
        load_deploy_file(state, "deploys/linux_baseline.py")


def test_bad_data_stops_before_any_command(tmp_path, monkeypatch):
    state, hosts = _plan(
        tmp_path,
        monkeypatch,
        f"linux_servers = [{_fake('good')!r}]\n"
        f"linux_workstations = [{_fake('bad', podman_graphroot='var/lib/x')!r}]\n",
    )
    with pytest.raises(HostDataError) as info:
        _load(state)
    assert (
        "bad: podman_graphroot (host data in the inventory): Value error, must be an "
        "absolute path, got 'var/lib/x'" in str(info.value)
    )
    for host in hosts.values():
        assert host.connector.executed_commands == []
        assert not state.ops[host]


def test_dispatch_by_group(tmp_path, monkeypatch):
    # motoko's services read their secrets from the controller's environment.
    monkeypatch.setenv("NEXTCLOUD_DB_PASSWORD", "test-only")
    monkeypatch.setenv("LITELLM_MASTER_KEY", "test-only")
    monkeypatch.setenv("NEXTCLOUD_ADMIN_PASSWORD", "test-only")
    state, hosts = _plan(
        tmp_path,
        monkeypatch,
        "\n".join(
            [
                f"linux_servers = [{_fake('srv', podman_nvidia_enabled='auto')!r}]",
                "motoko = ['@fake/srv']",
                f"linux_workstations = [{_fake('ws')!r}]",
                f"macos = [{_fake('mac')!r}]",
                f"windows = [{_fake('win')!r}]",
            ]
        ),
    )
    _load(state)
    srv, ws = _ops(state, hosts["@fake/srv"]), _ops(state, hosts["@fake/ws"])
    # motoko's graphroot lives on /space: the server pattern writes storage.conf for it.
    assert any("Configure container storage paths" in n for names in srv for n in names)
    assert any("Linux server (motoko pattern)" in n for names in srv for n in names)
    assert any("Linux workstation" in n for names in ws for n in names)
    # motoko's services, after what they require: the database and Redis before Nextcloud.
    services = [n.rsplit(" | ", 1)[-1] for names in srv for n in names if "| Services |" in n]
    assert services == [
        "Service nextcloud-db",
        "Service nextcloud-redis",
        "Service nextcloud-app",
        "Service vllm-embeddings",
        "Service litellm",
    ]
    assert not any("| Services |" in n for names in ws for n in names)
    for desktop in ("@fake/mac", "@fake/win"):
        assert _ops(state, hosts[desktop]) == []
        assert hosts[desktop].connector.executed_commands == []


def test_missing_secrets_stop_before_any_change(tmp_path, monkeypatch):
    monkeypatch.delenv("NEXTCLOUD_DB_PASSWORD", raising=False)
    monkeypatch.setenv("LITELLM_MASTER_KEY", "test-only")
    monkeypatch.setenv("NEXTCLOUD_ADMIN_PASSWORD", "test-only")
    state, hosts = _plan(
        tmp_path,
        monkeypatch,
        f"linux_servers = [{_fake('srv', podman_nvidia_enabled='auto')!r}]\n"
        "motoko = ['@fake/srv']\n",
    )
    with pytest.raises(DeployError) as info:
        _load(state)
    message = str(info.value)
    assert (
        "@fake/srv: podman_services nextcloud-db: POSTGRES_PASSWORD: environment variable "
        "NEXTCLOUD_DB_PASSWORD is not set" in message
    )
    assert "LITELLM_MASTER_KEY" not in message
    # Raised while the deploy is loaded: pyinfra never reaches the execution of any operation.
    assert not state.is_executing


def _registries_host(ca: Path) -> str:
    """A workstation with a mirror behind its own CA (a controller file) and root's login."""
    mirror = {"location": "10.0.2.2:5001", "ca": {"file": str(ca)}}
    data = {
        "registries": [{"prefix": "docker.io", "mirrors": [mirror]}],
        "credentials": [
            {"registry": "10.0.2.2:5001", "username": "bot", "password": {"env": "REG_TEST_PW"}}
        ],
    }
    # vagrant exists (RootlessUser's getent section), so its rootless op plans.
    responses = {"-release": DEBIAN_12, "getent passwd": "@@passwd\nvagrant\n"}
    host = _fake(
        "ws",
        podman_registries=data,
        podman_rootless_users=[{"name": "vagrant"}],
        fake_responses=responses,
    )
    return f"linux_workstations = [{host!r}]\n"


def test_registry_ca_and_credentials_follow_the_registries(tmp_path, monkeypatch):
    monkeypatch.setenv("REG_TEST_PW", "test-only")
    ca = tmp_path / "ca.pem"
    ca.write_text((ROOT / "tests/fixtures/registries-ca.pem").read_text())
    state, hosts = _plan(tmp_path, monkeypatch, _registries_host(ca))
    _load(state)
    names = [n.rsplit(" | ", 1)[-1] for names in _ops(state, hosts["@fake/ws"]) for n in names]
    registry_ops = [n for n in names if "regist" in n.lower()]
    # The CA before any login needs it; the logins after the rootless users have their ids.
    assert registry_ops == [
        "Configure container registries",
        "Registry CA certificates",
        "Registry credentials of root",
    ]
    assert names.index("Registry credentials of root") > names.index("Rootless podman for vagrant")


def test_registry_inputs_missing_stop_before_any_change(tmp_path, monkeypatch):
    monkeypatch.delenv("REG_TEST_PW", raising=False)
    state, hosts = _plan(tmp_path, monkeypatch, _registries_host(tmp_path / "no.pem"))
    with pytest.raises(DeployError) as info:
        _load(state)
    message = str(info.value)
    assert "@fake/ws: podman_registries CA for 10.0.2.2:5001: cannot read" in message
    assert (
        "credentials 10.0.2.2:5001 (root): environment variable REG_TEST_PW is not set" in message
    )
    assert not state.is_executing
