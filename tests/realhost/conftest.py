"""Fixtures of the real-host tier: one local registry and one set of booted guests per session.

Guests are the default set of ``python -m tests.testbed`` (override with ``TESTBED_GUESTS``,
e.g. ``bookworm:server``); their state file is written to a temporary path that
``PODMAN_STANDARD_TESTBED`` names, so ``inventories/testbed.py`` finds them in subprocesses.
"""

import os

import pytest

from tests.testbed.fleet import DEFAULT_GUESTS, STATE_ENV, Testbed, Timings, parse_guests
from tests.testbed.registry import Registry
from tests.testbed.vagrant import VagrantTestbed

_TIMINGS = Timings()


@pytest.fixture(scope="session")
def registry():
    with _TIMINGS.stage("registry start + push"):
        server = Registry().start()
        server.push_testbed_images()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def testbed(registry, tmp_path_factory, request):
    """Booted guests (``.guests`` by name), ``.inventory_path`` and ``.pyinfra(...)``;
    ``--testbed=vagrant`` makes them Vagrant VMs with the same names, data and state file."""
    workdir = tmp_path_factory.mktemp("testbed")
    kind = VagrantTestbed if request.config.getoption("--testbed") == "vagrant" else Testbed
    bed = kind(
        parse_guests(os.environ.get("TESTBED_GUESTS", DEFAULT_GUESTS)),
        workdir,
        workdir / "hosts.json",
        registry=registry,
    )
    bed.timings = _TIMINGS
    previous = os.environ.get(STATE_ENV)
    os.environ[STATE_ENV] = str(bed.state_path)
    try:
        bed.up()
        yield bed
        if request.session.testsfailed:
            for guest in bed.guests.values():
                guest.diagnose()
    finally:
        bed.down()
        if previous is None:
            os.environ.pop(STATE_ENV, None)
        else:
            os.environ[STATE_ENV] = previous


@pytest.fixture(scope="session")
def converged(testbed):
    """The first baseline run on the fresh guests (pyinfra's JSON result). ``--no-wait`` lets
    each guest go through its own operations without waiting for the other's: the server
    and the workstation run different deploys, so their operations differ."""
    returncode, result, stderr = testbed.pyinfra("--no-wait")
    assert returncode == 0, stderr[-4000:]
    return result


@pytest.fixture(scope="session")
def ssh_config(testbed, tmp_path_factory):
    """An ssh_config naming every guest, for testinfra's ``ssh://NAME`` hosts."""
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text(
        "".join(
            f"Host {g.name}\n  HostName {g.ssh_host}\n  Port {g.ssh_port}\n  User {g.ssh_user}\n"
            f"  IdentityFile {g.ssh_key}\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
            for g in testbed.guests.values()
        )
    )
    return path


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS.stages:
        terminalreporter.section("real-host stage timings")
        terminalreporter.write_line(_TIMINGS.report())
