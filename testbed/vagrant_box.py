"""A libvirt Vagrant box built from the testbed's Debian image, so Vagrant runs offline here.

The testbed image (``images.build_image``) is a bare ext4 filesystem booted with an external
kernel; a box must boot by itself, like the public ones. This wraps that filesystem, unchanged
but for the files below, into an MBR disk with GRUB for BIOS, without mounting anything (this
machine's kernel shows no partitions on loop devices):

- ``dd`` puts the filesystem at 1 MiB, ``sfdisk`` writes a partition table around it;
- ``debugfs -w`` replaces what differs from a qemu user-network guest: fstab by label,
  DHCP on any NIC name with the MAC as client id (vagrant-libvirt looks guests up by MAC in
  its dnsmasq leases), the DNS server of vagrant-libvirt's management network, and Vagrant's
  well-known insecure public key (Vagrant swaps it for a per-machine key at first ``up``);
- ``grub-mkimage`` (the build machine's grub-pc-bin) makes a core image whose embedded config
  boots ``/vmlinuz`` and ``/initrd.img`` (the kernel package's symlinks); ``boot.img``'s first
  440 bytes go to sector 0, the core image from sector 1.

Cached under ``$PODMAN_STANDARD_CACHE/boxes/<release>-<hash>/`` like the images: the hash covers
the image's recipe key, this recipe and the public key, and the build is renamed into place
only when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .images import build_image, cache_root, recipe_key

# Debian's vagrant package ships the insecure key pair Vagrant logs in with on first boot.
VAGRANT_PUBKEY_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
GRUB_MODULES = ("biosdisk", "part_msdos", "ext2", "linux", "boot", "normal", "echo")
PARTITION_OFFSET_MIB = 1
# vagrant-libvirt's default management network is 192.168.121.0/24 with dnsmasq on .1; the
# image has no resolver that would take the DHCP-provided server.
NAMESERVER = "192.168.121.1"
KERNEL_COMMAND_LINE = "root=LABEL=root ro console=tty0 console=ttyS0"

# path in the guest -> (content, mode, uid, gid)
GUEST_FILES = {
    "/etc/fstab": ("LABEL=root / ext4 defaults,errors=remount-ro 0 1\n", 0o644, 0, 0),
    "/etc/resolv.conf": (f"nameserver {NAMESERVER}\n", 0o644, 0, 0),
    "/etc/systemd/network/20-wired.network": (
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nClientIdentifier=mac\n",
        0o644,
        0,
        0,
    ),
}
AUTHORIZED_KEYS = "/home/vagrant/.ssh/authorized_keys"

GRUB_CONFIG = f"""set root=(hd0,msdos1)
linux /vmlinuz {KERNEL_COMMAND_LINE}
initrd /initrd.img
boot
"""

# Provider settings (driver, URI) belong to the project's Vagrantfile, not to the box.
BOX_VAGRANTFILE = 'Vagrant.configure("2") do |config|\nend\n'


@dataclass(frozen=True)
class Box:
    """A built box: ``path`` is the .box file, ``name`` what ``vagrant box add --name`` takes."""

    release: str
    name: str
    path: Path


def vagrant_pubkey() -> Path:
    found = sorted(Path("/").glob(VAGRANT_PUBKEY_GLOB.lstrip("/")))
    if not found:
        raise FileNotFoundError(f"Vagrant's insecure public key not found ({VAGRANT_PUBKEY_GLOB})")
    return found[-1]


def box_recipe(release: str, pubkey: str, variant: str = "bare") -> dict:
    return {
        "image": recipe_key(release, variant),
        "files": GUEST_FILES,
        "authorized_keys": pubkey,
        "grub_modules": list(GRUB_MODULES),
        "grub_config": GRUB_CONFIG,
        "offset_mib": PARTITION_OFFSET_MIB,
        "vagrantfile": BOX_VAGRANTFILE,
    }


def box_key(release: str, pubkey: str, variant: str = "bare") -> str:
    blob = json.dumps(box_recipe(release, pubkey, variant), sort_keys=True).encode()
    name = release if variant == "bare" else f"{release}-{variant}"
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def box_name(key: str) -> str:
    """The name the box is added under: one per recipe, so a changed recipe is a new box."""
    return f"podman-standard/{key}"


def build_box(release: str = "bookworm", log=print, variant: str = "bare") -> Box:
    """Return the cached box for ``release`` from its ``variant`` image (``images.VARIANTS``),
    building the image and then the box if needed."""
    pubkey = vagrant_pubkey().read_text()
    key = box_key(release, pubkey, variant)
    boxes = cache_root() / "boxes"
    final = boxes / key
    boxes.mkdir(parents=True, exist_ok=True)
    with open(boxes / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "package.box").exists():
            log(f"[box {release}] cached: {final}")
            return Box(release, box_name(key), final / "package.box")
        image = build_image(release, log, variant)
        for stale in boxes.glob(f"{key}.tmp-*"):
            shutil.rmtree(stale)
        work = boxes / f"{key}.tmp-{os.getpid()}"
        work.mkdir()
        try:
            _build(image.disk, pubkey, work, log, release)
            os.rename(work, final)
        finally:
            if work.exists():
                shutil.rmtree(work)
    return Box(release, box_name(key), final / "package.box")


def _run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def debugfs_script(files: dict[str, tuple[str, int, int, int]], sources: dict[str, Path]) -> str:
    """debugfs commands replacing each guest file by its source, with exact mode and owner."""
    lines = []
    for path, (_content, mode, uid, gid) in files.items():
        lines += [
            f"rm {path}",
            f"write {sources[path]} {path}",
            f"sif {path} mode 0{0o100000 | mode:o}",
            f"sif {path} uid {uid}",
            f"sif {path} gid {gid}",
        ]
    return "\n".join(lines) + "\n"


def _build(image_disk: Path, pubkey: str, work: Path, log, release: str) -> None:
    started = time.monotonic()
    (work / "recipe.json").write_text(json.dumps(box_recipe(release, pubkey), indent=2))
    fs = work / "root.ext4"
    log(f"[box {release}] copying the image's filesystem")
    _run("cp", "--sparse=always", str(image_disk), str(fs))

    files = dict(GUEST_FILES)
    files[AUTHORIZED_KEYS] = (pubkey, 0o600, 1000, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for index, (path, (content, *_)) in enumerate(files.items()):
            sources[path] = Path(tmp) / f"file{index}"
            sources[path].write_text(content)
        _run("debugfs", "-w", "-f", "-", str(fs), input=debugfs_script(files, sources))
    for path, (content, mode, uid, gid) in files.items():  # debugfs exits 0 on errors: check
        found = _run("debugfs", "-R", f"cat {path}", str(fs)).stdout
        stat = _run("debugfs", "-R", f"stat {path}", str(fs)).stdout
        if (
            found != content
            or f"Mode:  0{mode:o}" not in stat
            or f"User: {uid:5d}   Group: {gid:5d}" not in stat
        ):
            raise RuntimeError(f"box {release}: writing {path} into the image failed:\n{stat}")

    for path in ("/vmlinuz", "/initrd.img"):  # what GRUB_CONFIG boots
        if "Type: symlink" not in _run("debugfs", "-R", f"stat {path}", str(fs)).stdout:
            raise RuntimeError(f"box {release}: the image has no {path} link to boot")
    log(f"[box {release}] {time.monotonic() - started:6.0f}s partitioned disk with GRUB")
    disk = work / "disk.raw"
    fs_bytes = fs.stat().st_size
    offset = PARTITION_OFFSET_MIB * 1024 * 1024
    virtual_gib = -(-(offset + fs_bytes) // 1024**3)  # metadata.json wants whole GiB
    with open(disk, "wb") as handle:
        handle.truncate(virtual_gib * 1024**3)
    _run(
        "sfdisk",
        "--quiet",
        str(disk),
        input=f"start={offset // 512}, size={fs_bytes // 512}, type=83, bootable\n",
    )
    _run(
        "dd",
        f"if={fs}",
        f"of={disk}",
        "bs=1M",
        f"seek={PARTITION_OFFSET_MIB}",
        "conv=sparse,notrunc",
        "status=none",
    )
    fs.unlink()
    (work / "early.cfg").write_text(GRUB_CONFIG)
    core = work / "core.img"
    _run(
        "grub-mkimage",
        "-O",
        "i386-pc",
        "-d",
        str(GRUB_DIR),
        "-c",
        str(work / "early.cfg"),
        "-p",
        "(hd0,msdos1)/boot/grub",
        "-o",
        str(core),
        *GRUB_MODULES,
    )
    if core.stat().st_size > offset - 512:
        raise RuntimeError(f"GRUB core image ({core.stat().st_size} B) does not fit before 1 MiB")
    _run(
        "dd",
        f"if={GRUB_DIR / 'boot.img'}",
        f"of={disk}",
        "bs=440",
        "count=1",
        "conv=notrunc",
        "status=none",
    )
    _run("dd", f"if={core}", f"of={disk}", "bs=512", "seek=1", "conv=notrunc", "status=none")

    log(f"[box {release}] {time.monotonic() - started:6.0f}s qcow2 and box")
    _run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(disk), str(work / "box.img"))
    disk.unlink()
    (work / "metadata.json").write_text(
        json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_gib})
    )
    (work / "Vagrantfile").write_text(BOX_VAGRANTFILE)
    _run(
        "tar",
        "-C",
        str(work),
        "-cf",
        str(work / "package.box"),
        "metadata.json",
        "Vagrantfile",
        "box.img",
    )
    (work / "box.img").unlink()
    size = (work / "package.box").stat().st_size
    log(f"[box {release}] {time.monotonic() - started:6.0f}s done ({size / 2**20:.0f} MiB)")
