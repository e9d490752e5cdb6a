"""Docker/moby on a Linux host: is the engine there, who owns the Docker socket and the ``docker``
command, and (for the migration of §6.1) what containers, volumes and images it holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, section, split_sections

# Packages that make up a Docker engine or its CLI, on Debian/Ubuntu and Fedora/RHEL alike.
ENGINE_PACKAGES = (
    "moby-engine",
    "docker-ce",
    "docker-ce-cli",
    "docker-ce-rootless-extras",
    "containerd.io",
    "containerd",
    "docker.io",
    "docker-compose-plugin",
    "podman-docker",
    "runc",
)
# Any of these installed means a Docker daemon can run (§6.2: podman-docker conflicts with them).
DAEMON_PACKAGES = ("moby-engine", "docker-ce", "docker.io", "containerd.io")
DOCKER_SOCK = "/var/run/docker.sock"
# First lines of the /usr/local/bin/docker wrapper that the docker_compat operation writes (§2.2).
WRAPPER_HEADER = "# managed by podman-standard"
_UNITS = ("docker.service", "docker.socket")
_ENABLED_STATES = ("enabled", "enabled-runtime", "linked", "linked-runtime", "alias")
# One "name<TAB>state<TAB>version" line per package the database knows (dpkg also lists removed
# ones, with a state other than "installed"; rpm prints "package X is not installed" instead).
_DPKG_FORMAT = "'${Package}\\t${db:Status-Status}\\t${Version}\\n'"
_RPM_FORMAT = "'%{NAME}\\tinstalled\\t%{VERSION}-%{RELEASE}\\n'"


@dataclass(frozen=True)
class DockerEngineState(FactValue):
    packages: dict[str, str] = field(default_factory=dict)
    service_active: bool = False
    service_enabled: bool = False
    socket_active: bool = False
    socket_enabled: bool = False
    # absent | docker (a socket of dockerd/docker.socket) | podman (a symlink to podman's socket)
    # | other
    sock: str = "absent"
    sock_target: str | None = None
    # absent | docker (the real CLI) | podman-shim (a script or link that runs podman) |
    # wrapper (ours: carries WRAPPER_HEADER) | other
    cli: str = "absent"
    cli_path: str | None = None
    # `cli_path` with every symlink resolved.
    cli_real_path: str | None = None

    @property
    def engine_present(self) -> bool:
        return self.service_active or any(name in self.packages for name in DAEMON_PACKAGES)


class DockerEngine(FactBase[DockerEngineState]):
    """
    What of Docker is on the host, in one command: installed engine packages (dpkg or rpm), the
    state of ``docker.service``/``docker.socket``, what ``/var/run/docker.sock`` is, and what
    the ``docker`` command on root's PATH is.

    .. code:: python

        DockerEngineState(packages={"docker.io": "20.10.24+dfsg1-1+deb12u1+b6", ...},
                          service_active=True, service_enabled=True, socket_active=True,
                          socket_enabled=True, sock="docker", sock_target=None, cli="docker",
                          cli_path="/usr/bin/docker", cli_real_path="/usr/bin/docker")

    ``cli`` is "wrapper" when WRAPPER_HEADER is among the script's first five lines.
    """

    @staticmethod
    def default() -> DockerEngineState:
        return DockerEngineState()

    def command(self) -> str:
        packages = " ".join(ENGINE_PACKAGES)
        units = " ".join(_UNITS)
        return " ".join(
            (
                section("packages"),
                "if command -v dpkg-query >/dev/null 2>&1; then",
                f"dpkg-query -W -f={_DPKG_FORMAT} {packages} 2>/dev/null;",
                "elif command -v rpm >/dev/null 2>&1; then",
                f"rpm -q --qf {_RPM_FORMAT} {packages} 2>/dev/null;",
                "fi;",
                section("units"),
                f"systemctl show --property=Id,ActiveState,UnitFileState {units} 2>/dev/null;",
                section("sock"),
                f"if [ -L {DOCKER_SOCK} ]; then echo link; readlink {DOCKER_SOCK};",
                f"elif [ -S {DOCKER_SOCK} ]; then echo socket; stat -c %G {DOCKER_SOCK};",
                f"elif [ -e {DOCKER_SOCK} ]; then echo other; fi;",
                section("cli"),
                'p=$(command -v docker 2>/dev/null); if [ -n "$p" ]; then echo "$p";'
                ' readlink -f "$p";',
                'if [ "$(head -c 2 "$p" 2>/dev/null)" = "#!" ]; then head -n 5 "$p"; fi; fi;',
                "true",
            )
        )

    def process(self, output: list[str]) -> DockerEngineState:
        sections = split_sections(output)

        packages: dict[str, str] = {}
        for line in sections.get("packages", []):
            parts = line.split("\t")
            # dpkg keeps removed-but-not-purged packages as "config-files": not installed.
            if len(parts) == 3 and parts[1] == "installed":
                packages[parts[0]] = parts[2]

        units = _parse_systemctl_show(sections.get("units", []))
        service = units.get("docker.service", {})
        socket = units.get("docker.socket", {})
        service_active = service.get("ActiveState") == "active"
        socket_active = socket.get("ActiveState") == "active"

        sock, sock_target = "absent", None
        sock_lines = sections.get("sock", [])
        if sock_lines and sock_lines[0] == "link":
            sock_target = sock_lines[1] if len(sock_lines) > 1 else ""
            sock = "podman" if "podman" in sock_target else "other"
        elif sock_lines and sock_lines[0] == "socket":
            group = sock_lines[1] if len(sock_lines) > 1 else ""
            daemon_installed = any(name in packages for name in DAEMON_PACKAGES)
            owned = group == "docker" or service_active or socket_active or daemon_installed
            sock = "docker" if owned else "other"
        elif sock_lines:
            sock = "other"

        cli, cli_path, cli_real_path = _classify_cli(sections.get("cli", []))

        return DockerEngineState(
            packages=packages,
            service_active=service_active,
            service_enabled=service.get("UnitFileState") in _ENABLED_STATES,
            socket_active=socket_active,
            socket_enabled=socket.get("UnitFileState") in _ENABLED_STATES,
            sock=sock,
            sock_target=sock_target,
            cli=cli,
            cli_path=cli_path,
            cli_real_path=cli_real_path,
        )


def _parse_systemctl_show(lines: list[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` prints ``Key=value`` lines, one block per unit, each with its ``Id``."""
    units: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "Id":
            current = units.setdefault(value, {})
        if current is not None:
            current[key] = value
    return units


def _classify_cli(lines: list[str]) -> tuple[str, str | None, str | None]:
    if not lines:
        return "absent", None, None
    path = lines[0]
    real_path = lines[1] if len(lines) > 1 and lines[1] else path
    script = lines[2:]
    if script:
        if any(line.strip().startswith(WRAPPER_HEADER) for line in script):
            return "wrapper", path, real_path
        if any("podman" in line for line in script):
            return "podman-shim", path, real_path
        return "other", path, real_path
    name = os.path.basename(real_path)
    if name == "podman":
        return "podman-shim", path, real_path
    if name == "docker":
        return "docker", path, real_path
    return "other", path, real_path


# ---------------------------------------------------------------------------------------------
# Inventory, for the Docker -> Podman migration (§6.1: audit, export, re-deploy).


@dataclass(frozen=True)
class PortBinding(FactValue):
    container_port: int
    protocol: str
    host_ip: str
    host_port: str


@dataclass(frozen=True)
class DockerMount(FactValue):
    type: str
    source: str
    destination: str
    # The volume name for type "volume", else None.
    name: str | None
    rw: bool


@dataclass(frozen=True)
class DockerContainer(FactValue):
    name: str
    id: str
    image: str
    image_id: str
    state: str
    # What the container runs: entrypoint + cmd as Docker resolved them.
    command: list[str]
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str]
    labels: dict[str, str]
    ports: list[PortBinding]
    mounts: list[DockerMount]
    restart_policy: str
    restart_max_retries: int
    networks: list[str]
    # Every field of ``docker inspect``'s Config and HostConfig as Docker printed it (JSON
    # values): the migration decides each one (model.docker_settings).
    config: dict[str, Any] = field(default_factory=dict)
    host_config: dict[str, Any] = field(default_factory=dict)
    # Per network, the names the container answers to there (NetworkSettings.Networks.*.Aliases:
    # a compose service's name, --network-alias; Docker before 26 adds the short id).
    network_aliases: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerVolume(FactValue):
    name: str
    driver: str
    mountpoint: str
    labels: dict[str, str]
    # Bytes under the mountpoint (du -sb); None where not measured.
    size_bytes: int | None = None
    # The driver's options (`docker volume create --opt`): for "local", a mount Docker makes
    # only while a container uses the volume (type, o, device), or a quota (size).
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerImage(FactValue):
    id: str
    repo_tags: list[str]
    size_bytes: int
    # Digests from a registry: empty for an image built, imported or loaded here (which
    # no registry can give back).
    repo_digests: list[str] = field(default_factory=list)
    # The image's own defaults, which a container's merged Config is compared with.
    env: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    # The image's whole Config (JSON values): what a container inherits from it is no setting
    # of the container's own (model.docker_settings).
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerInventoryState(FactValue):
    # False when the daemon could not be asked (not running, no permission).
    reachable: bool = False
    containers: list[DockerContainer] = field(default_factory=list)
    volumes: list[DockerVolume] = field(default_factory=list)
    images: list[DockerImage] = field(default_factory=list)


class DockerInventory(FactBase[DockerInventoryState]):
    """
    Containers, volumes and images of the Docker daemon, from ``docker inspect``,
    ``docker volume inspect`` and ``docker image inspect`` (all JSON). Each container keeps
    its whole ``Config`` and ``HostConfig``, each image its ``Config``, for the migration's
    decision on every setting (``model.docker_settings``).
    """

    @staticmethod
    def default() -> DockerInventoryState:
        return DockerInventoryState()

    def requires_command(self) -> str:
        return "docker"

    def command(self) -> str:
        # Container IDs are hex and volume names [a-zA-Z0-9][a-zA-Z0-9_.-]*: safe unquoted.
        return " ".join(
            (
                "ids=$(docker ps -aq --no-trunc 2>/dev/null) &&",
                section("reachable"),
                section("containers"),
                '[ -z "$ids" ] || docker inspect $ids 2>/dev/null;',
                section("volumes"),
                'vols=$(docker volume ls -q 2>/dev/null); [ -z "$vols" ] ||'
                " docker volume inspect $vols 2>/dev/null;",
                section("volume_sizes"),
                'for v in $vols; do printf "%s\\t" "$v"; du -sb'
                ' "$(docker volume inspect --format "{{.Mountpoint}}" "$v")" | cut -f1; done;',
                section("images"),
                'imgs=$(docker image ls -q --no-trunc 2>/dev/null | sort -u); [ -z "$imgs" ] ||'
                " docker image inspect $imgs 2>/dev/null;",
                "true",
            )
        )

    def process(self, output: list[str]) -> DockerInventoryState:
        sections = split_sections(output)
        if "reachable" not in sections:
            return DockerInventoryState()
        sizes = {}
        for line in sections.get("volume_sizes", []):
            name, _, size = line.partition("\t")
            if size.strip().isdigit():
                sizes[name] = int(size)
        return DockerInventoryState(
            reachable=True,
            containers=[_container(c) for c in _json_list(sections.get("containers", []))],
            volumes=[_volume(v, sizes) for v in _json_list(sections.get("volumes", []))],
            images=_images(_json_list(sections.get("images", []))),
        )


def _json_list(lines: list[str]) -> list[dict[str, Any]]:
    text = "\n".join(lines).strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _container(data: dict[str, Any]) -> DockerContainer:
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    restart = host.get("RestartPolicy") or {}
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    ports = []
    for spec, bindings in (host.get("PortBindings") or {}).items():
        port, _, proto = spec.partition("/")
        for binding in bindings or []:
            ports.append(
                PortBinding(
                    container_port=int(port),
                    protocol=proto or "tcp",
                    host_ip=binding.get("HostIp") or "",
                    host_port=binding.get("HostPort") or "",
                )
            )
    ports.sort(key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port))
    mounts = [
        DockerMount(
            type=m.get("Type", ""),
            source=m.get("Source", ""),
            destination=m.get("Destination", ""),
            name=m.get("Name"),
            rw=bool(m.get("RW", True)),
        )
        for m in data.get("Mounts") or []
    ]
    return DockerContainer(
        name=(data.get("Name") or "").lstrip("/"),
        id=data.get("Id", ""),
        image=config.get("Image", ""),
        image_id=data.get("Image", ""),
        state=(data.get("State") or {}).get("Status", ""),
        command=[data["Path"], *(data.get("Args") or [])] if data.get("Path") else [],
        entrypoint=_str_list(config.get("Entrypoint")),
        cmd=_str_list(config.get("Cmd")),
        env=list(config.get("Env") or []),
        labels=dict(config.get("Labels") or {}),
        ports=ports,
        mounts=mounts,
        restart_policy=restart.get("Name") or "no",
        restart_max_retries=int(restart.get("MaximumRetryCount") or 0),
        networks=sorted(networks.keys()),
        config=dict(config),
        host_config=dict(host),
        network_aliases={
            name: list(value["Aliases"])
            for name, value in sorted(networks.items())
            if (value or {}).get("Aliases")
        },
    )


def _str_list(value: Any) -> list[str] | None:
    # Old API versions give a string where newer ones give a list.
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _volume(data: dict[str, Any], sizes: dict[str, int]) -> DockerVolume:
    name = data.get("Name", "")
    return DockerVolume(
        name=name,
        driver=data.get("Driver", ""),
        mountpoint=data.get("Mountpoint", ""),
        labels=dict(data.get("Labels") or {}),
        size_bytes=sizes.get(name),
        options={str(k): str(v) for k, v in (data.get("Options") or {}).items()},
    )


def _images(items: list[dict[str, Any]]) -> list[DockerImage]:
    images: dict[str, DockerImage] = {}
    for data in items:
        image_id = data.get("Id", "")
        config = data.get("Config") or {}
        images.setdefault(
            image_id,
            DockerImage(
                id=image_id,
                repo_tags=list(data.get("RepoTags") or []),
                size_bytes=int(data.get("Size") or 0),
                repo_digests=list(data.get("RepoDigests") or []),
                env=list(config.get("Env") or []),
                entrypoint=_str_list(config.get("Entrypoint")),
                cmd=_str_list(config.get("Cmd")),
                config=dict(config),
            ),
        )
    return list(images.values())


@dataclass(frozen=True)
class DataDirState(FactValue):
    # False when there is no such directory (or the path is not a directory).
    exists: bool = False
    # Bytes under it (du -sb).
    size_bytes: int = 0
    # The numeric owners of every entry under it (the directory itself included), sorted.
    uids: list[int] = field(default_factory=list)
    gids: list[int] = field(default_factory=list)


class DataDir(FactBase[DataDirState]):
    """
    A directory of data the migration copies (a Docker volume's ``_data``, a bind mount's
    source): whether it is a directory, its size, and the numeric user and group ids owning
    its entries (what a move into a rootless user's store must be able to map).
    """

    @staticmethod
    def default() -> DataDirState:
        return DataDirState()

    def command(self, path: str) -> StringCommand:
        quoted = QuoteString(path)
        return StringCommand(
            "[ -d",
            quoted,
            "] || exit 0;",
            section("size"),
            "du -sb",
            quoted,
            "| cut -f1;",
            section("ids"),
            "find",
            quoted,
            "-printf '%U %G\\n' | LC_ALL=C sort -u",
        )

    def process(self, output: list[str]) -> DataDirState:
        sections = split_sections(output)
        if "size" not in sections:
            return DataDirState()
        size = next((int(line) for line in sections["size"] if line.strip().isdigit()), 0)
        uids, gids = set(), set()
        for line in sections.get("ids", []):
            parts = line.split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                uids.add(int(parts[0]))
                gids.add(int(parts[1]))
        return DataDirState(exists=True, size_bytes=size, uids=sorted(uids), gids=sorted(gids))


DAEMON_JSON = "/etc/docker/daemon.json"


@dataclass(frozen=True)
class DockerDaemonConfigState(FactValue):
    # False when there is no daemon.json (dockerd's defaults).
    exists: bool = False
    # False when the file is not a JSON object (dockerd itself would refuse to start).
    valid: bool = True
    # Every key of the file as written (JSON values).
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def registry_mirrors(self) -> list[str]:
        return [str(m) for m in self.settings.get("registry-mirrors") or []]

    @property
    def insecure_registries(self) -> list[str]:
        return [str(r) for r in self.settings.get("insecure-registries") or []]

    @property
    def data_root(self) -> str | None:
        # "graph" is the name dockerd read before 17.05 (still accepted by 20.10).
        return self.settings.get("data-root") or self.settings.get("graph") or None


class DockerDaemonConfig(FactBase[DockerDaemonConfigState]):
    """
    The Docker daemon's own configuration file, ``/etc/docker/daemon.json`` (dockerd(8)),
    parsed as the JSON it is. Settings given as dockerd command-line flags are not seen.
    """

    @staticmethod
    def default() -> DockerDaemonConfigState:
        return DockerDaemonConfigState()

    def command(self) -> str:
        return f"[ -f {DAEMON_JSON} ] || exit 0; {section('file')} cat {DAEMON_JSON}"

    def process(self, output: list[str]) -> DockerDaemonConfigState:
        sections = split_sections(output)
        if "file" not in sections:
            return DockerDaemonConfigState()
        try:
            data = json.loads("\n".join(sections["file"]) or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return DockerDaemonConfigState(exists=True, valid=False)
        return DockerDaemonConfigState(exists=True, settings=data)
