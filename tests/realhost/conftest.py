"""Fixtures of the real-host tier: one local registry and one set of booted guests per session.

Guests are the default set of ``python -m testbed`` (override with ``TESTBED_GUESTS``,
e.g. ``bookworm:server``); their state file is written to a temporary path that
``PODMAN_STANDARD_TESTBED`` names, so ``inventories/testbed.py`` finds them in subprocesses.
"""

import os
import sys

import pytest

from testbed.fleet import (
    DEFAULT_GUESTS,
    STATE_ENV,
    GuestSpec,
    Testbed,
    Timings,
    parse_guests,
)
from testbed.registry import Registry
from testbed.vagrant import VagrantTestbed

_TIMINGS = Timings()
_SHARED: list[Testbed] = []  # the session's shared testbed, once booted
# Modules that use the shared, first-booted guests run first, in this order; the others boot
# their own guests (from the converged snapshot) after the shared ones are stopped.
SHARED_GUEST_MODULES = ("test_testbed", "test_converge", "test_verify")


def qa_suite(hosts, inventory, ssh_config=None, *extra: str) -> list[str]:
    """The command that runs the QA suite (``tests/qa``, testinfra) against ``hosts`` (names
    in ``ssh_config``), reading their data from ``inventory``; ``extra`` goes to pytest."""
    command = [sys.executable, "-m", "pytest", *extra, "-q", "-p", "no:cacheprovider"]
    command += ["tests/qa", "--hosts=" + ",".join(f"ssh://{name}" for name in hosts)]
    if ssh_config is not None:
        command.append(f"--ssh-config={ssh_config}")
    return command + ["--qa-inventory", str(inventory)]


def pytest_collection_modifyitems(items):
    def rank(item):
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SHARED_GUEST_MODULES:
            return SHARED_GUEST_MODULES.index(module)
        return len(SHARED_GUEST_MODULES)

    items.sort(key=rank)  # stable: within a module, and among the others, order is kept


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
    _SHARED.append(bed)
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
    # Converged once per release per run: later modules boot from this snapshot.
    testbed.checkpoint()
    return result


@pytest.fixture(scope="session")
def no_shared_guests():
    """For modules that boot guests of their own: the shared guests (if booted) are stopped
    first, so that at most two guests run at once on CI's two cores."""
    for bed in _SHARED:
        bed.stop_guests()


@pytest.fixture(scope="session")
def converged_testbed(testbed, converged, registry, tmp_path_factory):
    """A factory: ``boot(name)`` stops the shared guests (at most two guests run at once;
    the modules that share them run first, see pytest_collection_modifyitems) and returns a
    new started Testbed of the same guests booted from their converged snapshot. The caller
    stops it (``down()``)."""

    def boot(name: str, specs: list[GuestSpec] | None = None) -> Testbed:
        if not testbed.snapshots:
            pytest.skip(
                f"{name}: boots converged guests from the converge snapshot, which only the "
                "qemu testbed takes (--testbed=qemu)"
            )
        testbed.stop_guests()
        workdir = tmp_path_factory.mktemp(name)
        bed = Testbed(
            specs or testbed.specs,
            workdir,
            workdir / "hosts.json",
            registry=registry,
            snapshots=testbed.snapshots,
        )
        bed.timings = _TIMINGS
        return bed.up()

    return boot


@pytest.fixture(scope="session")
def ssh_config(testbed, converged, tmp_path_factory):
    """An ssh_config naming every shared guest (as booted after the converge snapshot), for
    testinfra's ``ssh://NAME`` hosts."""
    return testbed.write_ssh_config(tmp_path_factory.mktemp("ssh") / "config")


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS.stages:
        terminalreporter.section("real-host stage timings")
        terminalreporter.write_line(_TIMINGS.report())
