"""Vagrant VMs for the real-host tier: libvirt (software emulation) inside a network namespace.

vagrant-libvirt puts guests on a private bridge (192.168.121.0/24). Tests here may only talk
to loopback or to their own hosts inside a network namespace the test created, so everything
that touches that bridge runs in one (``Netns``): libvirtd with its dnsmasq and iptables NAT,
vagrant, and the SSH clients (pyinfra, testinfra). The namespace's only way out is
``slirp4netns`` — user-mode networking like qemu's, no change to the machine's own network —
which gives the guests Debian's mirror for the converge and, as ``10.0.2.2``, the machine's
loopback, where the testbed's registry listens (the same address guests of the qemu testbed
use). ``Lab`` ties it together: namespace, libvirtd, a python-vagrant handle whose commands
run in the namespace, and teardown that destroys the VMs whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import vagrant

from inventories._vagrant import parse_ssh_config

from .fleet import EXTRA_DISK_GIB, GROUPS, Testbed
from .guests import Guest, close_mux, free_port
from .images import cache_root

REPO = Path(__file__).resolve().parents[1]
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
# libvirt re-probes qemu's capabilities on every domain define (30-70 s each here) while it
# runs qemu as an unprivileged user that cannot open /dev/kvm; as root the probe is cached.
QEMU_CONF_LINES = ('user = "root"', 'group = "root"')
LIBVIRT_URI = "qemu:///system"
MANAGEMENT_NETWORK = "vagrant-libvirt"
DAEMONS = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}
SLIRP_DNS = "10.0.2.3"
ISOLATION_ENV = "PODMAN_STANDARD_VAGRANT_ISOLATION"


class LabError(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaps counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _stop_pid(pid: int, timeout: float = 15) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Netns:
    """A network namespace with loopback up and NAT out through slirp4netns."""

    def __init__(self, name: str):
        self.name = name
        self.slirp: subprocess.Popen | None = None
        self.etc = Path("/etc/netns") / name  # `ip netns exec` binds these over /etc

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def start(self, timeout: float = 20) -> Netns:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text(f"nameserver {SLIRP_DNS}\n")
        self.slirp = subprocess.Popen(
            [
                "slirp4netns",
                "--configure",
                "--mtu=65520",
                "--netns-type=path",
                f"/run/netns/{self.name}",
                "tap0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            route = subprocess.run(
                ["ip", "-n", self.name, "route", "show", "default"], capture_output=True, text=True
            ).stdout
            if "tap0" in route:
                return self
            if self.slirp.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"slirp4netns did not configure tap0 in {self.name}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.slirp and self.slirp.poll() is None:
            self.slirp.terminate()
            self.slirp.wait(10)
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
        shutil.rmtree(self.etc, ignore_errors=True)


def ensure_qemu_conf(path: Path = QEMU_CONF) -> bool:
    """Make libvirt run qemu as root (see QEMU_CONF_LINES); True when the file was changed."""
    text = path.read_text()
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in QEMU_CONF_LINES if line not in present]
    if not missing:
        return False
    path.write_text(
        text.rstrip("\n") + "\n# podman-standard tests: qemu as root\n" + "\n".join(missing) + "\n"
    )
    return True


class Libvirtd:
    """virtlogd and libvirtd started by hand inside ``netns`` (no systemd on CI machines)."""

    def __init__(self, netns: Netns):
        self.netns = netns
        self.started: list[str] = []

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.netns.prefix(), "virsh", "-c", LIBVIRT_URI, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self, timeout: float = 60) -> Libvirtd:
        for daemon, pidfile in DAEMONS.items():
            if _pid(pidfile):
                raise LabError(
                    f"{daemon} already runs (pid {_pid(pidfile)}, outside this test's namespace): "
                    "stop it first; guests on its bridge would break the network rule"
                )
        ensure_qemu_conf()
        for daemon in DAEMONS:
            subprocess.run([*self.netns.prefix(), daemon, "-d"], check=True)
            self.started.append(daemon)
        deadline = time.monotonic() + timeout
        while self.virsh("list", check=False).returncode:
            if time.monotonic() > deadline:
                raise LabError("libvirtd did not answer on " + LIBVIRT_URI)
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Stop the management network's dnsmasq (its bridge dies with the namespace, its
        "active" state would not), then the daemons this object started."""
        if "libvirtd" in self.started:
            self.virsh("net-destroy", MANAGEMENT_NETWORK, check=False)
        for daemon in reversed(self.started):
            pid = _pid(DAEMONS[daemon])
            if pid:
                _stop_pid(pid)
        self.started.clear()


class NetnsVagrant(vagrant.Vagrant):
    """python-vagrant whose ``vagrant`` commands run inside a network namespace."""

    def __init__(self, netns: Netns, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.netns = netns

    def _make_vagrant_command(self, args):
        return [*self.netns.prefix(), *super()._make_vagrant_command(args)]


def vagrant_home() -> Path:
    """Vagrant's own state (added boxes) under the testbed cache: a box is added once."""
    return cache_root() / "vagrant.d"


def isolated() -> bool:
    """``PODMAN_STANDARD_VAGRANT_ISOLATION``: ``netns`` (default, as CI must: libvirtd of our
    own in a namespace of our own) or ``none`` (a workstation: its running libvirtd or
    VirtualBox and its own network, with the provider ``VAGRANT_DEFAULT_PROVIDER`` names)."""
    choice = os.environ.get(ISOLATION_ENV, "netns")
    if choice not in ("netns", "none"):
        raise ValueError(f"{ISOLATION_ENV} must be netns or none, not {choice!r}")
    return choice == "netns"


class NoNetns(Netns):
    """The machine's own network namespace: nothing to create, nothing to prefix."""

    def __init__(self):
        super().__init__("")

    def prefix(self) -> list[str]:
        return []

    def start(self, timeout: float = 0) -> Netns:
        return self

    def stop(self) -> None:
        pass


class Lab:
    """Namespace + libvirtd + vagrant on this repository's Vagrantfile.

    ``env`` holds the Vagrantfile's settings (box per VM, libvirt driver). ``close()`` destroys
    every VM of the Vagrantfile, then stops libvirtd and removes the namespace; it is safe to
    call after a failed ``start()``. Not ``isolated()``: no namespace, no libvirtd of its own.
    """

    def __init__(self, workdir: Path, env: dict[str, str], log=print):
        self.workdir = Path(workdir)
        self.isolated = isolated()
        self.netns = Netns(f"psvagrant-{os.getpid()}") if self.isolated else NoNetns()
        self.libvirtd = Libvirtd(self.netns)
        self.log = log
        self.provider = (
            "libvirt" if self.isolated else os.environ.get("VAGRANT_DEFAULT_PROVIDER", "libvirt")
        )
        self.env = {
            **os.environ,
            # Boxes added once, in the cache; a workstation keeps its own Vagrant home (where
            # its plugins are installed).
            **({"VAGRANT_HOME": str(vagrant_home())} if self.isolated else {}),
            "VAGRANT_DEFAULT_PROVIDER": self.provider,
            "VAGRANT_CHECKPOINT_DISABLE": "1",  # no update check: nothing outside is reachable
            # The lab's own machine state and libvirt domain names: VMs a user brought up from
            # this checkout are neither seen nor touched.
            "VAGRANT_DOTFILE_PATH": str(self.workdir / "dot-vagrant"),
            "PODMAN_STANDARD_LIBVIRT_PREFIX": f"{self.netns.name or 'podman-standard-test'}-",
            "VAGRANT_CWD": str(REPO),
            **env,
        }
        self.log_path = self.workdir / "vagrant.log"
        self.vagrant = NetnsVagrant(
            self.netns,
            root=str(REPO),
            env=self.env,
            out_cm=vagrant.make_file_cm(self.log_path),
            err_cm=vagrant.make_file_cm(self.log_path),
        )
        self.started = False

    def start(self) -> Lab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.started = True
        if self.isolated:
            self.netns.start()
            self.libvirtd.start()
        return self

    def add_box(self, name: str, path: Path) -> bool:
        """``vagrant box add`` unless a box of that name is already there; True if added."""
        if any(box.name == name for box in self.vagrant.box_list()):
            return False
        self.vagrant.box_add(name, str(path))
        return True

    def up(self, machine: str) -> None:
        try:
            self.vagrant.up(vm_name=machine, provider=self.provider)
        except subprocess.CalledProcessError as error:
            raise LabError(f"vagrant up {machine} failed:\n{self.log_tail()}") from error

    def ssh_config(self, machine: str) -> str:
        return self.vagrant.ssh_config(vm_name=machine)

    def run(
        self, command: list[str], timeout: float = 3600, **kwargs
    ) -> subprocess.CompletedProcess:
        """Run ``command`` inside the namespace, from the repository root, with the lab's env
        (so ``vagrant ssh-config`` in inventories/vagrant.py finds the same VMs)."""
        return subprocess.run(
            [*self.netns.prefix(), *command],
            cwd=REPO,
            env={**self.env, **kwargs.pop("env", {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def destroy(self, machine: str | None = None) -> None:
        self.vagrant.destroy(vm_name=machine)

    def close(self) -> None:
        try:
            if self.libvirtd.started or (self.started and not self.isolated):
                try:
                    self.destroy()
                except subprocess.CalledProcessError:
                    self.log(f"vagrant destroy failed:\n{self.log_tail()}")
                    if self.isolated:
                        self._destroy_domains()
        finally:
            self.libvirtd.stop()
            self.netns.stop()

    def _destroy_domains(self) -> None:
        """Last resort when vagrant could not destroy: remove this lab's domains with virsh."""
        listing = self.libvirtd.virsh("list", "--all", "--name", check=False).stdout
        dotfile = Path(self.env["VAGRANT_DOTFILE_PATH"])
        ids = {p.read_text().strip() for p in dotfile.glob("machines/*/libvirt/id")}
        for domain in filter(None, listing.split()):
            uuid = self.libvirtd.virsh("domuuid", domain, check=False).stdout.strip()
            if uuid in ids:
                self.libvirtd.virsh("destroy", domain, check=False)
                self.libvirtd.virsh("undefine", domain, "--remove-all-storage", check=False)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, indent=2) + "\n")
    return path


class Forward:
    """``127.0.0.1:port`` in the machine's namespace -> ``host:port`` inside ``netns``: one
    socat per forward, which runs one ``ip netns exec … socat`` per connection. Tools that run
    outside the namespace (pyinfra, testinfra, ssh) then reach a VM as they reach a qemu guest."""

    def __init__(self, netns: Netns, host: str, port: int):
        self.netns = netns
        self.target = (host, port)
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> Forward:
        inner = f"TCP\\:{self.target[0]}\\:{self.target[1]}"
        relay = (
            f"EXEC:{' '.join(self.netns.prefix())} socat STDIO {inner}"
            if self.netns.prefix()
            else f"TCP:{self.target[0]}:{self.target[1]}"
        )
        for _attempt in range(3):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    "socat",
                    f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork",
                    relay,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            if self.process.poll() is None:
                return self
        raise LabError(f"socat could not listen on 127.0.0.1 for {self.target}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class VagrantGuest:
    """A Vagrant VM seen as a testbed guest: SSH through its 127.0.0.1 forward, as
    ``vagrant`` with the key Vagrant generated for it."""

    def __init__(self, name: str, release: str, lab: Lab, options: dict[str, str]):
        self.name = name
        self.release = release
        self.lab = lab
        self.address = options["hostname"]
        self.forward = Forward(lab.netns, self.address, int(options.get("port", 22))).start()
        self.ssh_host = "127.0.0.1"
        self.ssh_port = self.forward.port
        self.ssh_user = options["user"]
        self.ssh_key = Path(options["identityfile"])

    ssh_command = Guest.ssh_command

    run = Guest.run  # same contract: a shell command as the SSH user, timeout -> exit 255
    boot_id = Guest.boot_id

    def diagnose(self, out=sys.stderr) -> None:
        out.write(f"--- {self.name}: vagrant log tail ({self.lab.log_path}) ---\n")
        out.write(self.lab.log_tail() + "\n")
        journal = self.run("sudo journalctl -b --no-pager | tail -200", timeout=60)
        if journal.returncode == 0:
            out.write(f"--- {self.name}: journalctl -b | tail -200 ---\n{journal.stdout}\n")

    def stop(self) -> None:
        close_mux(self)
        self.forward.stop()


def machines_for_specs(specs, boxes: dict) -> dict:
    """The machines file for a testbed's guests: the qemu testbed's names, groups and second
    disk, each on the box built from its release's image."""
    return {
        spec.name: {
            "family": f"Debian ({spec.release}, testbed box)",
            "box": boxes[spec.release].name,
            "groups": GROUPS[spec.role],
            "memory_mib": 2048,
            "cpus": 2,
            "space_disk_gib": EXTRA_DISK_GIB[spec.role],
            "space_device": {"libvirt": "/dev/vdb"},
            "data": {},
        }
        for spec in specs
    }


class VagrantTestbed(Testbed):
    """The testbed's guests as Vagrant VMs (``pytest --realhost --testbed=vagrant``): same
    names, groups, data and state file, so the real-host tests run unchanged. The VMs come
    from the repository's Vagrantfile, fed a machines file for the specs."""

    def _up(self) -> None:
        from .vagrant_box import build_box

        if not isolated():
            raise LabError(
                f"--testbed=vagrant needs {ISOLATION_ENV}=netns: the guests reach the testbed's "
                "registry (10.0.2.2) through the namespace's slirp4netns"
            )
        releases = sorted({spec.release for spec in self.specs})
        with self.timings.stage(f"vagrant box build ({', '.join(releases)})"):
            boxes = {release: build_box(release, self.log) for release in releases}
        if self._own_registry:
            with self.timings.stage("registry start + push"):
                self.registry.start()
                self.registry.push_testbed_images()
        self.workdir.mkdir(parents=True, exist_ok=True)
        machines = write_json(self.workdir / "machines.json", machines_for_specs(self.specs, boxes))
        self.lab = Lab(
            self.workdir / "vagrant",
            {
                "PODMAN_STANDARD_VAGRANT_MACHINES": str(machines),
                # Software emulation unless told (KVM hangs on CI machines).
                "PODMAN_STANDARD_LIBVIRT_DRIVER": os.environ.get(
                    "PODMAN_STANDARD_LIBVIRT_DRIVER", "qemu"
                ),
            },
            log=self.log,
        )
        with self.timings.stage("vagrant: netns + libvirtd start, box add"):
            self.lab.start()
            for box in boxes.values():
                self.lab.add_box(box.name, box.path)
        for spec in self.specs:
            with self.timings.stage(f"vagrant up {spec.name}"):
                self.lab.up(spec.name)
            options = parse_ssh_config(self.lab.ssh_config(spec.name))[spec.name]
            self.guests[spec.name] = VagrantGuest(spec.name, spec.release, self.lab, options)
        self.write_state()

    def runtime(self) -> dict:
        return {"workdir": str(self.workdir), "vagrant": "not detachable"}

    def checkpoint(self) -> dict:
        """No snapshot with Vagrant (yet): the shared VMs go on as they are, and the modules
        that boot converged hosts from a snapshot are skipped (see converged_testbed)."""
        return {}

    def detach(self) -> None:
        raise NotImplementedError("Vagrant testbeds live as long as the test session")

    def down(self) -> None:
        for guest in self.guests.values():
            guest.stop()
        lab = getattr(self, "lab", None)
        if lab:
            lab.close()
        if self._own_registry:
            self.registry.stop()
