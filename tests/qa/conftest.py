"""Point the standard's QA suite at any host:

    pytest tests/qa --hosts=ssh://motoko [--qa-inventory inventories/home.py] [--ssh-config F]

Each host's declared data (class, graphroot, registries, …) comes from the pyinfra
inventory, validated by the data model; the host name in ``--hosts`` is looked up there.
Without ``--hosts`` the suite is not collected (it has nothing to check).
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import testinfra
from pyinfra.api import Config, State
from pyinfra.context import ctx_config, ctx_inventory, ctx_state
from pyinfra_cli.inventory import make_inventory

from facts.qa import criteria_for
from model.validate import parse_host

ROOT = Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption("--qa-inventory", default="inventories/home.py", help="pyinfra inventory")


def pytest_ignore_collect(collection_path, config):
    if not config.getoption("hosts", default=None) and Path(collection_path).is_relative_to(
        Path(__file__).parent
    ):
        return True
    return None


def _host_data(inventory_path: str, name: str):
    state = State()
    state.cwd = str(ROOT)
    config = Config()
    with ctx_state.use(state), ctx_config.use(config):
        inventory = make_inventory(str(ROOT / inventory_path), cwd=str(ROOT))
        with ctx_inventory.use(inventory):
            state.init(inventory, config)
            host = inventory.get_host(name)
            return parse_host(host), bool(host.data.get("_sudo"))


def pytest_generate_tests(metafunc):
    if "qa_case" not in metafunc.fixturenames:
        return
    specs = [s.strip() for s in metafunc.config.getoption("hosts").split(",") if s.strip()]
    cases, ids = [], []
    for spec in specs:
        name = spec.split("://", 1)[-1].split("@")[-1]
        cfg, sudo = _host_data(metafunc.config.getoption("qa_inventory"), name)
        for criterion in criteria_for(cfg):
            cases.append((spec, cfg, sudo, criterion))
            ids.append(f"{name}-{criterion.id}")
    metafunc.parametrize("qa_case", cases, ids=ids)


@pytest.fixture(scope="session")
def ssh_control_dir():
    """Where each ssh:// host's master connection listens: every criterion's commands go over
    one SSH connection per host (testinfra sets ControlMaster, but without a ControlPath ssh
    makes a new connection, a full handshake, for each command). The masters are closed at
    the end."""
    directory = Path(tempfile.mkdtemp(prefix="qa-ssh-"))
    yield directory
    for path in directory.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={path}", "-O", "exit", "qa-host"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def qa_host(qa_case, request, ssh_control_dir):
    spec, cfg, sudo, criterion = qa_case
    ssh_config = request.config.getoption("ssh_config", default=None)
    extra = {}
    if spec.startswith("ssh://"):
        # testinfra puts the path into a %-format string: a plain name, no ssh % tokens.
        extra["controlpath"] = str(
            ssh_control_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", spec.removeprefix("ssh://"))
        )
    return testinfra.get_host(spec, ssh_config=ssh_config, sudo=sudo, **extra)
