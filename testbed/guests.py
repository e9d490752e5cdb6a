"""Boot throwaway Debian guests under qemu, reachable only through SSH forwarded to 127.0.0.1.

Each guest runs on qcow2 overlays of a cached image, so it starts fresh and leaves the image
untouched. Guests are always torn down (context manager, atexit, SIGTERM) unless explicitly
detached for ``python -m testbed up --detach``.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .images import ImagePaths

SSH_USER = "vagrant"
SSH_HOST = "127.0.0.1"
SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
    # A guest that stops answering (reset, qemu killed) ends the command within a minute.
    "-o",
    "ServerAliveInterval=10",
    "-o",
    "ServerAliveCountMax=6",
)
# Each guest's commands share one SSH connection (a master ssh keeps it open, ControlPersist):
# under emulation the guest's side of a new connection (key exchange, a session) takes about
# 2 s, a command over the shared one about 0.2 s (bench: testbed guests, 2026-12-03). A
# connection the guest closed (a reboot) is replaced by the next command.
MUX_PERSIST_S = 300

# The CPU qemu emulates without KVM: the baseline x86-64 one. With "max" (every feature TCG can
# emulate: AVX2, SMAP, 5-level paging...) the same guest work took 15-35 % longer (a Debian 13
# guest, qemu 7.2, two boots each, alternating, 2026-12-03: boot to ssh 87-97 s vs 108-119 s,
# `podman info` 8.9-11.6 s vs 12.5-15.6 s, python3 imports 8.7-11.3 s vs 11.1-12.8 s).
# Debian builds for the baseline, and so do the images the tier runs.
TCG_CPU = "qemu64"

# Units the guests' systemd does not start (systemd.mask= on the kernel command line; the images
# keep Debian's defaults). Debian 12's podman enables podman-auto-update.service for every boot
# (WantedBy=default.target; Debian 13's ships it disabled): it updates the containers labelled
# io.containers.autoupdate, which none of the tier's are, and took 30 s of the guest's one
# emulated CPU right after each boot, beside the first test commands (systemd-analyze blame on a
# bookworm podman guest, 2026-12-03). Its timer goes too: at midnight it would start the masked
# service and fail.
BOOT_MASKED = ("podman-auto-update.service", "podman-auto-update.timer")
# How long Guest.run keeps trying a connection ssh could not set up.
CONNECT_RETRY_S = 90
# ssh's own messages for a connection that never reached the command (OpenSSH's sshconnect.c).
_NOT_CONNECTED = (
    "ssh: connect to host ",
    "during banner exchange",
    "kex_exchange_identification",
    # the shared connection ended before it opened the session (the guest went down)
    "mux_client_request_session",
    "mux_client_hello_exchange",
)


def _not_connected(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 255 and any(m in (result.stderr or "") for m in _NOT_CONNECTED)


_live: set[Guest] = set()
_live_lock = threading.Lock()
_atexit_installed = False
_sigterm_installed = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (qemu failing to bind is retried)."""
    with socket.socket() as probe:
        probe.bind((SSH_HOST, 0))
        return probe.getsockname()[1]


def accelerator() -> str:
    """``tcg`` unless ``TESTBED_ACCEL`` says ``kvm`` or ``auto``: KVM hangs at kernel start on
    this workplace's machines (broken nested virtualisation), so it is never assumed."""
    choice = os.environ.get("TESTBED_ACCEL", "tcg")
    if choice not in ("tcg", "kvm", "auto"):
        raise ValueError(f"TESTBED_ACCEL must be tcg, kvm or auto, not {choice!r}")
    if choice == "auto" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    return choice


class GuestError(RuntimeError):
    pass


class Guest:
    """One running qemu guest. Use ``launch()`` to create it; ``stop()`` (or leaving the ``with``
    block) kills qemu and removes its overlays unless ``keep`` is set."""

    def __init__(
        self,
        name: str,
        image: ImagePaths,
        workdir: Path,
        extra_disk_gib: int = 0,
        memory_mib: int = 2048,
        cpus: int = 2,
        keep: bool = False,
    ):
        self.name = name
        self.image = image
        self.release = image.release
        self.ssh_host = SSH_HOST
        self.ssh_user = SSH_USER
        self.ssh_key = image.ssh_key
        self.ssh_port = 0
        self.workdir = workdir
        self.disk = workdir / f"{name}.qcow2"
        self.extra_disk = (
            workdir / f"{name}-extra.qcow2" if (extra_disk_gib or image.extra_disk) else None
        )
        self.extra_disk_gib = extra_disk_gib
        self.console_log = workdir / f"{name}.console.log"
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.keep = keep
        self.accel = ""
        self.process: subprocess.Popen | None = None
        self.stopped = False  # set by stop(), possibly from another thread mid-boot

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 300, log=print) -> Guest:
        """Create overlays, boot, and wait until SSH answers with the image's key."""
        install_cleanup_handlers()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.disk.exists():  # maybe another guest's, or a snapshot other guests stand on
            raise GuestError(f"{self.disk} exists: guest names must be unique per workdir")
        _overlay(self.image.disk, self.disk)
        if self.image.extra_disk:
            _overlay(self.image.extra_disk, self.extra_disk)
        elif self.extra_disk:
            subprocess.run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    str(self.extra_disk),
                    f"{self.extra_disk_gib}G",
                ],
                check=True,
            )
        with _live_lock:
            _live.add(self)
        accel = accelerator()
        if accel == "auto":
            try:
                self._boot("kvm", timeout=90, log=log)
                return self
            except GuestError as error:
                log(f"[{self.name}] KVM did not boot ({error}); falling back to TCG")
                self._kill()
            accel = "tcg"
        self._boot(accel, timeout, log)
        return self

    def _boot(self, accel: str, timeout: float, log) -> None:
        started = time.monotonic()
        for _attempt in range(3):
            if self.stopped:
                raise GuestError(f"{self.name}: stopped while booting")
            self.ssh_port = free_port()
            self.accel = accel
            with open(self.workdir / f"{self.name}.qemu.err", "w") as errors:
                self.process = subprocess.Popen(
                    self._qemu_command(accel),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,  # a detached guest must outlive us; Ctrl-C is ours
                )
            time.sleep(1)
            if self.process.poll() is None:
                break
            error = (self.workdir / f"{self.name}.qemu.err").read_text()
            if "hostfwd" not in error:  # anything but a lost port race is fatal
                raise GuestError(f"{self.name}: qemu exited at start: {error.strip()}")
        log(f"[{self.name}] booting {self.release} ({accel}), ssh on {SSH_HOST}:{self.ssh_port}")
        try:
            self.wait_for_ssh(timeout, started, log)
        except GuestError:
            if not self.stopped:  # a deliberate stop (Ctrl-C, a sibling failed) needs no report
                self.diagnose()
            raise
        log(f"[{self.name}] ssh up after {time.monotonic() - started:.0f}s")

    def _qemu_command(self, accel: str) -> list[str]:
        # One host thread for all vCPUs: with thread=multi, qemu 7.2 lets a vCPU run stale
        # translated code while another patches kernel text (static keys), and guests panic
        # with "Oops: int3" (seen at boot, about one boot in five on a loaded machine).
        accel_option = "tcg,thread=single" if accel == "tcg" else "kvm"
        command = [
            "qemu-system-x86_64",
            "-name",
            self.name,
            "-accel",
            accel_option,
            "-cpu",
            "max" if accel == "kvm" else TCG_CPU,
            "-smp",
            str(self.cpus),
            "-m",
            str(self.memory_mib),
            "-nodefaults",  # no VGA, CD-ROM or floppy for the guest kernel to probe
            "-display",
            "none",
            "-serial",
            f"file:{self.console_log}",
            "-kernel",
            str(self.image.kernel),
            "-initrd",
            str(self.image.initrd),
            "-append",
            " ".join(
                [
                    f"root=/dev/vda rw console=ttyS0 systemd.hostname={self.name}",
                    *(f"systemd.mask={unit}" for unit in BOOT_MASKED),
                    *self.image.kernel_args.split(),
                ]
            ),
            # Test hosts are disposable; unsafe caching is a large speed-up under emulation.
            # Clean shutdowns (snapshot) still flush everything.
            "-drive",
            f"file={self.disk},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-netdev",
            f"user,id=net0,hostfwd=tcp:{SSH_HOST}:{self.ssh_port}-:22",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-device",
            "virtio-rng-pci",
        ]
        if self.extra_disk:
            command += ["-drive", f"file={self.extra_disk},if=virtio,format=qcow2,cache=unsafe"]
        return command

    def wait_for_ssh(self, timeout: float = 300, started: float | None = None, log=print) -> None:
        """Poll until ``true`` runs over SSH; fail early if qemu dies."""
        started = started or time.monotonic()
        next_report = started + 30
        while True:
            if self.process.poll() is not None:
                raise GuestError(f"{self.name}: qemu exited with {self.process.returncode}")
            if "Kernel panic" in self.console_tail(100):
                raise GuestError(f"{self.name}: guest kernel panicked")
            if self.run("true", timeout=20, reconnect=False).returncode == 0:
                return
            now = time.monotonic()
            if now - started > timeout:
                raise GuestError(f"{self.name}: no SSH after {timeout:.0f}s")
            if now >= next_report:
                log(f"[{self.name}] waiting for ssh, {now - started:.0f}s: {self.console_tail(1)}")
                next_report = now + 30
            time.sleep(2)

    def reboot(self, timeout: float = 300, log=print) -> None:
        """Reboot through systemd and wait until SSH answers from the new boot."""
        before = self.boot_id()
        self.run("sudo systemctl reboot", timeout=20)
        started = time.monotonic()
        while self.boot_id() in (before, None):
            if self.process.poll() is not None:
                raise GuestError(f"{self.name}: qemu exited during reboot")
            if time.monotonic() - started > timeout:
                self.diagnose()
                raise GuestError(f"{self.name}: not back {timeout:.0f}s after reboot")
            time.sleep(2)
        log(f"[{self.name}] rebooted in {time.monotonic() - started:.0f}s")

    def boot_id(self) -> str | None:
        result = self.run("cat /proc/sys/kernel/random/boot_id", timeout=20, reconnect=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def snapshot(self, timeout: float = 180) -> ImagePaths:
        """Shut the guest down cleanly and return its disks as an image for later guests.

        The overlays become read-only backing files (later guests get their own overlays on top),
        so a converged host comes back with one boot instead of a fresh converge (minutes).
        They are kept on disk until the caller deletes ``workdir``.
        """
        self.run("sudo systemctl poweroff", timeout=20)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.diagnose()
            raise GuestError(f"{self.name}: did not power off within {timeout:.0f}s") from None
        self.keep = True
        self.stop()
        return dataclasses.replace(self.image, disk=self.disk, extra_disk=self.extra_disk)

    def detach(self) -> None:
        """Leave the guest running after this process exits (the caller records its pid)."""
        with _live_lock:
            _live.discard(self)

    def stop(self) -> None:
        """Kill qemu (if running) and remove the overlays unless ``keep``. Idempotent, and
        safe to call from another thread while the guest boots (the boot then fails)."""
        self.stopped = True
        self._kill()
        with _live_lock:
            _live.discard(self)
        if not self.keep:
            for path in (self.disk, self.extra_disk):
                if path:
                    path.unlink(missing_ok=True)

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        close_mux(self)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- access ----------------------------------------------------------------------------

    def ssh_command(self, command: str) -> list[str]:
        return [
            "ssh",
            *SSH_OPTIONS,
            *mux_options(self),
            "-i",
            str(self.ssh_key),
            "-p",
            str(self.ssh_port),
            f"{self.ssh_user}@{self.ssh_host}",
            command,
        ]

    def run(
        self, command: str, timeout: float = 600, check: bool = False, reconnect: bool = True
    ) -> subprocess.CompletedProcess:
        """Run a shell command in the guest as ``vagrant``; a timeout counts as exit 255. A
        connection that ssh could not set up (the command never started: a guest busy after
        a boot may not send its banner within ConnectTimeout) is tried again, for at most
        CONNECT_RETRY_S seconds (not with ``reconnect=False``: the polls that wait for SSH)."""
        deadline = time.monotonic() + (CONNECT_RETRY_S if reconnect else 0)
        while True:
            try:
                result = subprocess.run(
                    self.ssh_command(command), capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired as error:
                result = subprocess.CompletedProcess(
                    error.cmd, 255, error.stdout or "", f"timed out after {timeout}s"
                )
            if not _not_connected(result) or time.monotonic() > deadline:
                break
            time.sleep(3)
        if check and result.returncode:
            raise GuestError(
                f"{self.name}: {command!r} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def console_tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])

    def diagnose(self, out=sys.stderr) -> None:
        """Print what explains a failure: the console's tail, and the journal if SSH works."""
        out.write(f"--- {self.name}: last console lines ({self.console_log}) ---\n")
        out.write(self.console_tail() + "\n")
        if self.process and self.process.poll() is None:
            journal = self.run("sudo journalctl -b --no-pager | tail -200", timeout=60)
            if journal.returncode == 0:
                out.write(f"--- {self.name}: journalctl -b | tail -200 ---\n{journal.stdout}\n")


def mux_options(guest) -> list[str]:
    """ssh options sharing one connection per guest: the master's socket in a directory of
    its own under /tmp (a socket's path has at most 107 bytes), made on first use."""
    if getattr(guest, "_mux_dir", None) is None:
        guest._mux_dir = tempfile.mkdtemp(prefix="ssh-mux-", dir="/tmp")
    return [
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={guest._mux_dir}/master",
        "-o",
        f"ControlPersist={MUX_PERSIST_S}",
    ]


def close_mux(guest) -> None:
    """End the guest's master ssh (if any) and remove its socket's directory."""
    folder = getattr(guest, "_mux_dir", None)
    if folder is None:
        return
    guest._mux_dir = None
    try:
        subprocess.run(
            ["ssh", "-o", f"ControlPath={folder}/master", "-O", "exit", "master"],
            capture_output=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        pass
    shutil.rmtree(folder, ignore_errors=True)


def launch(
    name: str,
    image: ImagePaths,
    workdir: Path,
    *,
    extra_disk_gib: int = 0,
    timeout: float = 300,
    keep: bool = False,
    log=print,
) -> Guest:
    """Boot a guest from ``image``; on failure nothing is left running."""
    guest = Guest(name, image, Path(workdir), extra_disk_gib=extra_disk_gib, keep=keep)
    try:
        return guest.start(timeout, log)
    except BaseException:
        guest.stop()
        raise


def stop_all() -> None:
    with _live_lock:
        guests = list(_live)
    for guest in guests:
        guest.stop()


def _overlay(base: Path, overlay: Path) -> None:
    backing_format = "raw" if base.suffix == ".raw" else "qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(base.resolve()),
            "-F",
            backing_format,
            str(overlay),
        ],
        check=True,
    )


def install_cleanup_handlers() -> None:
    """Kill our guests on exit and on SIGTERM (CI timeouts send it). The signal handler can only
    be set from the main thread; guests booted from worker threads rely on the first main-thread
    call (``fleet.boot`` makes one)."""
    global _atexit_installed, _sigterm_installed
    if not _atexit_installed:
        _atexit_installed = True
        atexit.register(stop_all)
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        stop_all()
        if callable(previous):
            previous(signum, frame)
        # Unwind like Ctrl-C: pytest then still tears fixtures down and prints its summary.
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)
