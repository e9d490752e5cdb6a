"""The real-host tier's scheduling and timing table (tests/realhost/tier.py), on plain data."""

import pytest

from tests.realhost import tier


def test_one_guest_modules_run_in_two_balanced_lanes():
    modules = [
        ("test_converge", 2, 5),
        ("test_migration", 1, 11.5),
        ("test_registries", 1, 5),
        ("test_services", 2, 13),
        ("test_services_real", 1, 4.7),
        ("test_vagrant", 1, 3.1),
    ]
    # The longest alone here; the three shorter ones, in run order, in the child's lane.
    assert tier.plan_lanes(modules) == (
        ["test_migration"],
        ["test_registries", "test_services_real", "test_vagrant"],
    )
    assert tier.plan_lanes(modules[:3]) == (["test_migration"], ["test_registries"])
    # Equal work: alternating, this process first; a lone one-guest module runs here alone.
    assert tier.plan_lanes([("a", 1, 1), ("b", 1, 1), ("c", 1, 1), ("d", 1, 1)]) == (
        ["a", "c"],
        ["b", "d"],
    )
    assert tier.plan_lanes([("test_migration", 1, 11)]) == (["test_migration"], [])
    # The minutes of a full tier run (2026-12-02): longest-first gives lanes of 47.5 and 44.8
    # minutes; the split below ends at 46.7.
    measured = [
        ("test_migration", 1, 36.5),
        ("test_registries", 1, 6.7),
        ("test_selinux", 1, 5.3),
        ("test_services_lifecycle", 1, 6.1),
        ("test_services_real", 1, 32.8),
        ("test_vagrant", 1, 4.9),
    ]
    assert tier.plan_lanes(measured) == (
        ["test_migration", "test_selinux", "test_vagrant"],
        ["test_registries", "test_services_lifecycle", "test_services_real"],
    )
    assert tier.plan_lanes([("test_converge", 2, 5), ("test_services", 2, 13)]) == ([], [])
    with pytest.raises(ValueError, match="test_big: GUESTS_AT_ONCE must be 1..2, not 3"):
        tier.plan_lanes([("test_big", 3, 1)])


def test_timing_table_counts_checks_and_the_margin():
    modules = [
        tier.ModuleTiming(
            "test_converge",
            100.0,
            [
                ("  boot a", 30.0),
                ("  boot b", 35.0),
                ("boot to ssh (a, b)", 35.0),
                ("pyinfra", 50.0),
            ],
        ),
        tier.ModuleTiming("test_vagrant", 40.0, [("vagrant: up", 40.0)], "in a child process"),
    ]
    table = tier.timing_table(modules, 120.0, ci_elapsed_s=4000.0).splitlines()
    assert table[0].split() == ["seconds", "module", "/", "stage"]
    assert "    100.0  test_converge" == table[1]
    # Details (leading space) are shown but not counted: 100 - 35 - 50 = 15 s of checks.
    assert "     15.0      checks (the rest of the module)" in table
    assert "     40.0  test_vagrant  (in a child process)" in table
    assert not any(
        "checks" in line
        for line in table[table.index("     40.0  test_vagrant  (in a child process)") :]
    )
    assert table[-2] == "    120.0  real-host tier, wall clock (modules side by side once)"
    assert table[-1] == (
        "   4000.0  since the CI run started; margin to 90 minutes: 1400 s (23.3 min)"
    )
    assert "since the CI run" not in tier.timing_table(modules, 120.0, None)


def test_ci_elapsed_reads_the_start_time(monkeypatch):
    monkeypatch.delenv(tier.CI_START_ENV, raising=False)
    assert tier.ci_elapsed(now=100.0) is None
    monkeypatch.setenv(tier.CI_START_ENV, "40")
    assert tier.ci_elapsed(now=100.0) == 60.0


def test_a_childs_outcome_is_its_first_failure_else_its_skip():
    passed = {"outcome": "passed", "when": "setup", "longrepr": ""}
    failed = {"outcome": "failed", "when": "teardown", "longrepr": "boom"}
    skipped = {"outcome": "skipped", "when": "setup", "longrepr": "no box"}
    assert tier.outcome_of([passed, dict(passed, when="call"), failed]) == failed
    assert tier.outcome_of([skipped, dict(passed, when="teardown")]) == skipped
    assert tier.outcome_of([passed, dict(passed, when="call")])["outcome"] == "passed"


def test_module_timing_round_trips_through_the_childs_report():
    timing = tier.ModuleTiming("test_vagrant", 12.5, [("vagrant: up", 10.0)], "")
    assert tier.ModuleTiming.from_json(timing.to_json()) == timing
    timing.resources = "1.0 GiB free in /tmp"
    assert tier.ModuleTiming.from_json(timing.to_json()) == timing


def test_the_time_left_under_ci_keeps_the_reserve(monkeypatch):
    monkeypatch.delenv(tier.CI_START_ENV, raising=False)
    assert tier.ci_time_left(now=100.0) is None
    monkeypatch.setenv(tier.CI_START_ENV, "0")
    assert tier.ci_time_left(now=5000.0) == 5400 - tier.CI_RESERVE_S - 5000
    assert tier.ci_time_left(now=5300.0) < 0


def test_resources_reads_free_disk_and_available_memory(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    3145728 kB\n")
    line = tier.resources([str(tmp_path), str(tmp_path / "gone")], meminfo=str(meminfo))
    free, gone, memory = line.split("; ")
    assert free.endswith(f" GiB free in {tmp_path}") and float(free.split()[0]) > 0
    assert gone == f"{tmp_path / 'gone'}: No such file or directory"
    assert memory == "3.0 GiB memory available"
    table = tier.timing_table([tier.ModuleTiming("m", 1.0, [], resources=line)], 1.0, None)
    assert table.splitlines()[2] == f"{'':9}      at its end: {line}"


def test_a_fast_tier_module_is_not_taken_for_the_real_host_module_of_its_name():
    # tests/model/test_registries.py once went to the child lane with
    # tests/realhost/test_registries.py, whose short name it shares.
    from types import SimpleNamespace

    from tests.realhost.conftest import _module

    def item(name):
        return SimpleNamespace(module=SimpleNamespace(__name__=name))

    assert _module(item("tests.realhost.test_registries")) == "test_registries"
    assert _module(item("tests.model.test_registries")) == "tests.model.test_registries"
