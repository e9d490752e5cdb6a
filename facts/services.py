"""Services as systemd runs them (§3.1, §7.2): the quadlet generator, a unit's state, volumes,
the services' managed files."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, split_sections
from .compose import as_user

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
        props = dict(line.split("=", 1) for line in output if "=" in line)
        return SystemdUnitState(
            load_state=props.get("LoadState", "not-found"),
            active_state=props.get("ActiveState", "inactive"),
            sub_state=props.get("SubState", "dead"),
            unit_file_state=props.get("UnitFileState", ""),
            fragment_path=props.get("FragmentPath", ""),
            source_path=props.get("SourcePath", ""),
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


@dataclass(frozen=True)
class ServiceFileState(FactValue):
    # "file" (a regular file, not a link), "other" (a directory, a link ...) or "absent".
    kind: str
    uid: str | None = None
    gid: str | None = None
    user: str | None = None  # stat's name for uid ("UNKNOWN" when the host has none)
    group: str | None = None
    mode: str | None = None  # permission bits in octal, as stat prints them ("640")
    sha1: str | None = None


_FILE = "file "


class ServiceFiles(FactBase[dict[str, ServiceFileState]]):
    """
    Kind, numeric and named owner and group, mode and SHA-1 of each of ``paths``, in ONE
    command however many there are (the managed files of every service can be read at once).

    .. code:: python

        {"/srv/containers/apps/litellm/config/config.yaml": ServiceFileState(
            kind="file", uid="0", gid="0", user="root", group="root", mode="644",
            sha1="3f2a..."),
         "/srv/containers/apps/litellm/extra.yaml": ServiceFileState(kind="absent")}
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, paths: list[str]) -> StringCommand:
        parts: list = []
        for path in paths:
            parts += [
                StringCommand("echo", QuoteString(f"@@{_FILE}{path}"), ";", _separator=" "),
                StringCommand("p=", QuoteString(path), _separator=""),
                '; if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then echo other;',
                'elif [ -f "$p" ]; then echo file; stat -c "%u %g %U %G %a" -- "$p";',
                'sha1sum -- "$p" | cut -d " " -f 1;',
                "else echo absent; fi;",
            ]
        return StringCommand(*parts, "true")

    def process(self, output: list[str]) -> dict[str, ServiceFileState]:
        found: dict[str, ServiceFileState] = {}
        for key, lines in split_sections(output).items():
            if not key.startswith(_FILE) or not lines:
                continue
            path, kind = key[len(_FILE) :], lines[0].strip()
            fields = lines[1].split() if len(lines) >= 3 else []
            if kind == "file" and len(fields) == 5 and lines[2].strip():
                found[path] = ServiceFileState("file", *fields, sha1=lines[2].strip())
            elif kind == "absent":
                found[path] = ServiceFileState("absent")
            else:  # not a regular file, or unreadable: the operation replaces it
                found[path] = ServiceFileState("other")
        return found
