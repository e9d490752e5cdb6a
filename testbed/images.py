"""Debian guest images for the real-host tier, built from Debian's own packages with debootstrap.

Each release has variants (``VARIANTS``), each cached under
``$PODMAN_STANDARD_CACHE/images/<release>[-<variant>]-<recipe hash>/``:

- ``bare``: debootstrap's minbase plus what booting, SSH and pyinfra need. The modules that prove
  the install itself (the baseline's first converge on each release, the first-converge
  benchmark) boot this.
- ``podman``: ``bare`` plus the Podman toolset exactly as ``operations.packages.install`` installs
  it on the Debian family (the same table, ``PODMAN_PACKAGES``), installed natively in the build
  chroot: seconds here, minutes of apt under emulation in a guest.
- ``docker``: ``podman`` plus Debian's docker.io and docker-compose, for the Docker -> Podman
  migration: only the migration itself then runs under emulation.
- ``selinux``: ``podman`` plus Debian's SELinux policy (refpolicy, which has the container
  module: ``container_t``, ``container_var_lib_t``, ``container_ro_file_t``) and its tools, the
  tree labelled at build time (``setfiles``; mke2fs copies the labels into the disk) and booted
  with SELinux as the kernel's security module (``KERNEL_ARGS``): an SELinux host without the
  relabelling boot.

A variant is built from a copy of its base's root tree (kept in the base's cache entry), so
debootstrap runs once per release. The hash covers everything that decides the image's content
(the base's key included), so editing a recipe builds a new image and an unchanged recipe reuses
the old one. Builds happen in a temporary directory that is renamed into place only when
complete, so an interrupted build is never reused.
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

from operations.packages import PODMAN_PACKAGES

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

# variant -> (base variant, packages installed on top). apparmor: a Recommends of docker.io;
# the guest kernel has AppArmor on, and dockerd starts no container without apparmor_parser.
# docker-compose: Debian's own (1.29 on Debian 12, Python), whose containers carry compose v1's
# labels (no depends_on label): the migration's compose-stack case.
VARIANTS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "bare": (None, ()),
    "podman": ("bare", tuple(PODMAN_PACKAGES["debian"])),
    "docker": ("podman", ("docker.io", "apparmor", "docker-compose")),
    "selinux": (
        "podman",
        (
            "selinux-policy-default",
            "selinux-utils",
            "policycoreutils",
            "policycoreutils-python-utils",
        ),
    ),
}
# Run in the chroot after a variant's packages (ROOT set), before the disk image is made.
# selinux: permissive from /etc/selinux/config, as Debian's selinux-activate leaves a host
# (refpolicy denies parts of Debian 13's boot, systemd-networkd's among them: enforcing from
# the first instant, a guest may come up without its network); a test switches to enforcing
# with setenforce. The labels are the policy's for every file, written as xattrs that mke2fs -d
# copies into the image.
VARIANT_FINISH = {
    "selinux": r"""echo "== SELinux: permissive in /etc/selinux/config, tree labelled (setfiles)"
printf 'SELINUX=permissive\nSELINUXTYPE=default\n' > "$ROOT/etc/selinux/config"
in_root setfiles -F /etc/selinux/default/contexts/files/file_contexts /
python3 -c 'import os, sys; print(sys.argv[1], os.getxattr(sys.argv[1], "security.selinux"))' \
    "$ROOT/etc/shadow"
""",
}
# Kernel command line an image needs beyond the testbed's own (Guest._qemu_command).
KERNEL_ARGS = {"selinux": "security=selinux selinux=1"}

# The start of every build script: strict bash, a chroot helper, /proc and /sys unmounted on exit.
CHROOT_PREAMBLE = r"""
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
in_root() { chroot "$ROOT" "$@"; }
cleanup() { for m in sys proc; do mountpoint -q "$ROOT/$m" && umount -l "$ROOT/$m"; done; true; }
trap cleanup EXIT
"""
# PACKAGES installed natively in the ROOT chroot, no service starting (policy-rc.d).
CHROOT_INSTALL = r"""mount -t proc proc "$ROOT/proc"
mount -t sysfs sys "$ROOT/sys"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
echo "== apt-get install $PACKAGES (natively, in the chroot)"
in_root apt-get update -q
# shellcheck disable=SC2086  # a list of package names
in_root apt-get install -y -q --no-install-recommends $PACKAGES
rm -f "$ROOT/usr/sbin/policy-rc.d"
"""

# Runs as root on the build machine with RELEASE, ROOT, OUT, MIRROR, PACKAGES, KERNEL, SOURCES and
# PUBKEY in its environment. Lines starting with "== " are progress markers shown to the user.
SCRIPT = (
    CHROOT_PREAMBLE
    + r"""
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
)

# A variant: its base's root tree, plus PACKAGES installed natively in the chroot (no service
# starts: policy-rc.d; units the packages enable start at the guest's first boot). Runs with
# BASE_ROOT, ROOT, OUT, PACKAGES and DISK_SIZE in its environment.
VARIANT_SCRIPT = (
    CHROOT_PREAMBLE
    + r"""
echo "== copy of the base root tree"
cp -a "$BASE_ROOT/." "$ROOT/"
"""
    + CHROOT_INSTALL
    + r"""in_root apt-get clean
cleanup
eval "$FINISH"

echo "== disk image ($DISK_SIZE ext4)"
mke2fs -q -t ext4 -L root -d "$ROOT" "$OUT/disk.raw" "$DISK_SIZE"
"""
)


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
    # Kernel command line the image needs beyond the testbed's own (KERNEL_ARGS).
    kernel_args: str = ""


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


def recipe(release: str, variant: str = "bare") -> dict:
    """Everything that decides an image's content; its hash names the cache entry."""
    base, packages = _variant(variant)
    if base is not None:
        return {
            "base": recipe_key(release, base),
            "packages": list(packages),
            "disk_size": DISK_SIZE,
            "script": VARIANT_SCRIPT,
            **({"finish": VARIANT_FINISH[variant]} if variant in VARIANT_FINISH else {}),
            **({"kernel_args": KERNEL_ARGS[variant]} if variant in KERNEL_ARGS else {}),
        }
    return {
        "release": release,
        "mirror": MIRROR,
        "packages": list(PACKAGES),
        "kernel": KERNEL_PACKAGE,
        "sources": apt_sources(release),
        "disk_size": DISK_SIZE,
        "script": SCRIPT,
    }


def recipe_key(release: str, variant: str = "bare") -> str:
    blob = json.dumps(recipe(release, variant), sort_keys=True).encode()
    name = release if variant == "bare" else f"{release}-{variant}"
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _variant(variant: str) -> tuple[str | None, tuple[str, ...]]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown image variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _paths(release: str, directory: Path) -> ImagePaths:
    cmdline = directory / "cmdline"
    return ImagePaths(
        release=release,
        disk=directory / "disk.raw",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        ssh_key=directory / "id_ed25519",
        kernel_args=cmdline.read_text().strip() if cmdline.exists() else "",
    )


def build_image(release: str, log=print, variant: str = "bare") -> ImagePaths:
    """Return the cached ``variant`` image for ``release``, building it (and its base) first if
    needed (root, minutes).

    Concurrent callers for the same image wait on a lock instead of building twice.
    """
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; known: {', '.join(RELEASES)}")
    base_variant, packages = _variant(variant)
    base = build_image(release, log, base_variant) if base_variant else None
    key = recipe_key(release, variant)
    label = release if variant == "bare" else f"{release}-{variant}"

    def build(work: Path) -> None:
        if base is None:
            _build(release, work, log, label)
        else:
            _build_variant(release, variant, base, packages, work, log, label)

    def ready(entry: Path) -> bool:
        # An entry of an older layout (without the root tree) is rebuilt.
        return (entry / "disk.raw").exists() and (entry / "rootfs").is_dir()

    return _paths(release, cached("images", key, ready, build, log, f"image {label}"))


def cached(kind: str, key: str, ready, build, log=print, label: str = "") -> Path:
    """The cache entry ``$PODMAN_STANDARD_CACHE/<kind>/<key>/``: returned as it is when
    ``ready(entry)``, else made by ``build(work)`` in a temporary directory that is renamed into
    place only when complete, so an interrupted build is never reused. Concurrent callers for
    one entry wait on its lock instead of building twice."""
    root = cache_root() / kind
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready(final):
            log(f"[{label or key}] cached: {final}")
            return final
        for stale in [*root.glob(f"{key}.tmp-*"), *([final] if final.exists() else [])]:
            _remove_tree(stale)
        work = root / f"{key}.tmp-{os.getpid()}"
        try:
            build(work)
            os.rename(work, final)
        finally:
            if work.exists():
                _remove_tree(work)
    return final


def _build_variant(
    release: str,
    variant: str,
    base: ImagePaths,
    packages: tuple[str, ...],
    work: Path,
    log,
    label: str,
) -> None:
    """``base``'s tree plus ``packages``; kernel, initrd and SSH key are the base's."""
    work.mkdir(parents=True)
    (work / "recipe.json").write_text(json.dumps(recipe(release, variant), indent=2))
    base_dir = base.disk.parent
    for name in ("vmlinuz", "initrd.img", "id_ed25519", "id_ed25519.pub"):
        shutil.copy2(base_dir / name, work / name)
    env = dict(
        os.environ,
        BASE_ROOT=str(base_dir / "rootfs"),
        ROOT=str(work / "rootfs"),
        OUT=str(work),
        PACKAGES=" ".join(packages),
        DISK_SIZE=DISK_SIZE,
        FINISH=VARIANT_FINISH.get(variant, ""),
    )
    (work / "rootfs").mkdir()
    if variant in KERNEL_ARGS:
        (work / "cmdline").write_text(KERNEL_ARGS[variant] + "\n")
    _run_script(VARIANT_SCRIPT, env, work, log, label)


def _build(release: str, work: Path, log, label: str) -> None:
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
    _run_script(SCRIPT, env, work, log, label)


def _run_script(script: str, env: dict, work: Path, log, label: str) -> None:
    """Run a build script, its progress markers shown as they come, its output in build.log.
    The root tree stays in the entry: variants are built from a copy of it."""
    started = time.monotonic()
    log(f"[image {label}] building in {work}")
    with open(work / "build.log", "w") as build_log:
        process = subprocess.Popen(
            ["bash", "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in process.stdout:
            build_log.write(line)
            if line.startswith("== "):
                log(f"[image {label}] {time.monotonic() - started:6.0f}s {line[3:].rstrip()}")
        returncode = process.wait()
    if returncode:
        tail = (work / "build.log").read_text().splitlines()[-40:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise RuntimeError(f"image build for {label} failed (exit {returncode}), see log above")
    log(f"[image {label}] {time.monotonic() - started:6.0f}s done")


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
