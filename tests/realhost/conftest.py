"""Fixtures of the real-host tier: one local registry and one set of booted guests per session.

Guests are the default set of ``python -m testbed`` (override with ``TESTBED_GUESTS``,
e.g. ``bookworm:server``); their state file is written to a temporary path that
``PODMAN_STANDARD_TESTBED`` names, so ``inventories/testbed.py`` finds them in subprocesses.

The order modules run in, which run side by side, and the timing table: ``tier.py``.
"""

import os
import sys
import time

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
from tests.realhost import tier

_TIMINGS = Timings()
_SHARED: list[Testbed] = []  # the session's shared testbed, once booted
# Modules that use the shared, first-booted guests run first, in this order; the others boot
# their own guests (from the converged snapshot or a pre-installed image) after the shared ones
# are stopped: two-guest modules next, then the one-guest modules, in two lanes side by side
# (tier.plan_lanes).
SHARED_GUEST_MODULES = ("test_testbed", "test_converge", "test_verify")
_MODULES: list[tier.ModuleTiming] = []  # this process's modules, in the order they ran
_CHILD: list[tier.ChildRun] = []  # the run of the one-guest lane beside this process's
_WALL: list[float] = []  # start and end of this process's real-host items


def qa_suite(hosts, inventory, ssh_config=None, *extra: str) -> list[str]:
    """The command that runs the QA suite (``tests/qa``, testinfra) against ``hosts`` (names
    in ``ssh_config``), reading their data from ``inventory``; ``extra`` goes to pytest."""
    command = [sys.executable, "-m", "pytest", *extra, "-q", "-p", "no:cacheprovider"]
    command += ["tests/qa", "--hosts=" + ",".join(f"ssh://{name}" for name in hosts)]
    if ssh_config is not None:
        command.append(f"--ssh-config={ssh_config}")
    return command + ["--qa-inventory", str(inventory)]


def _module(item) -> str:
    """The item's module: ``test_migration`` for the real-host tier's own, the dotted name for
    any other (tests/model/test_registries.py is not tests/realhost/test_registries.py)."""
    if not getattr(item, "module", None):
        return ""
    return item.module.__name__.removeprefix("tests.realhost.")


def _guests(item) -> int:
    if "realhost" not in item.keywords:
        return 0
    return getattr(item.module, "GUESTS_AT_ONCE", tier.GUEST_SLOTS)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        module = _module(item)
        if module in SHARED_GUEST_MODULES:
            return SHARED_GUEST_MODULES.index(module)
        # Then the modules that need both cores, then those that run beside another.
        return len(SHARED_GUEST_MODULES) + (1 if 0 < _guests(item) < tier.GUEST_SLOTS else 0)

    items.sort(key=rank)  # stable: within a module, and among the others, order is kept
    if not config.getoption("--realhost") or config.getoption("--realhost-child-report"):
        return
    modules = list(
        dict.fromkeys((_module(i), _guests(i), _minutes(i)) for i in items if _guests(i))
    )
    here, there = tier.plan_lanes(modules)
    if not here or not there:
        return
    moved = [i for i in items if _guests(i) and _module(i) in there]
    run = tier.ChildRun(config, [i.nodeid for i in moved], beside=here)
    _CHILD.append(run)
    replayed = [tier.ChildOutcome.from_parent(i.parent, name=i.name, run=run) for i in moved]
    for item in replayed:
        item.add_marker(pytest.mark.realhost)
    rest = [i for i in items if not (_guests(i) and _module(i) in there)]
    last = max(n for n, i in enumerate(rest) if _guests(i) and _module(i) in here)
    items[:] = rest[: last + 1] + replayed + rest[last + 1 :]


def _minutes(item) -> float:
    return float(getattr(item.module, "MINUTES", 1))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    left = tier.ci_time_left()
    replayed = isinstance(item, tier.ChildOutcome)  # its wait for the child is bounded too
    if left is not None and left < 0 and not replayed and _guests(item):
        pytest.fail(
            f"not started: {tier.ci_elapsed():.0f} s since the CI run started, within "
            f"{tier.CI_RESERVE_S} s of its {tier.CI_BUDGET_S // 60} minutes (the timing table "
            "below says where the time went)",
            pytrace=False,
        )
    run = _CHILD[0] if _CHILD else None
    if run is not None and run.process is None and _module(item) in run.beside:
        for bed in _SHARED:  # two guests at a time: the pair's, no others
            bed.stop_guests()
        run.start(item.config.get_terminal_writer().line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each module's wall time, and the stages recorded while it ran."""
    if "realhost" not in item.keywords or isinstance(item, tier.ChildOutcome):
        yield
        if _WALL and "realhost" in item.keywords:
            _WALL[1:] = [time.monotonic()]
        return
    name = _module(item)
    if not _MODULES or _MODULES[-1].name != name:
        _MODULES.append(tier.ModuleTiming(name, first_stage=len(_TIMINGS.stages)))
    started = time.monotonic()
    _WALL[:1] = _WALL[:1] or [started]
    yield
    module = _MODULES[-1]
    module.wall_s += time.monotonic() - started
    module.stages = list(_TIMINGS.stages[module.first_stage :])
    if nextitem is None or _module(nextitem) != name:  # the module's last test
        module.resources = tier.resources()
    _WALL[1:] = [time.monotonic()]


def pytest_runtest_logreport(report):
    """In a child pytest (tier.ChildRun): each phase report, for the parent to replay."""
    path = _child_report_path()
    if path is None or "realhost" not in report.keywords:
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        text = report.longrepr[2]
    else:
        text = str(report.longrepr) if report.failed else ""
    tier.child_report_line(
        path,
        {
            "kind": "report",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "longrepr": text,
        },
    )


_CONFIG = []


def pytest_configure(config):
    _CONFIG.append(config)


def _child_report_path():
    return _CONFIG[0].getoption("--realhost-child-report") if _CONFIG else None


def pytest_sessionfinish(session):
    path = _child_report_path()
    if path is not None:
        tier.child_report_line(
            path, {"kind": "timings", "modules": [m.to_json() for m in _MODULES]}
        )


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
    if not _MODULES:
        return
    run = _CHILD[0] if _CHILD else None
    modules = []
    for module in _MODULES:
        modules.append(module)
        if run is not None and run.finished and module.name == run.beside[-1]:
            modules += run.timings
    wall = _WALL[-1] - _WALL[0] if len(_WALL) == 2 else 0.0
    terminalreporter.section("real-host stage timings")
    terminalreporter.write_line(tier.timing_table(modules, wall, tier.ci_elapsed()))
