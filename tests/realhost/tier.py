"""How the real-host tier runs on CI's two cores: which modules run beside each other, and the
table of where the time went.

Each real-host module says how many guests it runs at once in a module-level ``GUESTS_AT_ONCE``
(1 or 2; 2 when it says nothing) and about how long it takes in ``MINUTES`` (its last measured
wall time; used only to balance). Two-guest modules fill both cores alone and run one after
another. One-guest modules run in two lanes side by side (``plan_lanes``): the longest first
goes to this process, each next one to the lane with less work; the other lane is a child
pytest process (``ChildRun``) started when this process begins its first one-guest module, so
that two guests run at once until the shorter lane ends. The child's results come back as items
of this session with the same node ids (``ChildOutcome``): the counts, failures and skips
reported are those of the tests themselves.

The timing table (``timing_table``) lists each module's wall time, its stages (as the testbed and
the tests record them) and "checks", the rest of the module's time (test bodies, fixtures'
unrecorded work); with the CI run's start time in ``PODMAN_STANDARD_CI_START`` it also gives
the time since then and the margin to CI's 90 minutes.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

GUEST_SLOTS = 2  # CI's cores: a TCG guest keeps one busy
CI_BUDGET_S = 5400
CI_START_ENV = "PODMAN_STANDARD_CI_START"
CHILD_OPTION = "--realhost-child-report"
# The longest a paired module may run in the child (the Vagrant module takes about 6 minutes).
CHILD_TIMEOUT_ENV = "PODMAN_STANDARD_CHILD_TIMEOUT"
CHILD_TIMEOUT_S = 3600
# Under CI, what is kept of its 90 minutes for the end: the child's results, the guests'
# teardown and the timing table. No real-host test starts later, and the wait for the child
# ends then, so that a run too long still ends by itself and says where the time went.
CI_RESERVE_S = 150


def plan_lanes(modules: list[tuple[str, int, float]]) -> tuple[list[str], list[str]]:
    """``modules``: (name, guests at once, minutes) in run order. The one-guest modules split
    into (this process's lane, the child's lane), longest first to the lane with less work
    (this process's on a tie), unless another split ends sooner (the shortest longer lane),
    each lane keeping the run order."""
    for name, guests, _ in modules:
        if not 1 <= guests <= GUEST_SLOTS:
            raise ValueError(f"{name}: GUESTS_AT_ONCE must be 1..{GUEST_SLOTS}, not {guests!r}")
    singles = [(name, minutes) for name, guests, minutes in modules if guests * 2 <= GUEST_SLOTS]
    lanes: tuple[list[str], list[str]] = ([], [])
    work = [0.0, 0.0]
    for name, minutes in sorted(singles, key=lambda m: -m[1]):  # stable: run order on ties
        lane = 0 if work[0] <= work[1] else 1
        lanes[lane].append(name)
        work[lane] += minutes
    order = [name for name, _ in singles]
    if len(singles) <= 14:  # every split (2**14 at most): the greedy one unless one is shorter
        best, total = max(work), sum(work)
        for mask in range(1 << len(singles)):
            here = sum(m for i, (_, m) in enumerate(singles) if not mask >> i & 1)
            longest = max(here, total - here)
            if longest < best - 1e-9:
                best = longest
                lanes = (
                    [n for i, (n, _) in enumerate(singles) if not mask >> i & 1],
                    [n for i, (n, _) in enumerate(singles) if mask >> i & 1],
                )
    return sorted(lanes[0], key=order.index), sorted(lanes[1], key=order.index)


def on_each(names, check):
    """``check(name)`` on each guest at once, one thread each: a two-guest module's checks keep
    both guests (and CI's two cores) busy, where one guest after the other leaves a core idle.
    Returns the results by name; once all have ended, the first failure in ``names``' order is
    raised (pytest's assertion messages included)."""
    names = list(names)
    with ThreadPoolExecutor(max(len(names), 1)) as pool:
        futures = {name: pool.submit(check, name) for name in names}
    return {name: future.result() for name, future in futures.items()}


@dataclass
class ModuleTiming:
    """One module's wall time and the stages recorded while it ran. A stage whose name starts
    with a space is a detail of the one after it (e.g. one guest's boot inside "boot to ssh"),
    shown but not counted again."""

    name: str
    wall_s: float = 0.0
    stages: list[tuple[str, float]] = field(default_factory=list)
    note: str = ""
    first_stage: int = 0  # where its stages start in the process's Timings (not reported)
    resources: str = ""  # the machine's free disk and memory when the module's last test ended

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "wall_s": self.wall_s,
            "stages": self.stages,
            "note": self.note,
            "resources": self.resources,
        }

    @classmethod
    def from_json(cls, data: dict) -> ModuleTiming:
        stages = [(name, seconds) for name, seconds in data["stages"]]
        return cls(
            data["name"],
            data["wall_s"],
            stages,
            data.get("note", ""),
            resources=data.get("resources", ""),
        )


def resources(paths: list[str] | None = None, meminfo: str = "/proc/meminfo") -> str:
    """Free space under ``paths`` (the temporary directory, where the guests' disks are, and
    the image cache) and the memory available, as one line of the timing table."""
    if paths is None:
        paths = [tempfile.gettempdir(), os.environ.get("PODMAN_STANDARD_CACHE", "/var/cache")]
    parts = []
    for path in dict.fromkeys(paths):
        try:
            parts.append(f"{shutil.disk_usage(path).free / 2**30:.1f} GiB free in {path}")
        except OSError as error:
            parts.append(f"{path}: {error.strerror}")
    try:
        with open(meminfo) as lines:
            available = next(ln for ln in lines if ln.startswith("MemAvailable:"))
        parts.append(f"{int(available.split()[1]) / 2**20:.1f} GiB memory available")
    except (OSError, StopIteration, ValueError):
        pass
    return "; ".join(parts)


def ci_time_left(now: float | None = None) -> float | None:
    """Under CI: the seconds left before its 90 minutes, less ``CI_RESERVE_S``."""
    elapsed = ci_elapsed(now)
    return None if elapsed is None else CI_BUDGET_S - CI_RESERVE_S - elapsed


def timing_table(modules: list[ModuleTiming], tier_wall_s: float, ci_elapsed_s: float | None):
    """The table printed at the end of a real-host session."""
    lines = [f"{'seconds':>9}  module / stage"]
    for module in modules:
        counted = sum(s for name, s in module.stages if not name.startswith(" "))
        note = f"  ({module.note})" if module.note else ""
        lines.append(f"{module.wall_s:9.1f}  {module.name}{note}")
        if module.resources:
            lines.append(f"{'':9}      at its end: {module.resources}")
        lines += [f"{s:9.1f}      {name}" for name, s in module.stages]
        if module.wall_s - counted >= 0.05:
            lines.append(f"{module.wall_s - counted:9.1f}      checks (the rest of the module)")
    lines.append(f"{tier_wall_s:9.1f}  real-host tier, wall clock (modules side by side once)")
    if ci_elapsed_s is not None:
        margin = CI_BUDGET_S - ci_elapsed_s
        lines.append(
            f"{ci_elapsed_s:9.1f}  since the CI run started; margin to {CI_BUDGET_S // 60} "
            f"minutes: {margin:.0f} s ({margin / 60:.1f} min)"
        )
    return "\n".join(lines)


def ci_elapsed(now: float | None = None) -> float | None:
    start = os.environ.get(CI_START_ENV)
    if not start:
        return None
    return (now if now is not None else time.time()) - float(start)


def outcome_of(reports: list[dict]) -> dict:
    """One test's outcome from its phase reports (setup, call, teardown) as the child wrote
    them: the first failure, else a skip, else passed."""
    for report in reports:
        if report["outcome"] == "failed":
            return report
    for report in reports:
        if report["outcome"] == "skipped":
            return report
    return {"outcome": "passed", "when": "call", "longrepr": ""}


class ChildRun:
    """A pytest process running some of this session's real-host tests beside it. It writes
    each phase report and, at its end, its timings to ``report`` (JSON lines)."""

    def __init__(self, config, nodeids: list[str], beside: list[str]):
        self.config = config
        self.nodeids = nodeids
        self.beside = beside
        self.report: Path | None = None  # made at start(), so collecting leaves nothing
        self.log: Path | None = None
        self.process: subprocess.Popen | None = None
        self.timeout = float(os.environ.get(CHILD_TIMEOUT_ENV, CHILD_TIMEOUT_S))
        self._results: dict[str, list[dict]] | None = None
        self.timings: list[ModuleTiming] = []
        self.failure = ""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            "--realhost",
            f"--testbed={self.config.getoption('--testbed')}",
            f"{CHILD_OPTION}={self.report}",
            "-p",
            "no:cacheprovider",
            "-q",
            *self.nodeids,
        ]

    def start(self, write_line=print) -> None:
        if self.process is not None:
            return
        directory = Path(tempfile.mkdtemp(prefix="realhost-child-"))
        self.report, self.log = directory / "report.jsonl", directory / "pytest.log"
        env = {k: v for k, v in os.environ.items() if k != "PODMAN_STANDARD_TESTBED"}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.config.rootpath,
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()
        atexit.register(self.kill)
        write_line(
            f"[tier] {len(self.nodeids)} tests of {', '.join(self.modules())} run in a child "
            f"pytest beside {', '.join(self.beside)} (pid {self.process.pid}, log {self.log})"
        )

    def modules(self) -> list[str]:
        return list(dict.fromkeys(nodeid.split("::", 1)[0] for nodeid in self.nodeids))

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def results(self) -> dict[str, list[dict]]:
        """Wait (bounded) for the child, then its phase reports by node id."""
        if self._results is not None:
            return self._results
        self.start()
        remaining = self.timeout - (time.monotonic() - self.started)
        ci_left = ci_time_left()
        limit = remaining if ci_left is None else min(remaining, ci_left)
        try:
            self.process.wait(max(limit, 1))
        except subprocess.TimeoutExpired:
            self.kill()
            waited = time.monotonic() - self.started
            self.failure = f"the child pytest did not finish within {waited:.0f} s" + (
                f" (CI's {CI_BUDGET_S // 60} minutes less {CI_RESERVE_S} s were up)"
                if limit < remaining
                else ""
            )
        self._results = {}
        if self.report.exists():
            for line in self.report.read_text().splitlines():
                entry = json.loads(line)
                if entry["kind"] == "report":
                    self._results.setdefault(entry["nodeid"], []).append(entry)
                elif entry["kind"] == "timings":
                    self.timings = [ModuleTiming.from_json(m) for m in entry["modules"]]
        if not self.failure and self.process.returncode not in (0, 1):
            self.failure = f"the child pytest exited {self.process.returncode}"
        for timing in self.timings:
            timing.note = f"in a child process, beside {', '.join(self.beside)}"
        return self._results

    @property
    def finished(self) -> bool:
        """Whether ``results()`` has waited for the child and read its report."""
        return self._results is not None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (AttributeError, FileNotFoundError):
            return ""


class ChildFailure(Exception):
    pass


class ChildOutcome(pytest.Item):
    """A test of this session that ran in ``run``'s child process: waiting for it and
    replaying its outcome is this item's whole run."""

    def __init__(self, *, run: ChildRun, **kwargs):
        super().__init__(**kwargs)
        self.run = run

    def runtest(self) -> None:
        reports = self.run.results().get(self.nodeid)
        if not reports:
            raise ChildFailure(
                f"{self.nodeid} did not run in the child pytest"
                + (f" ({self.run.failure})" if self.run.failure else "")
                + f"; its log's last lines ({self.run.log}):\n{self.run.log_tail()}"
            )
        outcome = outcome_of(reports)
        if outcome["outcome"] == "skipped":
            pytest.skip(outcome["longrepr"])
        if outcome["outcome"] == "failed":
            raise ChildFailure(
                f"failed in the child pytest ({outcome['when']}):\n{outcome['longrepr']}"
            )

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ChildFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.name} (in a child pytest)"


def child_report_line(path: str, entry: dict) -> None:
    with open(path, "a") as report:
        report.write(json.dumps(entry) + "\n")
