"""Cheap hosts for the fleet benchmark: Debian 12 systemd-nspawn containers with sshd and the
standard's toolset preinstalled (bench/nspawn_rootfs.sh), each on an overlayfs copy of one root
filesystem, booted with systemd as PID 1 and sshd on its own 127.0.0.1 port.

They share the machine's network namespace (``--network-veth`` needs D-Bus/machined, which this
machine lacks) but nothing listens beyond loopback. ``podman info`` works in them; running a
container does not (TESTBED.md), and a no-op run needs none. They are described to
``inventories/testbed.py`` by a hosts.json like the qemu testbed's, as Linux servers (API socket,
rootless user vagrant) without a storage device.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from testbed.guests import SSH_OPTIONS

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventories" / "testbed.py"
CACHE = Path(os.environ.get("PODMAN_STANDARD_CACHE", "/var/cache/podman-standard"))
ROOTFS = CACHE / "bench" / "nspawn-bookworm"
WORKDIR = REPO / ".bench" / "fleet"
HOST_DATA = {
    "podman_rootless_users": [{"name": "vagrant"}],
    "podman_nvidia_enabled": "auto",
    "_sudo": True,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fleet:
    """``n`` containers named bench-1..n; ``up()`` boots them and writes ``state``."""

    def __init__(self, n: int, workdir: Path = WORKDIR, log=print):
        self.n = n
        self.workdir = workdir
        self.state = workdir / "hosts.json"
        self.names = [f"bench-{i}" for i in range(1, n + 1)]
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.mounts: list[Path] = []

    def ssh_key(self) -> Path:
        from testbed.images import build_image

        return build_image("bookworm").ssh_key

    def up(self) -> Fleet:
        key = self.ssh_key()
        if not ROOTFS.exists():
            self.log(f"building {ROOTFS} (debootstrap, minutes)")
            subprocess.run(
                [str(REPO / "bench" / "nspawn_rootfs.sh"), str(ROOTFS), f"{key}.pub"], check=True
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for name in self.names:
                self._start(name)
            deadline = time.monotonic() + float(os.environ.get("BENCH_BOOT_TIMEOUT", 300))
            for name in self.names:
                self._wait_ssh(name, key, deadline)
        except BaseException:
            self.down()
            raise
        hosts = [
            {
                "name": name,
                "ssh_host": "127.0.0.1",
                "ssh_port": self.ports[name],
                "ssh_user": "vagrant",
                "ssh_key": str(key),
                "groups": ["linux_servers"],
                "data": HOST_DATA,
            }
            for name in self.names
        ]
        self.state.write_text(json.dumps({"hosts": hosts}, indent=2) + "\n")
        return self

    def _start(self, name: str) -> None:
        base = self.workdir / name
        upper, work, merged = base / "upper", base / "work", base / "root"
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=True)
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={ROOTFS},upperdir={upper},workdir={work}",
                str(merged),
            ],
            check=True,
        )
        self.mounts.append(merged)
        port = _free_port()
        self.ports[name] = port
        (merged / "etc/ssh/sshd_config.d/bench.conf").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\n"
        )
        (merged / "etc/hostname").write_text(name + "\n")
        log = (base / "console.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--keep-unit",
                "--register=no",
                "-D",
                str(merged),
                "-M",
                name,
                "-b",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log(f"[{name}] booting (nspawn pid {self.procs[name].pid}), ssh on 127.0.0.1:{port}")

    def _wait_ssh(self, name: str, key: Path, deadline: float) -> None:
        command = [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(self.ports[name]),
            *SSH_OPTIONS,
            "vagrant@127.0.0.1",
            "true",
        ]
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name}: systemd-nspawn exited ({self.procs[name].returncode})")
            if subprocess.run(command, capture_output=True).returncode == 0:
                return
            time.sleep(1)
        raise TimeoutError(f"{name}: no ssh on port {self.ports[name]}")

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for merged in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(merged)], check=False)
        self.mounts.clear()
        self.procs.clear()


if __name__ == "__main__":  # boot a fleet by hand: python -m bench.nspawn N; Ctrl-C stops it
    import sys

    fleet = Fleet(int(sys.argv[1]) if len(sys.argv) > 1 else 1).up()
    print(f"state: {fleet.state}  (PODMAN_STANDARD_TESTBED={shlex.quote(str(fleet.state))})")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        fleet.down()
