"""deploys/services.py end to end against pyinfra's @fake connector, answering the services'
state command with what a real converged Debian 12 guest printed for it (six motoko-like
services, bench/run.py ``motoko_like`` without managed files; tests/fixtures/facts/README.md):
a no-op run sends that one command and nothing else; a change makes the next service read the
state again."""

from pathlib import Path

from pyinfra.api import Config, State
from pyinfra.api.connect import connect_all
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_config, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory
from pyinfra_cli.util import load_deploy_file

from bench.run import SECRET_ENV, motoko_like

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/facts/guest-debian12"
CAPTURED = (FIXTURES / "ServicesState.motoko-like-6.txt").read_text()
CAPTURED_COMMAND = (FIXTURES / "ServicesState.motoko-like-6.cmd").read_text()
# The bench's secret, as the guest's secrets files were written with it.
BENCH_SECRET = "bench-only-not-a-secret"


def _run(tmp_path, monkeypatch, services: list[dict]):
    monkeypatch.chdir(ROOT)
    data = {
        "fake_delay": 0,
        "fake_delay_jitter": 0,
        "fake_responses": {"echo '@@podman'": CAPTURED},
        "podman_phases": ["services"],
        "podman_service_root": "/space/containers/apps",  # the guest's (motoko's group data)
        "podman_services": services,
    }
    inv = tmp_path / "inventory.py"
    inv.write_text(f"linux_servers = [('@fake/server', {data!r})]\n")
    state = State(check_for_changes=False)  # as `pyinfra -y`: each operation runs once
    state.cwd = str(ROOT)
    config = Config()
    with ctx_state.use(state), ctx_config.use(config):
        inventory = make_inventory(str(inv), cwd=str(ROOT))
        with ctx_inventory.use(inventory):
            state.init(inventory, config)
            connect_all(state)
            load_deploy_file(state, "deploys/services.py")
            run_ops(state)
    host = next(iter(inventory))
    changed = sum(1 for h in state.get_op_order() if state.ops[host][h].operation_meta.did_change())
    return host.connector.executed_commands, changed


def _gathers(commands: list[str]) -> list[str]:
    return [c for c in commands if "echo '@@podman'" in c]


def test_a_no_op_run_of_six_services_sends_one_command(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, BENCH_SECRET)
    commands, changed = _run(tmp_path, monkeypatch, motoko_like(6, managed_files=False))
    assert changed == 0
    assert len(commands) == 1, commands
    # The very command whose output the guest gave (the fixture is its answer).
    assert CAPTURED_COMMAND in commands[0]


def test_a_changed_service_makes_the_next_one_read_the_state_again(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "another value")  # db0's and db1's secrets files differ
    commands, changed = _run(tmp_path, monkeypatch, motoko_like(6, managed_files=False))
    assert changed == 2
    # Read once, then again after db0's change (cache0 and app0 reuse that) and after db1's.
    assert len(_gathers(commands)) == 3, [c[:80] for c in commands]
