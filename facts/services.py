"""Services as systemd runs them (§3.1, §7.2): the quadlet generator, a unit's state, volumes."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, section, split_sections
from .compose import as_user
from .files import ManagedFileState, file_probe, file_state

# Where distributions install podman's quadlet generator (Fedora and Debian: libexec; Arch:
# lib). /usr/lib/systemd/system-generators/podman-system-generator links to it.
QUADLET_PATHS = ("/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet")
UNIT_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "FragmentPath",
    "SourcePath",
)
_UNREACHABLE = "@@systemd-unreachable"


class Quadlet(FactBase["str | None"]):
    """Path of podman's quadlet generator, or ``None`` when this podman has none (< 4.4)."""

    def command(self) -> str:
        candidates = " ".join(QUADLET_PATHS)
        return f'for q in {candidates}; do if [ -x "$q" ]; then echo "$q"; break; fi; done; true'

    def process(self, output: list[str]) -> str | None:
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else None


@dataclass(frozen=True)
class SystemdUnitState(FactValue):
    # systemctl's words: loaded/not-found, active/inactive/failed/activating, enabled/
    # disabled/generated (quadlet) or "" when no unit file exists.
    load_state: str = "not-found"
    active_state: str = "inactive"
    sub_state: str = "dead"
    unit_file_state: str = ""
    fragment_path: str = ""
    # Set for generated units: the quadlet file the unit came from.
    source_path: str = ""
    # False when the (user's) service manager could not be reached; the rest is then default.
    reachable: bool = True
    # systemd's id of the unit's current (or last) run: a new one after each (re)start.
    invocation_id: str = ""


class SystemdUnit(FactBase[SystemdUnitState]):
    """
    ``systemctl show`` of one unit, in the system manager or (``user``) in that user's manager
    (reached as root with ``--user --machine=USER@.host``; it runs while the user lingers).
    """

    def requires_command(self, unit: str, user: str | None = None) -> str:
        return "systemctl"

    @staticmethod
    def default() -> SystemdUnitState:
        return SystemdUnitState()

    def command(self, unit: str, user: str | None = None) -> str:
        scope = f"--user --machine={shlex.quote(user + '@.host')} " if user else ""
        props = ",".join(UNIT_PROPERTIES)
        return (
            f"systemctl {scope}show --property={props} {shlex.quote(unit)} 2>/dev/null"
            f" || echo '{_UNREACHABLE}'"
        )

    def process(self, output: list[str]) -> SystemdUnitState:
        if any(line.startswith(_UNREACHABLE) for line in output):
            return SystemdUnitState(reachable=False)
        return _unit_state(dict(line.split("=", 1) for line in output if "=" in line))


def _unit_state(props: dict[str, str]) -> SystemdUnitState:
    return SystemdUnitState(
        load_state=props.get("LoadState", "not-found"),
        active_state=props.get("ActiveState", "inactive"),
        sub_state=props.get("SubState", "dead"),
        unit_file_state=props.get("UnitFileState", ""),
        fragment_path=props.get("FragmentPath", ""),
        source_path=props.get("SourcePath", ""),
        invocation_id=props.get("InvocationID", ""),
    )


class PodmanVolumes(FactBase[list[str]]):
    """
    Names of podman's named volumes, rootful or (``user``) in that user's store (run as the
    user with its runtime directory, as its systemd would).
    """

    def requires_command(self, user: str | None = None) -> str:
        return "podman"

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, user: str | None = None) -> str:
        ls = "podman volume ls --format json"
        if not user:
            return ls
        u = shlex.quote(user)
        # From / : the connecting user's working directory may be closed to this user.
        return f'cd / && runuser -u {u} -- env XDG_RUNTIME_DIR="/run/user/$(id -u {u})" {ls}'

    def process(self, output: list[str]) -> list[str]:
        text = "\n".join(output).strip()
        volumes = json.loads(text) if text else []
        return sorted(v["Name"] for v in volumes or [])


class PodmanNetworks(FactBase[list[str]]):
    """
    Names of podman's networks, rootful or (``user``) in that user's store (run as the user
    with its runtime directory). Includes podman's default network (``podman``).
    """

    def requires_command(self, user: str | None = None) -> str:
        return "podman"

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, user: str | None = None) -> str:
        return as_user(user, "podman network ls --format '{{.Name}}'")

    def process(self, output: list[str]) -> list[str]:
        return sorted(line.strip() for line in output if line.strip())


# ---------------------------------------------------------------------------------------------
# Everything the services of a host need, in ONE command (however many services and users).

# systemctl show's properties read per unit: Id keys the blocks (one per unit, in argument
# order, blank-line separated); InvocationID tells a restart.
STATE_PROPERTIES = ("Id", *UNIT_PROPERTIES, "InvocationID")
_PODMAN, _QUADLET, _FILE, _DIR, _RECORD = "podman", "quadlet", "file ", "dir ", "record "
_UNITS, _CONTAINERS, _IMAGES = "units ", "containers ", "images "
# The scope key of root's systemd and store in the sections below (a user name otherwise).
ROOT_SCOPE = "-"
# Printed inside a units section when that manager cannot be reached (not a section marker).
_NO_MANAGER = "systemd-unreachable"


@dataclass(frozen=True)
class DirectoryState(FactValue):
    # "dir", "other" (exists, not a directory) or "absent".
    kind: str
    user: str | None = None
    group: str | None = None
    mode: str | None = None  # permission bits in octal, e.g. "750"


@dataclass(frozen=True)
class ContainerState(FactValue):
    name: str
    image_id: str
    image: str  # the reference it was created from
    state: str  # podman's: running, exited, created ...


@dataclass(frozen=True)
class ImageState(FactValue):
    id: str
    names: tuple[str, ...] = ()  # repository:tag references
    digest: str = ""  # the manifest digest podman recorded when it pulled the image


@dataclass(frozen=True)
class ScopeState(FactValue):
    """One systemd manager and podman store: root's or a rootless user's."""

    reachable: bool = True  # False: the user's systemd could not be reached
    units: dict[str, SystemdUnitState] = field(default_factory=dict)
    containers: dict[str, ContainerState] = field(default_factory=dict)
    images: tuple[ImageState, ...] = ()


@dataclass(frozen=True)
class ServicesStateValue(FactValue):
    podman_version: str | None = None  # None: podman is not installed
    quadlet: str | None = None  # path of the quadlet generator, None before podman 4.4
    files: dict[str, ManagedFileState] = field(default_factory=dict)
    dirs: dict[str, DirectoryState] = field(default_factory=dict)
    records: dict[str, str | None] = field(default_factory=dict)  # content, None if absent
    scopes: dict[str, ScopeState] = field(default_factory=dict)  # ROOT_SCOPE or a user

    def file(self, path: str) -> ManagedFileState:
        return self.files.get(path, ManagedFileState("absent"))

    def dir(self, path: str) -> DirectoryState:
        return self.dirs.get(path, DirectoryState("absent"))

    def scope(self, user: str | None) -> ScopeState:
        return self.scopes.get(user or ROOT_SCOPE, ScopeState())

    def unit(self, name: str, user: str | None = None) -> SystemdUnitState:
        scope = self.scope(user)
        if not scope.reachable:
            return SystemdUnitState(reachable=False)
        return scope.units.get(name, SystemdUnitState())

    def container(self, name: str, user: str | None = None) -> ContainerState | None:
        return self.scope(user).containers.get(name)

    @classmethod
    def from_json(cls, data: dict) -> ServicesStateValue:
        """The value from its ``to_json`` form (the operations' test cases write it so)."""
        scopes = {
            key: ScopeState(
                reachable=s.get("reachable", True),
                units={n: SystemdUnitState(**u) for n, u in s.get("units", {}).items()},
                containers={n: ContainerState(**c) for n, c in s.get("containers", {}).items()},
                images=tuple(
                    ImageState(i["id"], tuple(i.get("names", ())), i.get("digest", ""))
                    for i in s.get("images", ())
                ),
            )
            for key, s in data.get("scopes", {}).items()
        }
        return cls(
            podman_version=data.get("podman_version"),
            quadlet=data.get("quadlet"),
            files={p: ManagedFileState(**f) for p, f in data.get("files", {}).items()},
            dirs={p: DirectoryState(**d) for p, d in data.get("dirs", {}).items()},
            records=dict(data.get("records", {})),
            scopes=scopes,
        )


class ServicesState(FactBase[ServicesStateValue]):
    """
    The state of every declared service of a host in one command: the podman version and
    quadlet generator; owner, group, mode and SHA-1 of ``files`` (unit files, secrets files,
    managed files); owner, group and mode of ``dirs``; the content of ``records`` (small
    state files); ``systemctl show`` of ``units`` in root's manager and of ``user_units`` in
    each user's (as root, ``--user --machine=USER@.host``); the containers (with their image
    ids) and images of root's store (when ``units`` is not empty) and of each user's.
    """

    @staticmethod
    def default() -> ServicesStateValue:
        return ServicesStateValue()

    def command(
        self,
        files: list[str],
        dirs: list[str],
        records: list[str],
        units: list[str],
        user_units: dict[str, list[str]],
    ) -> StringCommand:
        parts: list = [
            section(_PODMAN),
            "if command -v podman >/dev/null 2>&1; then podman --version; fi;",
            section(_QUADLET),
            Quadlet().command(),
            ";",
        ]
        parts += [p for path in files for p in file_probe(path)]
        for path in dirs:
            parts += [
                StringCommand("echo", QuoteString(f"@@{_DIR}{path}"), ";", _separator=" "),
                StringCommand("p=", QuoteString(path), _separator=""),
                '; if [ -d "$p" ] && [ ! -L "$p" ]; then echo dir; stat -c "%U %G %a" -- "$p";',
                'elif [ -e "$p" ] || [ -L "$p" ]; then echo other; else echo absent; fi;',
            ]
        for path in records:
            parts += [
                StringCommand("echo", QuoteString(f"@@{_RECORD}{path}"), ";", _separator=" "),
                StringCommand("p=", QuoteString(path), _separator=""),
                '; if [ -f "$p" ]; then echo present; cat -- "$p"; fi;',
            ]
        scopes = ([(None, units)] if units else []) + sorted(user_units.items())
        props = ",".join(STATE_PROPERTIES)
        for user, names in scopes:
            key = user or ROOT_SCOPE
            manager = f"--user --machine={shlex.quote(user + '@.host')} " if user else ""
            listed = " ".join(shlex.quote(n) for n in names)
            parts += [
                section(_UNITS + key),
                f"systemctl {manager}show --property={props} {listed} 2>/dev/null"
                f" || echo '{_NO_MANAGER}';",
                section(_CONTAINERS + key),
                f"if command -v podman >/dev/null 2>&1; then {as_user(user, PS)}; fi;",
                section(_IMAGES + key),
                f"if command -v podman >/dev/null 2>&1; then {as_user(user, IMAGES)}; fi;",
            ]
        return StringCommand(*parts, "true")

    def process(self, output: list[str]) -> ServicesStateValue:
        sections = split_sections(output)
        version = None
        for line in sections.get(_PODMAN, []):
            words = line.split()
            if len(words) >= 3 and words[0] == "podman" and words[1] == "version":
                version = words[2]
        quadlet = Quadlet().process(sections.get(_QUADLET, []))
        files: dict[str, ManagedFileState] = {}
        dirs: dict[str, DirectoryState] = {}
        records: dict[str, str | None] = {}
        scopes: dict[str, dict] = {}
        for key, lines in sections.items():
            if key.startswith(_FILE):
                files[key[len(_FILE) :]] = file_state(lines)
            elif key.startswith(_DIR):
                dirs[key[len(_DIR) :]] = _directory_state(lines)
            elif key.startswith(_RECORD):
                text = "".join(f"{x}\n" for x in lines[1:])
                records[key[len(_RECORD) :]] = text if lines[:1] == ["present"] else None
            elif key.startswith(_UNITS):
                scopes.setdefault(key[len(_UNITS) :], {})["units"] = lines
            elif key.startswith(_CONTAINERS):
                scopes.setdefault(key[len(_CONTAINERS) :], {})["containers"] = lines
            elif key.startswith(_IMAGES):
                scopes.setdefault(key[len(_IMAGES) :], {})["images"] = lines
        return ServicesStateValue(
            podman_version=version,
            quadlet=quadlet,
            files=files,
            dirs=dirs,
            records=records,
            scopes={key: _scope_state(parts) for key, parts in scopes.items()},
        )


# One JSON array each; podman 4.3 and 5.x print the fields read here under these names.
PS = "podman ps -a --format json"
IMAGES = "podman images --format json"


def _directory_state(lines: list[str]) -> DirectoryState:
    kind = lines[0].strip() if lines else "absent"
    if kind == "dir" and len(lines) >= 2 and len(lines[1].split()) == 3:
        user, group, mode = lines[1].split()
        return DirectoryState("dir", user, group, mode)
    return DirectoryState(kind if kind in ("absent", "other") else "other")


def _unit_blocks(lines: list[str]) -> dict[str, SystemdUnitState]:
    units: dict[str, SystemdUnitState] = {}
    block: dict[str, str] = {}
    for line in [*lines, ""]:
        if "=" in line:
            key, value = line.split("=", 1)
            block[key] = value
        elif not line.strip() and block:
            units[block.get("Id", "")] = _unit_state(block)
            block = {}
    return units


def _json_list(lines: list[str]) -> list:
    text = "\n".join(lines).strip()
    value = json.loads(text) if text else []
    return value if isinstance(value, list) else []


def _scope_state(parts: dict[str, list[str]]) -> ScopeState:
    units = parts.get("units", [])
    containers = {}
    for c in _json_list(parts.get("containers", [])):
        for name in c.get("Names") or []:
            containers[name] = ContainerState(
                name, c.get("ImageID", ""), c.get("Image", ""), c.get("State", "")
            )
    images = tuple(
        ImageState(i.get("Id", ""), tuple(i.get("Names") or ()), i.get("Digest", "") or "")
        for i in _json_list(parts.get("images", []))
    )
    if any(line.startswith(_NO_MANAGER) for line in units):
        return ScopeState(reachable=False, containers=containers, images=images)
    return ScopeState(True, _unit_blocks(units), containers, images)
