"""What runs on a host, as verify reads it (§8.1, drift, exposure): podman's containers with
their published ports and health, systemd's view of several units at once, and the files this
package manages. Pure parsers of one command's output each; the commands are built here too,
one per owner (root or a rootless user) whatever the number of containers or services."""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass, field

from .compose import PROJECT_LABEL

# podman ps --format json: every container of the owner, running or not, one command.
PS = "podman ps -a --format json"
DOCKER_PS = "docker ps -a --format '{{.ID}}'"
# podman container inspect of every container of the owner (env, mounts, state): one command.
INSPECT = "podman ps -aq --no-trunc | xargs -r podman container inspect"
# The unit properties verify reads (timers: when they fire next).
UNIT_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "NextElapseUSecRealtime",
)
# Marks a file of the dump (facts.running.dump_command) and its base64 content on the next line.
_FILE = "@@file "
_HOME = "@@home "
_EXISTS = "@@exists "
_RECORD = "@@record "
_SHA256 = "@@sha256 "


@dataclass(frozen=True)
class Published:
    """One published port: ``host_ip`` "" when podman binds it on every interface."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str

    @property
    def all_interfaces(self) -> bool:
        return self.host_ip in ("", "0.0.0.0", "::")

    @property
    def address(self) -> str:
        ip = self.host_ip or "0.0.0.0"
        ip = f"[{ip}]" if ":" in ip else ip
        return f"{ip}:{self.host_port}->{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class Container:
    name: str
    id: str
    image: str
    state: str  # podman's word: running, exited, created, paused, ...
    health: str  # healthy, unhealthy, starting, "" without a check
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[Published, ...] = ()
    infra: bool = False  # a pod's infra container
    image_id: str = ""  # the full ID of the image it runs
    mounts: tuple[str, ...] = ()  # where its volumes and bind mounts are, in the container

    @property
    def project(self) -> str:
        """The compose project podman-compose labelled it with, "" for none."""
        return self.labels.get(PROJECT_LABEL, "")


def _json_after_noise(text: str):
    """podman's JSON with the warning lines it may print first (the Probe keeps stderr)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith(("[", "{"))), None)
    if start is None:
        raise ValueError(f"no JSON in {text[:200]!r}")
    return json.loads("\n".join(lines[start:]))


def _health(item: dict) -> str:
    """podman 4.3 and 5 say the health in Status ("Up 2 minutes (healthy)"); 5 also in Health."""
    if isinstance(item.get("Health"), dict) and item["Health"].get("Status"):
        return str(item["Health"]["Status"]).lower()
    status = str(item.get("Status", ""))
    for word in ("unhealthy", "healthy", "starting"):
        if f"({word})" in status:
            return word
    return ""


def parse_ps(text: str) -> list[Container]:
    """``podman ps -a --format json`` (podman 4.3 and 5)."""
    containers = []
    for item in _json_after_noise(text) or []:
        names = item.get("Names") or [str(item.get("Id", "?"))[:12]]
        ports = tuple(
            Published(
                host_ip=str(p.get("host_ip") or ""),
                host_port=int(p["host_port"]) + offset,
                container_port=int(p["container_port"]) + offset,
                protocol=str(p.get("protocol") or "tcp"),
            )
            for p in item.get("Ports") or []
            for offset in range(int(p.get("range") or 1))
        )
        containers.append(
            Container(
                name=names[0] if isinstance(names, list) else str(names),
                id=str(item.get("Id", "")),
                image=str(item.get("Image", "")),
                state=str(item.get("State", "")).lower(),
                health=_health(item),
                labels=dict(item.get("Labels") or {}),
                ports=ports,
                infra=bool(item.get("IsInfra")),
                image_id=str(item.get("ImageID") or ""),
                mounts=tuple(str(m) for m in item.get("Mounts") or []),
            )
        )
    return containers


@dataclass(frozen=True)
class Mount:
    destination: str  # where, in the container
    source: str  # the host path (a named volume's: its _data directory)
    name: str  # a named volume's name, "" for a bind mount
    rw: bool


@dataclass(frozen=True)
class Inspected:
    """One container as ``podman container inspect`` shows it (podman 4.3 and 5)."""

    name: str
    running: bool
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()


def parse_inspect(text: str) -> dict[str, Inspected]:
    """``INSPECT``'s output by container name: nothing when the owner has no container."""
    if not text.strip():
        return {}
    found = {}
    for item in _json_after_noise(text) or []:
        env = {}
        for entry in (item.get("Config") or {}).get("Env") or []:
            key, _, value = str(entry).partition("=")
            env[key] = value
        mounts = tuple(
            Mount(
                destination=str(m.get("Destination", "")),
                source=str(m.get("Source", "")),
                name=str(m.get("Name") or "") if m.get("Type") == "volume" else "",
                rw=bool(m.get("RW")),
            )
            for m in item.get("Mounts") or []
        )
        name = str(item.get("Name", "")).lstrip("/")
        running = bool((item.get("State") or {}).get("Running"))
        found[name] = Inspected(name=name, running=running, env=env, mounts=mounts)
    return found


def units_command(user: str | None, units: list[str]) -> str:
    """``systemctl show`` of ``units`` in root's manager or ``user``'s, in one command."""
    scope = f"--user --machine={shlex.quote(user + '@.host')} " if user else ""
    names = " ".join(shlex.quote(u) for u in units)
    return f"systemctl {scope}show --property={','.join(UNIT_PROPERTIES)} {names}"


def parse_units(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show`` of several units: blank-line separated blocks, keyed by ``Id``."""
    units: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def dump_command(
    user: str | None,
    dirs: list[str],
    exists: list[str] = (),
    records: list[str] = (),
    digests: list[str] = (),
) -> str:
    """Every file carrying this package's header in ``dirs`` (relative to the owner's home for
    a rootless ``user``, else absolute), each as a ``@@file PATH`` line and its content in
    base64 on the next (byte-exact, one line); which of the absolute paths ``exists`` exist
    (``@@exists PATH``, never their content: secrets files); and the content of each of the
    absolute paths ``records`` that is a file, the same way under ``@@record PATH`` (the
    package's own records, e.g. a service's image record); and the sha256 of each of the
    absolute paths ``digests`` that is a file (``@@sha256 DIGEST PATH``: compose projects'
    files, which may hold secrets: never their content)."""
    home = '"$h"/' if user else ""
    script = ""
    if user:
        script = f'h=$(getent passwd {shlex.quote(user)} | cut -d: -f6); echo "{_HOME}$h"; '
    listed = " ".join(f"{home}{shlex.quote(d)}/*" for d in dirs)
    script += (
        f"grep -ls 'managed by podman-standard' {listed} | sort | while read -r f; do "
        f'[ -f "$f" ] && echo "{_FILE}$f" && base64 -w0 "$f" && echo; done; '
    )
    for path in exists:
        script += f'[ -e {shlex.quote(path)} ] && echo "{_EXISTS}"{shlex.quote(path)}; '
    for path in records:
        quoted = shlex.quote(path)
        script += f'[ -f {quoted} ] && echo "{_RECORD}"{quoted} && base64 -w0 {quoted} && echo; '
    for path in digests:
        quoted = shlex.quote(path)
        script += (
            f'[ -f {quoted} ] && echo "{_SHA256}$(sha256sum < {quoted} | cut -c1-64) "{quoted}; '
        )
    return script + "true"


@dataclass(frozen=True)
class Dump:
    home: str  # the owner's home ("" for root); the files' paths are relative to it
    files: dict[str, str]  # path -> content
    exists: frozenset[str]  # absolute paths
    records: dict[str, str] = field(default_factory=dict)  # absolute path -> content
    sha256: dict[str, str] = field(default_factory=dict)  # absolute path -> its sha256


def parse_dump(text: str) -> Dump:
    """A dump (``dump_command``) back into its files and the paths that exist."""
    home, files, exists, records, sha256 = "", {}, set(), {}, {}
    lines = text.splitlines()

    def relative(path: str) -> str:
        return path[len(home) + 1 :] if home and path.startswith(home + "/") else path

    for i, line in enumerate(lines):
        if line.startswith(_HOME):
            home = line[len(_HOME) :].strip()
        elif line.startswith(_EXISTS):
            exists.add(line[len(_EXISTS) :])
        elif line.startswith(_SHA256):
            digest, _, path = line[len(_SHA256) :].partition(" ")
            sha256[path] = digest
        elif line.startswith((_FILE, _RECORD)):
            record = line.startswith(_RECORD)
            path = line[len(_RECORD if record else _FILE) :]
            data = lines[i + 1] if i + 1 < len(lines) else ""
            try:
                content = base64.b64decode(data, validate=True).decode("utf-8", "replace")
            except ValueError:
                continue
            if record:
                records[path] = content
            else:
                files[relative(path)] = content
    return Dump(home, files, frozenset(exists), records, sha256)


# GET /_ping on a Docker API socket (what docker compose v2 asks first): curl where the host
# has it, else python3's socket module (Debian's minimal installs have python3, not curl).
_PING_PY = (
    "import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1]);"
    " s.sendall(b'GET /_ping HTTP/1.0\\r\\nHost: d\\r\\n\\r\\n'); r=b''\n"
    "while 1:\n c=s.recv(4096)\n if not c: break\n r+=c\n"
    "h,_,b=r.decode('latin-1').partition('\\r\\n\\r\\n'); print(h.split('\\r\\n')[0]); print(b)"
)


def ping_command(socket_path: str) -> str:
    """``GET /_ping`` on the unix socket ``socket_path`` (a shell word, may hold $VARS): prints
    the status line and the body (podman answers ``OK``)."""
    curl = f"curl -sS -i --max-time 30 --unix-socket {socket_path} http://d/_ping"
    python = f"python3 -c {shlex.quote(_PING_PY)} {socket_path}"
    return f"if command -v curl >/dev/null 2>&1; then {curl}; else {python}; fi"


def parse_ping(text: str) -> tuple[str, str]:
    """(HTTP status line, body) of a ping's output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    status = next((line for line in lines if line.startswith("HTTP/")), "")
    return status, lines[-1] if lines else ""
