"""Container storage (§2.4, §5.2): storage.conf and its drop-ins, the filesystem under a path,
a block device, and what a graphroot already holds."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, section, split_sections

STORAGE_CONF = "/etc/containers/storage.conf"
# containers-storage.conf(5): used when /etc/containers/storage.conf does not exist.
VENDOR_STORAGE_CONF = "/usr/share/containers/storage.conf"
STORAGE_CONF_DROPINS = "/etc/containers/storage.conf.d"
_FILE = "file "


@dataclass(frozen=True)
class StorageConfState(FactValue):
    # STORAGE_CONF when it exists, else "".
    main_path: str = ""
    # Parsed STORAGE_CONF, or {}.
    main: dict[str, Any] = field(default_factory=dict)
    # Parsed VENDOR_STORAGE_CONF (the package's default), or {}.
    vendor: dict[str, Any] = field(default_factory=dict)
    # Parsed /etc/containers/storage.conf.d/*.conf by path.
    dropins: dict[str, dict[str, Any]] = field(default_factory=dict)
    # main (or vendor when there is no main) merged with the drop-ins in lexical order: what a
    # containers/storage that reads storage.conf.d would use. Podman 4.3 (Debian 12) and 5.4
    # (Debian 13) do NOT read storage.conf.d (checked on both): PodmanInfo tells what podman uses.
    effective: dict[str, Any] = field(default_factory=dict)
    # Files that exist but are not valid TOML: path -> parser message. They count as {}.
    errors: dict[str, str] = field(default_factory=dict)


class StorageConf(FactBase[StorageConfState]):
    """
    The system storage.conf, the vendor default and the drop-ins, each parsed with ``tomllib``.
    """

    @staticmethod
    def default() -> StorageConfState:
        return StorageConfState()

    def command(self) -> str:
        # Each file is framed by a marker; `echo` ends a file whose last line has no newline.
        return (
            f"for f in {STORAGE_CONF} {VENDOR_STORAGE_CONF} {STORAGE_CONF_DROPINS}/*.conf; do"
            f' [ -f "$f" ] || continue; echo "@@{_FILE}$f"; cat "$f"; echo; done; true'
        )

    def process(self, output: list[str]) -> StorageConfState:
        parsed: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for key, lines in split_sections(output).items():
            if not key.startswith(_FILE):
                continue
            path = key[len(_FILE) :]
            try:
                parsed[path] = tomllib.loads("\n".join(lines))
            except tomllib.TOMLDecodeError as error:
                errors[path] = str(error)
                parsed[path] = {}

        main_exists = STORAGE_CONF in parsed or STORAGE_CONF in errors
        dropins = {
            path: parsed[path]
            for path in sorted(parsed)
            if path.startswith(STORAGE_CONF_DROPINS + "/")
        }
        effective = parsed.get(STORAGE_CONF if main_exists else VENDOR_STORAGE_CONF, {})
        for content in dropins.values():
            effective = _merge(effective, content)
        return StorageConfState(
            main_path=STORAGE_CONF if main_exists else "",
            main=parsed.get(STORAGE_CONF, {}),
            vendor=parsed.get(VENDOR_STORAGE_CONF, {}),
            dropins=dropins,
            effective=effective,
            errors=errors,
        )


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value in ``override`` replaces the one in ``base``."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class PathMountState(FactValue):
    source: str
    target: str
    fstype: str
    avail_bytes: int
    size_bytes: int
    # False when the path does not exist yet: the mount is then that of its nearest existing
    # parent, i.e. where the path would be created.
    path_exists: bool = True


_MISSING = "@@missing"


class PathMount(FactBase["PathMountState | None"]):
    """
    The filesystem a path lives on, or would live on once created (``findmnt -T`` of the path or
    of its nearest existing parent). ``None`` only when findmnt answers nothing.
    """

    def requires_command(self, path: str) -> str:
        return "findmnt"

    def command(self, path: str) -> StringCommand:
        return StringCommand(
            StringCommand("p=", QuoteString(path), _separator=""),
            f"; [ -e \"$p\" ] || echo '{_MISSING}';",
            'while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done;',
            'findmnt --json -b -T "$p" -o SOURCE,TARGET,FSTYPE,AVAIL,SIZE || true',
        )

    def process(self, output: list[str]) -> PathMountState | None:
        missing = _MISSING in output
        filesystems = _json_object([line for line in output if line != _MISSING]).get("filesystems")
        if not filesystems:
            return None
        fs = filesystems[0]
        return PathMountState(
            source=fs.get("source") or "",
            target=fs.get("target") or "",
            fstype=fs.get("fstype") or "",
            avail_bytes=_int(fs.get("avail")),
            size_bytes=_int(fs.get("size")),
            path_exists=not missing,
        )


@dataclass(frozen=True)
class BlockDeviceState(FactValue):
    path: str
    fstype: str | None
    uuid: str | None
    mountpoints: list[str]
    size_bytes: int
    # Paths of partitions or holders lsblk lists under the device.
    children: list[str] = field(default_factory=list)


class BlockDevice(FactBase["BlockDeviceState | None"]):
    """
    A block device as ``lsblk --json`` sees it, or ``None`` when there is no such device.
    """

    def requires_command(self, device: str) -> str:
        return "lsblk"

    def command(self, device: str) -> StringCommand:
        # util-linux < 2.37 has no MOUNTPOINTS column: ask again for the single MOUNTPOINT;
        # < 2.33 (EL 8, Ubuntu 18.04) has no PATH column either: NAME with -p is the path.
        quoted = QuoteString(device)
        return StringCommand(
            "lsblk --json -b -o PATH,FSTYPE,UUID,MOUNTPOINTS,SIZE",
            quoted,
            "2>/dev/null || lsblk --json -b -o PATH,FSTYPE,UUID,MOUNTPOINT,SIZE",
            quoted,
            "2>/dev/null || lsblk --json -b -p -o NAME,FSTYPE,UUID,MOUNTPOINT,SIZE",
            quoted,
            "2>/dev/null || true",
        )

    def process(self, output: list[str]) -> BlockDeviceState | None:
        devices = _json_object(output).get("blockdevices") or []
        if not devices:
            return None
        dev = devices[0]
        if "mountpoints" in dev:
            mountpoints = dev.get("mountpoints") or []
        else:
            mountpoints = [dev.get("mountpoint")]
        return BlockDeviceState(
            path=dev.get("path") or dev.get("name") or "",
            fstype=dev.get("fstype") or None,
            uuid=dev.get("uuid") or None,
            # lsblk lists [null] for a device mounted nowhere.
            mountpoints=[m for m in mountpoints if m],
            size_bytes=_int(dev.get("size")),
            children=[
                child.get("path") or child.get("name") or "" for child in dev.get("children") or []
            ],
        )


def _json_object(output: list[str]) -> dict[str, Any]:
    """The first JSON object in the output (a failed first try may have printed one already)."""
    text = "\n".join(output).strip()
    try:
        data, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _int(value: Any) -> int:
    # Older util-linux prints sizes as strings even with -b.
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# containers/storage keeps one JSON index per driver; libpod keeps named volumes in volumes/.
STORE_INDEXES = {
    "overlay-images/images.json": "images",
    "overlay-containers/containers.json": "containers",
    "vfs-images/images.json": "images",
    "vfs-containers/containers.json": "containers",
}


@dataclass(frozen=True)
class StoreContentsState(FactValue):
    exists: bool = False
    images: int = 0
    containers: int = 0
    volumes: int = 0
    # Storage drivers with an index in this graphroot, e.g. ["overlay"].
    drivers: list[str] = field(default_factory=list)


class StoreContents(FactBase[StoreContentsState]):
    """
    How many images, containers and volumes a graphroot holds, read from containers/storage's
    own index files (so it works for a graphroot podman is not configured to use).
    """

    @staticmethod
    def default() -> StoreContentsState:
        return StoreContentsState()

    def command(self, graphroot: str) -> StringCommand:
        indexes = " ".join(STORE_INDEXES)
        return StringCommand(
            StringCommand("g=", QuoteString(graphroot), _separator=""),
            '; if [ -d "$g" ]; then',
            section("exists"),
            f"for f in {indexes}; do",
            '[ -f "$g/$f" ] || continue; echo "@@file $f"; cat "$g/$f"; echo; done;',
            section("volumes"),
            # One directory per volume; podman 4 also keeps a backingFsBlockDev node there.
            "find \"$g/volumes\" -mindepth 1 -maxdepth 1 -type d -printf '%f\\n' 2>/dev/null;",
            "fi; true",
        )

    def process(self, output: list[str]) -> StoreContentsState:
        sections = split_sections(output)
        if "exists" not in sections:
            return StoreContentsState()
        counts = {"images": 0, "containers": 0}
        drivers = []
        for index, kind in STORE_INDEXES.items():
            lines = sections.get(_FILE + index)
            if lines is None:
                continue
            driver = index.split("-", 1)[0]
            if driver not in drivers:
                drivers.append(driver)
            try:
                entries = json.loads("\n".join(lines) or "[]")
            except ValueError:
                continue
            counts[kind] += len(entries) if isinstance(entries, list) else 0
        return StoreContentsState(
            exists=True,
            images=counts["images"],
            containers=counts["containers"],
            volumes=len([line for line in sections.get("volumes", []) if line]),
            drivers=drivers,
        )


@dataclass(frozen=True)
class StorageDeviceState(FactValue):
    # BlockDevice's value for the device (None: no such device).
    device: BlockDeviceState | None
    # PathMount's value for the mount point.
    mount: PathMountState | None
    # ``stat`` of the mount point: file type ("directory", ...), owner, group, octal mode;
    # None when it does not exist.
    directory: tuple[str, str, str, str] | None
    # /etc/fstab's lines as they are ([] when there is none).
    fstab: list[str] = field(default_factory=list)


def fstab_entries(fstab: list[str], mount_point: str) -> list[str]:
    """The lines of an fstab whose second field is ``mount_point`` (comments skipped)."""
    entries = []
    for line in fstab:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[1] == mount_point:
            entries.append(line)
    return entries


class StorageDevice(FactBase[StorageDeviceState]):
    """
    Everything ``operations.storage.device`` checks, in one round trip: the device
    (``BlockDevice``), the mount point's type/owner/group/mode, /etc/fstab and the filesystem
    the mount point is on (``PathMount``). A converged host is then a single command.
    """

    def requires_command(self, device: str, mount_point: str) -> str:
        return "lsblk"

    def command(self, device: str, mount_point: str) -> StringCommand:
        return StringCommand(
            section("device"),
            BlockDevice().command(device),
            ";",
            section("directory"),
            "stat -c '%F|%U|%G|%a' --",
            QuoteString(mount_point),
            "2>/dev/null;",
            section("fstab"),
            "cat /etc/fstab 2>/dev/null;",
            section("mount"),
            PathMount().command(mount_point),
        )

    def process(self, output: list[str]) -> StorageDeviceState:
        sections = split_sections(output)
        directory = None
        stat = [line for line in sections.get("directory", []) if line.count("|") == 3]
        if stat:
            kind, owner, group, mode = stat[0].split("|")
            directory = (kind, owner, group, mode.zfill(4))
        mount = sections.get("mount", [])
        if "missing" in sections:  # PathMount's own marker line: the mount point does not exist
            mount = mount + [_MISSING] + sections["missing"]
        return StorageDeviceState(
            device=BlockDevice().process(sections.get("device", [])),
            mount=PathMount().process(mount),
            directory=directory,
            fstab=list(sections.get("fstab", [])),
        )
