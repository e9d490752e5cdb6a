"""Debian guest images for the real-host tier, built from Debian's own packages with debootstrap.

One image per release, cached under ``$PODMAN_STANDARD_CACHE/images/<release>-<recipe hash>/``:
the hash covers everything that decides the image's content, so editing the recipe builds a new
image and an unchanged recipe reuses the old one. Builds happen in a temporary directory that is
renamed into place only when complete, so an interrupted build is never reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
RELEASES = ("bookworm", "trixie")
DISK_SIZE = "6G"

# What debootstrap installs on top of minbase: enough for systemd to boot, sshd to answer, pyinfra
# (python3, sudo) to run and iproute2 for facts. libnss-myhostname resolves the per-guest hostname
# set on the kernel command line, so sudo does not warn "unable to resolve host" on every call.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "libnss-myhostname",
)
KERNEL_PACKAGE = "linux-image-cloud-amd64"

# Runs as root on the build machine with RELEASE, ROOT, OUT, MIRROR, PACKAGES, KERNEL, SOURCES and
# PUBKEY in its environment. Lines starting with "== " are progress markers shown to the user.
SCRIPT = r"""
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
in_root() { chroot "$ROOT" "$@"; }
cleanup() { for m in sys proc; do mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m"; done; true; }
trap cleanup EXIT

echo "== debootstrap $RELEASE (minbase + $PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" "$RELEASE" "$ROOT" "$MIRROR"

echo "== apt sources and kernel $KERNEL"
printf '%s\n' "$SOURCES" > "$ROOT/etc/apt/sources.list"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sys "$ROOT/sys"
# No service may start inside the build chroot.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
in_root apt-get update -q
in_root apt-get install -y -q --no-install-recommends "$KERNEL"
cp "$(ls "$ROOT"/boot/vmlinuz-* | tail -n1)" "$OUT/vmlinuz"
cp "$(ls "$ROOT"/boot/initrd.img-* | tail -n1)" "$OUT/initrd.img"
# The initrd is booted from outside the disk, so an initramfs rebuild in a guest is pure cost
# (about 7 minutes under TCG on the first apt-get install): make update-initramfs a no-op.
in_root dpkg-divert --local --rename --add /usr/sbin/update-initramfs
ln -s /bin/true "$ROOT/usr/sbin/update-initramfs"
rm -f "$ROOT/usr/sbin/policy-rc.d"
in_root apt-get clean

echo "== system configuration"
cat > "$ROOT/etc/fstab" <<'EOF'
/dev/vda / ext4 defaults,errors=remount-ro 0 1
EOF
mkdir -p "$ROOT/etc/systemd/network"
cat > "$ROOT/etc/systemd/network/20-wired.network" <<'EOF'
[Match]
Name=en*

[Network]
DHCP=yes
EOF
in_root systemctl enable systemd-networkd.service ssh.service
# qemu user-mode networking answers DNS on 10.0.2.3; apt in the guest needs it.
rm -f "$ROOT/etc/resolv.conf"
echo "nameserver 10.0.2.3" > "$ROOT/etc/resolv.conf"
# Timers that take the dpkg lock at random moments would make deploy runs flaky.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer
echo debian > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"

echo "== user vagrant, ssh keys, machine-id"
in_root useradd --create-home --shell /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$ROOT/etc/sudoers.d/vagrant"
chmod 440 "$ROOT/etc/sudoers.d/vagrant"
install -d -m 700 -o 1000 -g 1000 "$ROOT/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$PUBKEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
in_root ssh-keygen -A
# Empty, not missing: systemd writes a fresh id at first boot, so every guest gets its own.
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
cleanup

echo "== disk image ($DISK_SIZE ext4)"
mke2fs -q -t ext4 -L root -d "$ROOT" "$OUT/disk.raw" "$DISK_SIZE"
"""


@dataclass(frozen=True)
class ImagePaths:
    """A bootable guest image: its root disk, the kernel/initrd booted directly, and the SSH key.

    ``disk`` is the raw base image, or a qcow2 snapshot of a converged guest (``Guest.snapshot``);
    ``extra_disk`` is that snapshot's second disk, if the guest had one.
    """

    release: str
    disk: Path
    kernel: Path
    initrd: Path
    ssh_key: Path
    extra_disk: Path | None = None


def cache_root() -> Path:
    return Path(os.environ.get("PODMAN_STANDARD_CACHE", "/var/cache/podman-standard"))


def apt_sources(release: str) -> str:
    """sources.list for the guest: the release, its -updates and its security suite (every
    release in RELEASES is a stable release, which has all three)."""
    return "\n".join(
        [
            f"deb {MIRROR} {release} main",
            f"deb {MIRROR} {release}-updates main",
            f"deb {SECURITY_MIRROR} {release}-security main",
        ]
    )


def recipe(release: str) -> dict:
    """Everything that decides an image's content; its hash names the cache entry."""
    return {
        "release": release,
        "mirror": MIRROR,
        "packages": list(PACKAGES),
        "kernel": KERNEL_PACKAGE,
        "sources": apt_sources(release),
        "disk_size": DISK_SIZE,
        "script": SCRIPT,
    }


def recipe_key(release: str) -> str:
    blob = json.dumps(recipe(release), sort_keys=True).encode()
    return f"{release}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _paths(release: str, directory: Path) -> ImagePaths:
    return ImagePaths(
        release=release,
        disk=directory / "disk.raw",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        ssh_key=directory / "id_ed25519",
    )


def build_image(release: str, log=print) -> ImagePaths:
    """Return the cached image for ``release``, building it first if needed (root, minutes).

    Concurrent callers for the same release wait on a lock instead of building twice.
    """
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; known: {', '.join(RELEASES)}")
    key = recipe_key(release)
    images = cache_root() / "images"
    final = images / key
    images.mkdir(parents=True, exist_ok=True)
    with open(images / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "disk.raw").exists():
            log(f"[image {release}] cached: {final}")
            return _paths(release, final)
        for stale in images.glob(f"{key}.tmp-*"):
            _remove_tree(stale)
        work = images / f"{key}.tmp-{os.getpid()}"
        try:
            _build(release, work, log)
            os.rename(work, final)
        finally:
            if work.exists():
                _remove_tree(work)
    return _paths(release, final)


def _build(release: str, work: Path, log) -> None:
    started = time.monotonic()
    root = work / "rootfs"
    root.mkdir(parents=True)
    (work / "recipe.json").write_text(json.dumps(recipe(release), indent=2))
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"testbed-{release}",
            "-f",
            str(work / "id_ed25519"),
        ],
        check=True,
    )
    env = dict(
        os.environ,
        RELEASE=release,
        ROOT=str(root),
        OUT=str(work),
        MIRROR=MIRROR,
        PACKAGES=",".join(PACKAGES),
        KERNEL=KERNEL_PACKAGE,
        SOURCES=apt_sources(release),
        PUBKEY=str(work / "id_ed25519.pub"),
        DISK_SIZE=DISK_SIZE,
    )
    log(f"[image {release}] building in {work}")
    with open(work / "build.log", "w") as build_log:
        process = subprocess.Popen(
            ["bash", "-c", SCRIPT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in process.stdout:
            build_log.write(line)
            if line.startswith("== "):
                log(f"[image {release}] {time.monotonic() - started:6.0f}s {line[3:].rstrip()}")
        returncode = process.wait()
    if returncode:
        tail = (work / "build.log").read_text().splitlines()[-40:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise RuntimeError(f"image build for {release} failed (exit {returncode}), see log above")
    _remove_tree(root)  # the disk image holds it now; the tree is only 700 MB of duplicate
    log(f"[image {release}] {time.monotonic() - started:6.0f}s done")


def _remove_tree(path: Path) -> None:
    """Delete a build tree, first unmounting anything an interrupted build left mounted in it:
    deleting through a live /proc or /sys mount must never be attempted."""
    resolved = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted(points, key=len, reverse=True):
        if point == resolved or point.startswith(resolved + "/"):
            subprocess.run(["umount", "-l", point], check=True)
    shutil.rmtree(path)
