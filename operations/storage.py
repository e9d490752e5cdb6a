"""Storage paths (standard §2.4, §5.1 responsibility 4) and the dedicated storage device (§5.2)."""

from __future__ import annotations

import copy
import re
import uuid

from pyinfra import host, logger
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.operations import files

from facts.podman import PodmanInfo
from facts.storage import STORAGE_CONF, StorageConf, StorageDevice, StoreContents, fstab_entries
from operations import packages
from operations._common import put_file, render_toml

SOURCE = "operations/storage.py"
# We write STORAGE_CONF, the main file: every podman version reads it. Debian's podman (4.3
# and 5.4) ignores storage.conf.d, so the seed's 00-custom-storage.conf would be silently lost.
DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
# What the distributions' own storage.conf sets beyond the paths, kept when no storage.conf
# exists yet (on a fresh host the planning facts run before podman is installed).
DISTRO_DEFAULTS = {"storage": {"options": {"overlay": {"mountopt": "nodev"}}}}
MKFS_UUID_FLAG = {"ext4": "-U", "xfs": "-m"}
# Same package names in both families.
MKFS_PACKAGE = {"ext4": "e2fsprogs", "xfs": "xfsprogs"}


@operation()
def configure(
    graphroot: str = DEFAULT_GRAPHROOT,
    runroot: str = "/run/containers/storage",
    driver: str = "overlay",
    existing_store: str = "refuse",
    path: str = STORAGE_CONF,
):
    """
    Point rootful Podman's store at ``graphroot``/``runroot`` with ``driver``.

    + graphroot: persistent store (images, containers, volumes)
    + runroot: ephemeral runtime state
    + driver: overlay, or vfs for debugging
    + existing_store: when the graphroot changes while the current store still holds
      images, containers or volumes: ``refuse`` (OperationError, the default) or
      ``leave`` (switch, leaving the old store untouched on disk)

    Keeps every other setting of the storage.conf podman read before (the distro's
    defaults included). Never deletes or moves a store. Idempotent.
    """
    conf = host.get_fact(StorageConf)
    wanted = {"driver": driver, "graphroot": graphroot, "runroot": runroot}
    # Drop-ins are read by newer podman only: one that disagrees would make hosts differ
    # by podman version. We never edit a file we do not own; say which one to fix.
    conflicts = [
        p
        for p, d in conf.dropins.items()
        if any(d.get("storage", {}).get(k, v) != v for k, v in wanted.items())
    ]
    if conflicts:
        raise OperationError(
            f"{', '.join(conflicts)} set(s) other storage paths than {path}; podman versions "
            "that read storage.conf.d would use them. Remove them or make them agree."
        )
    current = dict((conf.main if conf.main_path else conf.vendor).get("storage", {}))
    if conf.main_path == path and all(current.get(k) == v for k, v in wanted.items()):
        host.noop(f"storage already uses {driver} at {graphroot} (runroot {runroot})")
        return

    info = host.get_fact(PodmanInfo)
    old_root = info.graph_root if info else current.get("graphroot", DEFAULT_GRAPHROOT)
    if old_root != graphroot:
        held = host.get_fact(StoreContents, graphroot=old_root)
        if held.exists and (held.images or held.containers or held.volumes):
            what = (
                f"{held.images} images, {held.containers} containers, "
                f"{held.volumes} volumes at {old_root}"
            )
            if existing_store != "leave":
                raise OperationError(
                    f"the current store holds {what}; refusing to switch graphroot to "
                    f"{graphroot} and orphan them. Move them (podman save/load, volume "
                    "export/import) or set podman_existing_store: leave to switch and keep "
                    "the old store on disk untouched."
                )
            logger.warning(f"{host.print_prefix}leaving {what} in the old store")

    doc = copy.deepcopy(conf.main or conf.vendor or DISTRO_DEFAULTS)
    doc.setdefault("storage", {}).update(wanted)
    exists = True if conf.main_path == path else None  # None: --diff reads it
    yield from put_file(render_toml(doc, SOURCE), path, "root", "root", "0644", exists=exists)


def _ere_escape(text: str) -> str:
    """``text`` as a literal in a POSIX extended regular expression (grep -E, sed -E)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


# nofail: a missing disk does not stop the boot (no emergency shell on a remote server).
# nofail alone also drops the mount's order before local-fs.target, so services, and the
# rootless users' managers (lingering users start early), could start before the disk is
# mounted and find their files missing; x-systemd.before= puts that order back (systemd.mount).
FSTAB_OPTIONS = "defaults,nofail,x-systemd.before=local-fs.target"


@operation()
def device(device: str, mount_point: str, fstype: str = "ext4", format_if_blank: bool = False):
    """
    Mount a dedicated storage device at ``mount_point`` (by UUID, in /etc/fstab).

    + device: block device, e.g. /dev/nvme1n1
    + mount_point: where it is mounted, e.g. /space
    + fstype: ext4 or xfs
    + format_if_blank: create the filesystem, but only when lsblk shows the device
      carries no filesystem signature at all

    Destructive only on a blank device and only when asked; a device holding another
    filesystem is never reformatted, and a mount point where another device is mounted is
    left alone (OperationError, nothing changed). Idempotent.
    """
    if fstype not in MKFS_UUID_FLAG:
        raise OperationError(f"unsupported fstype {fstype!r}: use ext4 or xfs")
    current = host.get_fact(StorageDevice, device=device, mount_point=mount_point)
    dev = current.device
    if dev is None:
        raise OperationError(f"storage device {device} does not exist on this host")

    mount = current.mount
    mounted = bool(mount) and mount.path_exists and mount.target == mount_point
    if mounted and mount_point not in dev.mountpoints:
        # Something else is mounted there (/var from the root disk, another disk): writing
        # our fstab line would swap it at the next boot, under what runs from it now.
        raise OperationError(
            f"{mount_point} is already the mount point of {mount.source} ({mount.fstype}), "
            f"not of {device}; refusing to format, mount or write /etc/fstab for it"
        )

    fs_uuid = dev.uuid
    if not dev.fstype:
        if not format_if_blank:
            raise OperationError(
                f"{device} has no filesystem; set format_if_blank: true to create {fstype} on it"
            )
        yield from packages.install._inner(packages=[MKFS_PACKAGE[fstype]], include_podman=False)
        # Chosen here so the fstab line can be written in the same run; stable per
        # host and device, so a re-planned run yields the same commands.
        fs_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"podman-standard:{host.name}:{device}"))
        flag = MKFS_UUID_FLAG[fstype]
        uuid_arg = fs_uuid if fstype == "ext4" else f"uuid={fs_uuid}"
        # wipefs -n re-checks for any signature at run time: never format a used disk.
        yield StringCommand(
            'test -z "$(wipefs -n',
            QuoteString(device),
            ')" &&',
            f"mkfs.{fstype}",
            "-q",
            flag,
            QuoteString(uuid_arg),
            QuoteString(device),
        )
    elif dev.fstype != fstype:
        raise OperationError(
            f"{device} holds a {dev.fstype} filesystem, not {fstype}; refusing to reformat it"
        )
    elif mount_point not in dev.mountpoints and any(dev.mountpoints):
        raise OperationError(
            f"{device} is mounted at {', '.join(dev.mountpoints)}, not {mount_point}"
        )

    fstab_line = f"UUID={fs_uuid} {mount_point} {fstype} {FSTAB_OPTIONS} 0 2"
    directory_ok = tuple(current.directory or ()) == ("directory", "root", "root", "0755")
    entries = fstab_entries(list(current.fstab), mount_point)
    if directory_ok and entries == [fstab_line] and mounted:
        host.noop(f"{device} is mounted at {mount_point} by UUID from /etc/fstab")
        return

    if not directory_ok:
        yield StringCommand(
            "mkdir -p --",
            QuoteString(mount_point),
            "&& chown root:root --",
            QuoteString(mount_point),
            "&& chmod 0755 --",
            QuoteString(mount_point),
        )
    if not entries:
        # Appended on a line of its own even when the file lacks a final newline.
        yield StringCommand(
            "f=/etc/fstab;",
            '[ ! -s "$f" ] || [ "$(tail -c1 "$f" | wc -l)" -eq 1 ] || echo >> "$f";',
            "echo",
            QuoteString(fstab_line),
            '>> "$f"',
        )
    elif entries != [fstab_line]:
        # Another device (or options) for this mount point: replaced in place by pyinfra.
        yield from files.line._inner(
            path="/etc/fstab",
            line=rf"^\S+\s+{_ere_escape(mount_point)}\s",
            replace=fstab_line,
            extended_regex=True,
        )
        if mounted:  # systemd's mount unit is generated from /etc/fstab
            yield StringCommand("systemctl daemon-reload")
    if not mounted:
        yield StringCommand("systemctl daemon-reload && mount", QuoteString(mount_point))
