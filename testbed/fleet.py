"""A testbed: images, the local registry and a set of guests, described to pyinfra by a state file.

Shared by the CLI (``python -m testbed``) and the pytest fixtures of the real-host tier, so
both boot exactly the same hosts with the same data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import guests as guests_module
from .guests import Guest
from .hostdata import ROLES, testbed_host_data
from .images import VARIANTS, ImagePaths, build_image
from .registry import Registry

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventories" / "testbed.py"
DEFAULT_DEPLOY = "deploys/linux_baseline.py"
DEFAULT_GUESTS = "bookworm:server,trixie:workstation"
STATE_ENV = "PODMAN_STANDARD_TESTBED"
GROUPS = {"server": ["linux_servers", "motoko"], "workstation": ["linux_workstations"]}
EXTRA_DISK_GIB = {"server": 4, "workstation": 0}  # the server's /space drive, as on motoko
MAX_RUNNING = 2  # two cores: more guests at once only slows every one of them down


@dataclass(frozen=True)
class GuestSpec:
    """A guest: its release, its role (which host data and groups it gets) and the image
    variant it boots (``images.VARIANTS``: ``bare`` proves the install, ``podman`` has the
    toolset installed at build time, ``docker`` has Docker's too)."""

    release: str
    role: str
    variant: str = "bare"

    @property
    def name(self) -> str:
        return f"{self.release}-{self.role}"


def parse_guests(text: str) -> list[GuestSpec]:
    """``bookworm:server,trixie:workstation:podman`` -> specs (release:role[:variant]); names
    must be unique."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        release, _, rest = item.partition(":")
        role, _, variant = rest.partition(":")
        if role not in ROLES:
            raise ValueError(f"guest {item!r}: role must be one of {', '.join(ROLES)}")
        if variant and variant not in VARIANTS:
            raise ValueError(f"guest {item!r}: image variant must be one of {', '.join(VARIANTS)}")
        specs.append(GuestSpec(release, role, variant or "bare"))
    names = [spec.name for spec in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"guest list {text!r} is empty or names a guest twice")
    return specs


def host_entry(spec: GuestSpec, guest: Guest, registry: str, overrides: dict | None = None) -> dict:
    """One host of hosts.json: how to reach it, its groups and its data (``overrides`` merged
    over the role's data)."""
    return {
        "name": spec.name,
        "release": spec.release,
        "ssh_host": guest.ssh_host,
        "ssh_port": guest.ssh_port,
        "ssh_user": guest.ssh_user,
        "ssh_key": str(guest.ssh_key),
        "groups": GROUPS[spec.role],
        "data": {**testbed_host_data(spec.role, registry), **(overrides or {})},
    }


# operations/_common.timed's last line of a step: "[host] <what>: done in 1 min 18 s" or
# "... done in 4.2 s" (operations._common._elapsed); pyinfra pads shorter host names' prefixes.
_STEP_DONE = re.compile(
    r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<what>.+): done in "
    r"(?:(?P<min>\d+) min (?P<sec>\d+) s|(?P<s>\d+(?:\.\d+)?) s)\s*$"
)


def step_durations(stderr: str) -> list[tuple[str, float]]:
    """The long steps a pyinfra run reported on its output (``[host] what: done in ...``), as
    ("host: what", seconds), in the order they ended."""
    steps = []
    for line in stderr.splitlines():
        match = _STEP_DONE.match(line)
        if match is None:
            continue
        if match["s"] is not None:
            seconds = float(match["s"])
        else:
            seconds = int(match["min"]) * 60 + int(match["sec"])
        steps.append((f"{match['host']}: {match['what']}", seconds))
    return steps


class Timings:
    """Wall-clock seconds per stage, in the order stages ended. A stage entered inside another
    is recorded as a detail of it: indented (a leading space per level), before it."""

    def __init__(self):
        self.stages: list[tuple[str, float]] = []
        self._depth = 0

    @contextmanager
    def stage(self, name: str):
        started = time.monotonic()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.record(name, time.monotonic() - started)

    def record(self, name: str, seconds: float) -> None:
        """A stage measured elsewhere, as a detail of the stages open around the caller."""
        self.stages.append(("  " * self._depth + name, seconds))

    def report(self) -> str:
        return "\n".join(f"{seconds:8.1f}s  {name}" for name, seconds in self.stages)


class Testbed:
    """Images + registry + guests for ``specs``; ``up()`` starts them and writes ``state_path``,
    ``down()`` stops whatever is still running. Overlays and logs live in ``workdir``.

    A ``registry`` passed in (already started, images pushed) is shared and left running.
    """

    __test__ = False  # not a test class, whatever module imports it

    def __init__(
        self,
        specs: list[GuestSpec],
        workdir: Path,
        state_path: Path,
        log=print,
        registry: Registry | None = None,
        snapshots: dict[str, ImagePaths] | None = None,
    ):
        self.specs = specs
        self.workdir = Path(workdir)
        self.state_path = Path(state_path)
        self.log = log
        self.timings = Timings()
        self._own_registry = registry is None
        self.registry = registry or Registry(self.workdir / "registry")
        self.guests: dict[str, Guest] = {}
        self.images: dict[str, ImagePaths] = {}
        self.inventory_path = INVENTORY
        # Guests boot from these disks (by guest name) instead of the fresh release image.
        self.snapshots = dict(snapshots or {})
        # Host data merged over each guest's role data in the state file (by guest name).
        self.data_overrides: dict[str, dict] = {}
        self._generation = 0
        self._runs = 0  # pyinfra runs so far: each one's stderr is kept as pyinfra-NN.stderr

    def up(self) -> Testbed:
        guests_module.install_cleanup_handlers()
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self) -> None:
        booting = [s for s in self.specs if s.name not in self.snapshots]
        wanted = sorted({(s.release, s.variant) for s in booting})
        if wanted:
            labels = ", ".join(r if v == "bare" else f"{r}-{v}" for r, v in wanted)
            with self.timings.stage(f"image build or cache ({labels})"):
                with ThreadPoolExecutor(len(wanted)) as pool:
                    built = pool.map(lambda rv: build_image(rv[0], self.log, rv[1]), wanted)
                    self.images = dict(zip(wanted, built, strict=True))
        if self._own_registry:
            with self.timings.stage("registry start + push"):
                self.registry.start()
                self.registry.push_testbed_images()
        timeout = float(os.environ.get("TESTBED_BOOT_TIMEOUT", 300))  # more on busy machines
        self.guests = {
            spec.name: Guest(
                spec.name,
                self.snapshots.get(spec.name) or self.images[spec.release, spec.variant],
                self.workdir,
                extra_disk_gib=EXTRA_DISK_GIB[spec.role],
            )
            for spec in self.specs
        }
        self._boot_all(timeout)
        self.write_state()

    def _boot_all(self, timeout: float) -> None:
        with self.timings.stage(f"boot to ssh ({', '.join(self.guests)})"):
            # Not `with`: on Ctrl-C, down() must stop booting guests now, not after they boot.
            pool = ThreadPoolExecutor(MAX_RUNNING)
            try:
                futures = [pool.submit(self._boot, g, timeout) for g in self.guests.values()]
                for future in futures:
                    future.result()
            finally:
                pool.shutdown(wait=False, cancel_futures=True)

    def checkpoint(self) -> dict[str, ImagePaths]:
        """Shut every guest down cleanly, keep its disks as a snapshot (qcow2 overlays become
        backing files) and boot it again on a new overlay of that snapshot. Returns the
        snapshots by guest name: later testbeds boot converged hosts from them in one boot."""
        self._generation += 1
        with self.timings.stage(f"snapshot ({', '.join(self.guests)})"):
            with ThreadPoolExecutor(MAX_RUNNING) as pool:
                images = dict(
                    zip(self.guests, pool.map(Guest.snapshot, self.guests.values()), strict=True)
                )
        self.snapshots.update(images)
        workdir = self.workdir / f"after-snapshot-{self._generation}"
        self.guests = {
            name: Guest(name, image, workdir, extra_disk_gib=guest.extra_disk_gib)
            for (name, image), guest in zip(images.items(), self.guests.values(), strict=True)
        }
        try:
            self._boot_all(float(os.environ.get("TESTBED_BOOT_TIMEOUT", 300)))
        except BaseException:
            self.down()
            raise
        self.write_state()
        return images

    def stop_guests(self) -> None:
        """Stop the guests (not a shared registry): they are done, others may boot now."""
        for guest in self.guests.values():
            guest.stop()

    def _boot(self, guest: Guest, timeout: float) -> None:
        started = time.monotonic()
        guest.start(timeout, self.log)
        # A detail of the "boot to ssh" stage that holds it (the leading space says so).
        self.timings.stages.append((f"  boot {guest.name}", time.monotonic() - started))

    def state(self) -> dict:
        return {
            "registry": self.registry.guest_address,
            "hosts": [
                host_entry(
                    spec,
                    self.guests[spec.name],
                    self.registry.guest_address,
                    self.data_overrides.get(spec.name),
                )
                for spec in self.specs
            ],
            "runtime": self.runtime(),
        }

    def runtime(self) -> dict:
        """For `python -m testbed down`: what to stop and where its files are."""
        return {
            "workdir": str(self.workdir),
            "pids": {
                "registry": self.registry.process.pid,
                **{name: g.process.pid for name, g in self.guests.items()},
            },
            "console_logs": {name: str(g.console_log) for name, g in self.guests.items()},
        }

    def write_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(self.state(), indent=2) + "\n")

    def write_ssh_config(self, path: Path) -> Path:
        """An ssh_config naming every guest (testinfra's ``ssh://NAME`` hosts)."""
        path.write_text(
            "".join(
                f"Host {g.name}\n  HostName {g.ssh_host}\n  Port {g.ssh_port}\n"
                f"  User {g.ssh_user}\n  IdentityFile {g.ssh_key}\n  StrictHostKeyChecking no\n"
                "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                for g in self.guests.values()
            )
        )
        return path

    def detach(self) -> None:
        for guest in self.guests.values():
            guest.detach()

    def down(self) -> None:
        for guest in self.guests.values():
            guest.stop()
        if self._own_registry:
            self.registry.stop()

    def pyinfra(
        self, *args: str, deploy: str | tuple[str, ...] = DEFAULT_DEPLOY, env: dict | None = None
    ):
        """Run ``pyinfra -y --json ARGS INVENTORY DEPLOY`` from the repo root and return
        ``(returncode, result, stderr)``, ``result`` being the parsed JSON (None if pyinfra
        printed none). ``deploy`` may also be an ad-hoc command, e.g. ``("fact", "server.Os")``.
        """
        operations = (deploy,) if isinstance(deploy, str) else tuple(deploy)
        with self.timings.stage(f"pyinfra {' '.join(args + operations)}"):
            result = subprocess.run(
                self.pyinfra_argv(*args, deploy=operations),
                cwd=REPO,
                env={**self.pyinfra_env(), **(env or {})},
                capture_output=True,
                text=True,
            )
            # The run's long steps (operations/_common.timed) as details of this stage.
            for name, seconds in step_durations(result.stderr):
                self.timings.record(name, seconds)
        self._runs += 1
        log = self.workdir / f"pyinfra-{self._runs:02d}.stderr"
        try:
            log.write_text(f"$ pyinfra {' '.join(args + operations)}\n{result.stderr}")
        except OSError:
            pass  # a log for whoever looks into the workdir; the result is returned anyway
        try:
            parsed = json.loads(result.stdout)
        except ValueError:
            parsed = None
        return result.returncode, parsed, result.stderr

    def pyinfra_argv(self, *args: str, deploy: str | tuple[str, ...] = DEFAULT_DEPLOY) -> list:
        """The command line :meth:`pyinfra` runs (run it from the repo root, with
        :meth:`pyinfra_env`): for a run started in the background."""
        operations = (deploy,) if isinstance(deploy, str) else tuple(deploy)
        return [
            sys.executable,
            "-m",
            "pyinfra",
            "-y",
            "--json",
            *args,
            str(self.inventory_path),
            *operations,
        ]

    def pyinfra_env(self) -> dict:
        return dict(os.environ, **{STATE_ENV: str(self.state_path), "PYINFRA_PROGRESS": "off"})


def stop_recorded(state_path: Path, log=print) -> None:
    """Stop the processes a detached ``up`` recorded, then remove its working directory.

    A pid is only signalled while its command line still names our workdir, so a pid reused by
    an unrelated process since is left alone.
    """
    runtime = json.loads(state_path.read_text())["runtime"]
    workdir = runtime["workdir"]
    for name, pid in runtime["pids"].items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            continue
        if workdir not in cmdline:
            continue
        os.kill(pid, 15)
        for _ in range(100):
            if _gone(pid):
                break
            time.sleep(0.1)
        log(f"stopped {name} (pid {pid})")
    subprocess.run(["rm", "-rf", "--one-file-system", workdir], check=True)
    state_path.unlink()


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie awaiting an absent parent's reap counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
