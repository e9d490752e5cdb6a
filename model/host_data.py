"""The one typed model of everything group_data and host data may say.

Every key this package reads lives in the ``podman_`` namespace of pyinfra host data.
Keys outside that namespace (``ssh_user``, ``_sudo``, …) belong to pyinfra and pass
through untouched; a ``podman_`` key the model does not know is an error (a typo such
as ``podman_graphrot`` must not silently fall back to a default).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

NAMESPACE = "podman_"
# The package's Jinja templates (operations render them; compose projects name them).
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:-]*$")
# containers-registries.conf(5): a search entry is host[:port]; a location (and a mirror's)
# host[:port][/namespace...]; a prefix either of those or a wildcard "*.host" (no port, no path).
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_SEARCH_RE = re.compile(rf"^{_HOST}(?::[0-9]{{1,5}})?$")
_LOCATION_RE = re.compile(rf"^{_HOST}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._-]+)*$")
_PREFIX_RE = re.compile(rf"^(?:\*\.{_HOST}|{_HOST}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._-]+)*)$")
_DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9/_.-]+$")
# Services: names become unit, file and container names, so no path or shell characters.
_SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# registry host[:port]/path[:tag][@digest]; the registry part must be explicit (see Service.image).
_IMAGE_RE = re.compile(
    r"^(?P<registry>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?)"
    r"/(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
# A relative path of plain components under the service directory.
_RELATIVE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# A device node (optionally host:container[:perms]) or a CDI name such as nvidia.com/gpu=all.
_CONTAINER_DEVICE_RE = re.compile(
    r"^(?:/dev/[A-Za-z0-9/_.-]+(?::/dev/[A-Za-z0-9/_.-]+)?(?::[rwm]{1,3})?"
    r"|[a-z0-9][a-z0-9.-]*/[a-z0-9][a-z0-9_.-]*=[A-Za-z0-9_][A-Za-z0-9_.:-]*)$"
)
# Written unquoted into unit files (Volume=, EnvironmentFile=): no space, quote, % or $.
_UNIT_PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]*$")
# A container path (a volume's target): also written unquoted (quadlet's Volume= is one value,
# podman splits it at ':' and its options at ','), so the same characters plus '@' and '+'.
_TARGET_RE = re.compile(r"^/(?:[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+-]+)*)?$")
_DURATION_RE = re.compile(r"^[0-9]+(?:ms|s|m|h)$")
# The file a service's secrets land in, inside its directory (so no volume may claim it).
SECRETS_FILE = "secrets.env"


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    if "\x00" in value or "\n" in value:
        raise ValueError("must not contain NUL or newline")
    parts = value.split("/")
    if ".." in parts:
        raise ValueError(f"must not contain '..', got {value!r}")
    normal = "/" + "/".join(p for p in parts if p)
    if normal != value:
        raise ValueError(f"must be normalised (no trailing or double slash), got {value!r}")
    return value


def _pattern(regex: re.Pattern[str], what: str):
    def check(value: str) -> str:
        if not regex.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


AbsPath = Annotated[str, AfterValidator(_absolute_path)]
UserName = Annotated[str, AfterValidator(_pattern(_USER_RE, "user name"))]
PackageName = Annotated[str, AfterValidator(_pattern(_PACKAGE_RE, "package name"))]
SearchRegistry = Annotated[
    str, AfterValidator(_pattern(_SEARCH_RE, "search registry (host[:port]: no path, no '*')"))
]
RegistryLocation = Annotated[
    str, AfterValidator(_pattern(_LOCATION_RE, "registry location (host[:port][/path], no '*')"))
]
RegistryPrefix = Annotated[
    str,
    AfterValidator(
        _pattern(_PREFIX_RE, "registry prefix (host[:port][/path], or *.host without port or path)")
    ),
]
DevicePath = Annotated[str, AfterValidator(_pattern(_DEVICE_RE, "device path under /dev"))]
ServiceName = Annotated[
    str,
    AfterValidator(_pattern(_SERVICE_RE, "name (a-z, 0-9, '_', '.', '-'; at most 63)")),
]
# Units this package itself runs, stops or removes (the API socket, the Docker engine it
# retires or restores): a service of that name would take their place.
RESERVED_SERVICE_NAMES = frozenset(
    ["containerd", "docker", "podman", "podman-auto-update", "podman-restart", "podman-kube"]
)


def _not_reserved(value: str) -> str:
    if value in RESERVED_SERVICE_NAMES:
        raise ValueError(f"{value!r} is a unit this package manages itself: choose another name")
    return value


ServiceRoot = Annotated[
    str,
    AfterValidator(_absolute_path),
    AfterValidator(_pattern(_UNIT_PATH_RE, "service root (letters, digits, '_', '.', '-', '/')")),
]
MountTarget = Annotated[
    str,
    AfterValidator(_absolute_path),
    AfterValidator(
        _pattern(
            _TARGET_RE,
            "container path: letters, digits, '_', '.', '-', '@', '+' between slashes (it is "
            "written into the unit as it is: no space, ':', ',', '%', '$' or control character)",
        )
    ),
]
EnvName = Annotated[str, AfterValidator(_pattern(_ENV_NAME_RE, "environment variable name"))]


def control_characters(value: str) -> list[str]:
    """The control characters in ``value`` (C0, DEL and C1), shown escaped: none can stand on
    one line of a unit or an env file (systemd ends a line at CR and NUL as well as LF)."""
    return sorted({repr(c) for c in value if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F})


def _unit_text(value: str) -> str:
    # Every value ends up on one line of a systemd unit or an env file: no line breaks or
    # other control characters (spaces, quotes, % and $ are escaped when rendered).
    bad = control_characters(value)
    if bad:
        raise ValueError(f"must not contain control characters ({', '.join(bad)})")
    return value


UnitText = Annotated[str, AfterValidator(_unit_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostClass(StrEnum):
    server = "server"
    workstation = "workstation"
    # Windows/macOS: left untouched, only verified (standard §4, §8.3).
    desktop = "desktop"


class DockerCompat(StrEnum):
    auto = "auto"  # podman-docker on the Fedora family, the wrapper on Debian/Ubuntu
    podman_docker = "podman-docker"
    wrapper = "wrapper"
    none = "none"


class ShortNameMode(StrEnum):
    enforcing = "enforcing"
    permissive = "permissive"
    disabled = "disabled"


class StorageDriver(StrEnum):
    overlay = "overlay"
    vfs = "vfs"  # debugging only (standard §9.2)


class ExistingStore(StrEnum):
    # What to do when the graphroot changes while the old store still holds data.
    refuse = "refuse"  # stop with a clear message (default: never orphan data silently)
    leave = "leave"  # switch, leaving the old store on disk untouched


class RollbackFrom(StrEnum):
    # What the rollback puts into Docker's volumes.
    podman = "podman"  # the data the podman services hold now (written since the migration)
    bundle = "bundle"  # the bundle's tarballs: the data as it was at the migration


# A Docker container's name (also podman's rules), or "*" for every container.
_CONTAINER_KEY_RE = re.compile(r"^(?:\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")


def _rootless_targets(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _CONTAINER_KEY_RE.match(key):
            raise ValueError(f"{key!r} is neither a Docker container name nor '*'")
    if "*" in value and len(value) > 1:
        raise ValueError("'*' (every container) cannot be combined with container names")
    return value


class Phase(StrEnum):
    install = "install"
    config = "config"
    storage = "storage"
    services = "services"
    verify = "verify"


def _repeated(values) -> list[str]:
    values = list(values)
    return sorted({v for v in values if values.count(v) > 1})


def _comma_list(value):
    # `--data podman_phases=install,config` arrives from the CLI as one string.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class SecretSource(Strict):
    """Where the controller reads a secret at deploy time: never the repository."""

    env: EnvName | None = None  # an environment variable of the pyinfra process
    file: AbsPath | None = None  # a file on the controller (its content, one trailing newline cut)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret comes from exactly one of 'env' or 'file'")
        return self

    @property
    def where(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def unavailable(self) -> str | None:
        """Why the controller cannot provide the secret now (checked before any change)."""
        if self.env and self.env not in os.environ:
            return f"environment variable {self.env} is not set"
        if self.file and not os.access(self.file, os.R_OK):
            return f"file {self.file} is not readable"
        return None

    def read(self) -> str:
        """The secret's value, read on the controller now: one non-empty line (a file's one
        trailing newline cut). ValueError saying what is wrong, never showing the value."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"{self.where} is not set on the controller")
        else:
            try:
                with open(self.file, encoding="utf-8") as f:
                    value = f.read().removesuffix("\n")
            except OSError as error:
                raise ValueError(
                    f"cannot read {self.where} on the controller ({error.strerror})"
                ) from None
        if not value or any(c in value for c in "\n\r\0"):
            raise ValueError(f"{self.where} must be one non-empty line")
        return value


def check_pem(text: str) -> str:
    """``text`` when it holds one or more PEM X.509 certificates and nothing secret (a
    private key would be published: certs.d files are world-readable); else ValueError
    saying what is wrong. Parsed by ``cryptography`` (installed with pyinfra, via paramiko)."""
    from cryptography import x509

    if "PRIVATE KEY" in text:
        raise ValueError("holds a private key: a CA file carries certificates only")
    try:
        certificates = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError as error:
        raise ValueError(f"is not a PEM certificate ({error})") from None
    if not certificates:
        raise ValueError("holds no PEM certificate")
    return text


class CertificateSource(Strict):
    """A CA certificate (PEM) from a file on the controller or given inline (``pem``)."""

    file: AbsPath | None = None
    pem: Annotated[str, AfterValidator(check_pem)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.file is None) == (self.pem is None):
            raise ValueError("a CA certificate comes from exactly one of 'file' or 'pem'")
        return self

    def read(self) -> str:
        """The PEM text, validated (a controller file is read now); ValueError otherwise."""
        if self.pem is not None:
            return self.pem
        try:
            with open(self.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ValueError(f"cannot read {self.file} on the controller ({reason})") from None
        try:
            return check_pem(text)
        except ValueError as error:
            raise ValueError(f"{self.file} {error}") from None


def host_port(location: str) -> str:
    """The ``host[:port]`` of a registry location: its certs.d directory name."""
    return location.split("/", 1)[0]


class Mirror(Strict):
    location: RegistryLocation
    insecure: bool = False
    ca: CertificateSource | None = None


class Registry(Strict):
    prefix: RegistryPrefix
    location: RegistryLocation | None = None
    insecure: bool = False
    blocked: bool = False
    mirrors: list[Mirror] = Field(default_factory=list)
    # The CA that signed the registry's TLS certificate (its location's host[:port]).
    ca: CertificateSource | None = None

    @property
    def wildcard(self) -> bool:
        return self.prefix.startswith("*.")

    @model_validator(mode="after")
    def _wildcard_not_remapped(self):
        # containers-registries.conf(5): a wildcard prefix matches without rewriting the
        # reference (its location stays empty); remapping one is not described: refused.
        if self.wildcard and self.location is not None:
            raise ValueError(
                f"prefix {self.prefix!r} is a wildcard: it cannot have a location (it applies "
                "insecure/blocked/mirrors to the names it matches, without rewriting them)"
            )
        return self


class RegistryCredential(Strict):
    """A login podman uses for ``registry`` (a key of containers-auth.json(5)): root's
    (``user`` unset) or a rootless user's."""

    registry: RegistryLocation
    user: UserName | None = None
    username: str = ""
    password: SecretSource | None = None
    present: bool = True  # False: this entry is removed from the user's auth.json

    @model_validator(mode="after")
    def _complete(self):
        if not self.present:
            return self
        if not self.username or self.password is None:
            raise ValueError(
                f"credential for {self.registry}: a present credential needs 'username' and "
                "'password' ({'env': VAR} or {'file': /path} on the controller)"
            )
        # auth.json holds base64("username:password"): the first ':' ends the username.
        bad = control_characters(self.username)
        if ":" in self.username or bad:
            raise ValueError(
                f"credential for {self.registry}: the username must hold no ':' and no "
                "control character"
            )
        return self


class Registries(Strict):
    search: list[SearchRegistry] = Field(
        default_factory=lambda: ["docker.io", "quay.io", "ghcr.io"]
    )
    short_name_mode: ShortNameMode = ShortNameMode.enforcing
    registries: list[Registry] = Field(default_factory=list)
    credentials: list[RegistryCredential] = Field(default_factory=list)

    def locations(self) -> set[str]:
        """Every location podman may contact for these registries: each (non-wildcard)
        registry's location (else its prefix) and each mirror's."""
        found = {r.location or r.prefix for r in self.registries if not r.wildcard}
        return found | {m.location for r in self.registries for m in r.mirrors}

    def certificates(self) -> dict[str, CertificateSource]:
        """CA certificate per ``host[:port]`` (its certs.d directory)."""
        found: dict[str, CertificateSource] = {}
        for reg in self.registries:
            entries = [] if reg.wildcard else [(reg.location or reg.prefix, reg.ca)]
            for location, ca in entries + [(m.location, m.ca) for m in reg.mirrors]:
                if ca is not None:
                    found.setdefault(host_port(location), ca)
        return found

    @model_validator(mode="after")
    def _consistent(self):
        dupes = _repeated(r.prefix for r in self.registries)
        if dupes:
            raise ValueError(f"registry prefixes must be unique, repeated: {', '.join(dupes)}")
        if any(r.wildcard and r.ca for r in self.registries):
            raise ValueError("a wildcard prefix names no host: give the CA to a location")
        cas: dict[str, CertificateSource] = {}
        for reg in self.registries:
            pairs = [] if reg.wildcard else [(reg.location or reg.prefix, reg.ca)]
            for location, ca in pairs + [(m.location, m.ca) for m in reg.mirrors]:
                other = cas.setdefault(host_port(location), ca) if ca else None
                if other is not None and other != ca:
                    raise ValueError(
                        f"{host_port(location)} is given two different CA certificates: "
                        "podman reads one certs.d directory per host[:port]"
                    )
        known = self.locations()
        for cred in self.credentials:
            if cred.registry not in known:
                raise ValueError(
                    f"credential for {cred.registry}: not a declared registry location or "
                    f"mirror (declared: {', '.join(sorted(known)) or 'none'})"
                )
        dupes = _repeated(f"{c.registry} for {c.user or 'root'}" for c in self.credentials)
        if dupes:
            raise ValueError(f"credentials repeated: {', '.join(dupes)}")
        # containers/image refuses the whole file when two entries for one location disagree.
        by_location: dict[str, Registry] = {}
        for reg in self.registries:
            if reg.wildcard:
                continue
            location = reg.location or reg.prefix
            other = by_location.setdefault(location, reg)
            for flag in ("insecure", "blocked"):
                if getattr(other, flag) != getattr(reg, flag):
                    raise ValueError(
                        f"prefixes {other.prefix} and {reg.prefix} both use location {location} "
                        f"with a different '{flag}': podman refuses such a file"
                    )
        return self


# Mount points a new disk must not cover: the system's own trees (a disk mounted there hides
# what the running system and the next boot read from it). Deeper paths (/var/lib/containers,
# /srv/data) are fine, except under the kernel's and the runtime's own filesystems.
SYSTEM_MOUNT_POINTS = frozenset(
    [
        "/",
        "/bin",
        "/boot",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/root",
        "/sbin",
        "/tmp",
        "/usr",
        "/var",
    ]
)
_VIRTUAL_TREES = ("/boot", "/dev", "/etc", "/proc", "/run", "/sys", "/usr")


def _mount_point(value: str) -> str:
    if value in SYSTEM_MOUNT_POINTS or any(_under(value, t) for t in _VIRTUAL_TREES):
        raise ValueError(
            f"{value!r} is a system directory: mount the storage device at a path of its own "
            "(e.g. /space or /var/lib/containers)"
        )
    return value


MountPoint = Annotated[
    str,
    AfterValidator(_absolute_path),
    # /etc/fstab separates fields by whitespace: a path is one plain field.
    AfterValidator(_pattern(_UNIT_PATH_RE, "mount point (letters, digits, '_', '.', '-', '/')")),
    AfterValidator(_mount_point),
]


class StorageDevice(Strict):
    device: DevicePath
    mount_point: MountPoint
    fstype: Literal["ext4", "xfs"] = "ext4"
    # Create a filesystem only when the device carries no signature at all.
    format_if_blank: bool = False


# NVIDIA's repository base: https, host[:port], plain path components (written into a .repo
# file or an apt source line as it is, so nothing in it needs quoting).
_REPO_URL_RE = re.compile(rf"^https://{_HOST}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._~-]+)*$")


def _repo_url(value: str) -> str:
    if not isinstance(value, str) or not _REPO_URL_RE.match(value):
        raise ValueError(
            f"{value!r} is not an https URL of a host and plain path components "
            "(e.g. https://nvidia.github.io/libnvidia-container)"
        )
    return value


class NvidiaRepository(Strict):
    """NVIDIA's package repository for the container toolkit (neither Fedora nor Debian ships
    ``nvidia-container-toolkit``)."""

    # Write the dnf .repo file or the apt source (with its key) where NVIDIA is enabled; false
    # when the host already gets the toolkit from a source of its own (a mirror, a hand-written
    # file: one naming this URL is detected and left alone anyway).
    enabled: bool = True
    url: Annotated[str, AfterValidator(_repo_url)] = "https://nvidia.github.io/libnvidia-container"


class RootlessUser(Strict):
    name: UserName
    subid_start: int | None = Field(default=None, ge=1)
    subid_count: int = Field(default=65536, ge=65536)
    linger: bool = True
    # The user's own podman.socket (a user unit) and DOCKER_HOST pointing at it in the user's
    # sessions: Docker API clients (docker compose v2, testcontainers, devcontainers) rootless.
    docker_api: bool = False


def _host_ip(value):
    """An IPv4 or IPv6 address, without an IPv6 zone id: Python accepts any text after '%'
    (a CR included), and podman publishes on an address, not on a zone."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = value
    elif isinstance(value, str):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    else:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ValueError(
            f"{str(address)!r}: an IPv6 zone id (%...) cannot be published; give the address"
        )
    return address


HostIP = Annotated[
    ipaddress.IPv4Address | ipaddress.IPv6Address,
    PlainValidator(_host_ip),
    PlainSerializer(str, when_used="json"),
]


class Port(Strict):
    host: int = Field(ge=1, le=65535)
    container: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: HostIP | None = None

    @property
    def spec(self) -> str:
        """``[ip:]host:container/protocol``, as podman's --publish and quadlet's PublishPort=."""
        ip = ""
        if self.host_ip is not None:
            ip = f"[{self.host_ip}]:" if self.host_ip.version == 6 else f"{self.host_ip}:"
        return f"{ip}{self.host}:{self.container}/{self.protocol}"


class Volume(Strict):
    """A bind mount of ``source`` (a directory under ``<service_root>/<service>/``, created
    by the op) or a podman named ``volume``: exactly one of the two."""

    source: str | None = None
    volume: str | None = None
    target: MountTarget
    read_only: bool = False
    # SELinux label podman gives a bind source: "private" (:Z, this container only) or
    # "shared" (:z, containers that bind the same directory). Ignored without SELinux.
    label: Literal["private", "shared"] = "private"

    @model_validator(mode="after")
    def _one_source(self):
        if (self.source is None) == (self.volume is None):
            raise ValueError(
                "a volume has exactly one of 'source' (a directory under the "
                "service directory) or 'volume' (a named podman volume)"
            )
        if self.source is not None:
            if not _RELATIVE_RE.match(self.source) or ".." in self.source.split("/"):
                raise ValueError(
                    f"source {self.source!r} must be a relative path under the service "
                    "directory (letters, digits, '_', '.', '-'; no '..')"
                )
            if self.source.split("/")[0] == SECRETS_FILE:
                raise ValueError(f"source {self.source!r} is the service's secrets file")
        if self.volume is not None and "label" in self.model_fields_set:
            raise ValueError("label applies to a bind mount (source); podman labels volumes")
        if self.volume is not None and not _VOLUME_NAME_RE.match(self.volume):
            raise ValueError(f"{self.volume!r} is not a valid named volume")
        return self

    def spec(self, service_dir: str) -> str:
        """podman's --volume and quadlet's Volume= value, a bind source under ``service_dir``."""
        if self.source is not None:
            relabel = "Z" if self.label == "private" else "z"
            options = f"ro,{relabel}" if self.read_only else relabel
            return f"{service_dir}/{self.source}:{self.target}:{options}"
        return f"{self.volume}:{self.target}" + (":ro" if self.read_only else "")


def _refuse(key: str, message: str, value=None):
    """A ValidationError located at ``key`` of the model being validated (``a.b[0].c``), so
    the host's error names the key rather than the whole entry; ``value`` is what was given
    there (the error shows it unless the message already does, or it is a table)."""
    loc: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    raise ValidationError.from_exception_data(
        "Service", [InitErrorDetails(type=error, loc=tuple(loc), input=value)]
    )


def _seconds(duration: str) -> float:
    if not isinstance(duration, str) or not _DURATION_RE.match(duration):
        # Only reached by data that skipped validation (model_construct).
        raise ValueError(f"{duration!r} is not a duration (30s, 500ms, 5m, 1h) for a unit")
    number = int(re.match(r"^[0-9]+", duration)[0])
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[duration[len(str(number)) :]]


class HealthCheck(Strict):
    command: UnitText = Field(min_length=1)  # run by podman with /bin/sh -c in the container
    interval: str = "30s"
    # None: podman's own default (30s, 3, 0s), and nothing is written for it.
    timeout: str | None = None
    retries: int | None = Field(default=None, ge=1, le=100)
    start_period: str | None = None

    @model_validator(mode="after")
    def _duration(self):
        for key in ("interval", "timeout", "start_period"):
            value = getattr(self, key)
            if value is not None and not _DURATION_RE.match(value):
                raise ValueError(f"{key} {value!r} must look like 30s, 500ms, 5m or 1h")
        for key in ("interval", "timeout"):
            value = getattr(self, key)
            if value is not None and _seconds(value) == 0:
                raise ValueError(f"{key} {value!r} must be longer than 0 (0 disables the check)")
        return self

    @property
    def timeout_s(self) -> float:
        return _seconds(self.timeout or "30s")

    @property
    def budget(self) -> int:
        """Seconds a start may take to become healthy: the start period, then ``retries``
        checks each ``interval`` apart that may each take ``timeout``."""
        timeout = self.timeout_s
        retries = self.retries or 3
        period = _seconds(self.start_period or "0s")
        return int(period + retries * (_seconds(self.interval) + timeout)) + 1


# Runtime options (podman run's, quadlet's [Container] keys). Sizes as podman reads them:
# a number of bytes, or with b, k, m or g (kibi-, mebi-, gibibytes).
_SIZE_RE = re.compile(r"^([0-9]{1,15})([bkmg]?)$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# podman refuses a memory limit under 6 MiB.
MIN_MEMORY = 6 * 1024**2


def size_bytes(value: str) -> int:
    number, unit = _SIZE_RE.match(value).groups()
    return int(number) * _SIZE_UNITS[unit]


Size = Annotated[
    str,
    AfterValidator(_pattern(_SIZE_RE, "size (a number of bytes, or with b, k, m or g: 512m)")),
]
# capabilities(7), as podman names them (with or without CAP_, any case); ALL for every one.
CAPABILITIES = frozenset(
    "CAP_" + c
    for c in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
        "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
        "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
        "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
        "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
        "CHECKPOINT_RESTORE"
    ).split()
)


def _capability(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a capability name")
    upper = value.upper()
    if upper == "ALL":
        return upper
    name = upper if upper.startswith("CAP_") else "CAP_" + upper
    if name not in CAPABILITIES:
        raise ValueError(f"{value!r} is not a Linux capability (capabilities(7): NET_ADMIN, ...)")
    return name


Capability = Annotated[str, BeforeValidator(_capability)]
# The resource names podman's --ulimit knows (docker/go-units).
ULIMITS = frozenset(
    "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack".split()
)


def _ulimit(value) -> str:
    """``soft:hard`` (or one number for both); -1 is unlimited."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = isinstance(text, str) and re.match(r"^(-1|[0-9]{1,19})(?::(-1|[0-9]{1,19}))?$", text)
    if not match:
        raise ValueError(f"{value!r} is not a ulimit (soft[:hard], numbers, -1 unlimited)")
    soft, hard = int(match[1]), int(match[2] if match[2] is not None else match[1])
    if hard != -1 and (soft == -1 or soft > hard):
        raise ValueError(f"{value!r}: the soft limit is above the hard limit")
    return f"{soft}:{hard}"


def _ulimit_name(value: str) -> str:
    if value not in ULIMITS:
        raise ValueError(f"{value!r} is not a ulimit podman knows ({', '.join(sorted(ULIMITS))})")
    return value


# Sysctls podman lets a container set: those of its own IPC and network namespaces.
_IPC_SYSCTLS = frozenset(
    "kernel.msgmax kernel.msgmnb kernel.msgmni kernel.sem kernel.shmall kernel.shmmax "
    "kernel.shmmni kernel.shm_rmid_forced".split()
)
_SYSCTL_NAME_RE = re.compile(r"^[a-z0-9_]+(?:\.[A-Za-z0-9_-]+)+$")


def _sysctl_name(value: str) -> str:
    if not _SYSCTL_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a sysctl name (dotted: net.core.somaxconn)")
    if not (value in _IPC_SYSCTLS or value.startswith(("fs.mqueue.", "net."))):
        raise ValueError(
            f"{value!r} is not namespaced: podman sets only net.*, fs.mqueue.* and the IPC "
            "kernel.msg*/sem/shm* sysctls in a container"
        )
    return value


# One word: quadlet's Sysctl= is a space-separated list (so no "250 32000 32 128").
_SYSCTL_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:/+-]{1,64}$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# A uid/gid or a name the image's /etc/passwd or /etc/group holds.
_ID_RE = re.compile(r"^(?:[0-9]{1,10}|[a-z_][a-z0-9_-]{0,31})$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_MODE_RE = re.compile(r"^[0-7]{3,4}$")
_TEMPLATE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.j2$")
# podman's --log-opt max-size (go-units: b, k/kb, m/mb, g/gb).
_LOG_SIZE_RE = re.compile(r"^[0-9]{1,15}(?:[kmg]b?|b)?$")
ContainerId = Annotated[str, AfterValidator(_pattern(_ID_RE, "uid/gid or user/group name"))]


class Tmpfs(Strict):
    """A tmpfs mounted at ``target`` in the container (``--tmpfs``, quadlet's Tmpfs=)."""

    target: MountTarget
    size: Size | None = None
    mode: Annotated[str, AfterValidator(_pattern(_MODE_RE, "octal mode (1777)"))] | None = None

    @property
    def spec(self) -> str:
        options = [f"size={self.size}"] * bool(self.size) + [f"mode={self.mode}"] * bool(self.mode)
        return self.target + (":" + ",".join(options) if options else "")


# A systemd calendar spec (systemd.time(7)): words of digits, letters (weekdays, time zones),
# and * : - . / ~ , + _ — written into OnCalendar= as they are, one space between words.
_CALENDAR_WORD_RE = re.compile(r"^[A-Za-z0-9*:.,/~+_-]+$")


def _calendar(value: str) -> str:
    words = value.split()
    if not words or len(value) > 200 or not all(_CALENDAR_WORD_RE.match(w) for w in words):
        raise ValueError(
            f"{value!r} is not a calendar spec (systemd.time(7): daily, *:0/5, Mon *-*-* 03:00)"
        )
    return " ".join(words)


class Timer(Strict):
    """A periodic job of its service: ``command`` run in the service's container (``podman
    exec``) at ``on_calendar``, as the systemd units ``<service>-<name>.timer`` and
    ``<service>-<name>.service``."""

    name: ServiceName
    on_calendar: Annotated[str, AfterValidator(_calendar)] | None = None
    command: list[UnitText] = Field(default_factory=list)
    container_user: ContainerId | None = None  # podman exec --user (Nextcloud's cron: www-data)
    present: bool = True  # false: stopped, disabled, its two unit files removed

    @model_validator(mode="after")
    def _command(self):
        if self.present and not (self.command and self.on_calendar):
            raise ValueError("a present timer has an on_calendar and a command to run")
        if ";" in self.command:
            raise ValueError("command: a lone ';' separates commands in systemd units")
        return self


# --- managed files, reload, networks, pass-through keys (issue 18, items 1 and 2) -----------

SERVICE_TEMPLATES_DIR = TEMPLATES / "services"
# Read once at import (the package's own files): name -> source.
SERVICE_TEMPLATES = {
    p.name: p.read_text(encoding="utf-8") for p in sorted(SERVICE_TEMPLATES_DIR.glob("*.j2"))
}


def template_secrets(name: str) -> set[str]:
    """The secret names a service-file template reads (``{{ secrets.NAME }}`` or
    ``{{ secrets["NAME"] }}``); any other use of ``secrets`` (a loop, a computed name) is a
    ValueError: which secrets reach a file must be known before it is rendered."""
    from jinja2 import Environment, nodes

    tree = Environment().parse(SERVICE_TEMPLATES[name])
    named: set[str] = set()
    covered: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "secrets":
            if isinstance(node, nodes.Getattr):
                named.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                named.add(node.arg.value)
            else:
                continue
            covered.add(id(target))
    loose = [n for n in tree.find_all(nodes.Name) if n.name == "secrets" and id(n) not in covered]
    if loose:
        raise ValueError(
            f"template {name}: secrets are read by name only ({{{{ secrets.NAME }}}}), "
            f"line {loose[0].lineno}"
        )
    return named


TemplateName = Annotated[
    str, AfterValidator(_pattern(_TEMPLATE_RE, "template file name under templates/services/"))
]


class ServiceFile(Strict):
    """A file under the service's directory, written by the operation: ``content`` as it is,
    or ``template`` (a file of templates/services/) rendered with jinja2."""

    path: str
    content: str | None = None
    template: (
        Annotated[
            str,
            AfterValidator(_pattern(_TEMPLATE_RE, "template file name under templates/services/")),
        ]
        | None
    ) = None
    vars: dict[EnvName, object] = Field(default_factory=dict)  # the template's ``vars``
    owner: ContainerId | None = None  # default: the service's owner (root, or its user)
    group: ContainerId | None = None
    mode: Annotated[str, AfterValidator(_pattern(_MODE_RE, "octal mode (0640)"))] = "0644"
    present: bool = True  # false: the file is removed

    @model_validator(mode="after")
    def _valid(self):
        parts = self.path.split("/")
        if not _RELATIVE_RE.match(self.path) or ".." in parts:
            _refuse(
                "path",
                f"{self.path!r} must be a relative path under the service directory (letters, "
                "digits, '_', '.', '-'; no '..', no leading '/')",
                self.path,
            )
        if parts[0] == SECRETS_FILE:
            _refuse("path", f"{self.path!r} is the service's secrets file", self.path)
        if int(self.mode, 8) > 0o777:
            _refuse("mode", f"{self.mode!r}: no setuid, setgid or sticky bit on a file", self.mode)
        if self.present and (self.content is None) == (self.template is None):
            raise ValueError(f"file {self.path}: exactly one of 'content' or 'template'")
        if self.content is not None and self.vars:
            _refuse("vars", "vars are for a template; content is written as it is", {})
        if self.template is not None:
            if self.template not in SERVICE_TEMPLATES:
                _refuse(
                    "template",
                    f"{self.template!r} is not in templates/services/ (there: "
                    f"{', '.join(SERVICE_TEMPLATES) or 'nothing'})",
                    self.template,
                )
            if self.secrets and int(self.mode, 8) & 0o007:
                _refuse(
                    "mode",
                    f"{self.mode!r} lets every user of the host read the secrets "
                    f"{', '.join(sorted(self.secrets))} it holds (0600 or 0640)",
                    self.mode,
                )
        return self

    @property
    def secrets(self) -> set[str]:
        """The service secrets this file's template reads."""
        return template_secrets(self.template) if self.template else set()


# podman kill --signal: the signals a server reloads on (HUP for most, USR1/USR2 for some).
RELOAD_SIGNALS = ("HUP", "USR1", "USR2", "WINCH", "QUIT", "INT", "TERM")


class Reload(Strict):
    """How the service re-reads its managed files without a restart: a ``signal`` sent to
    its main process (``podman kill --signal``), or a ``command`` run in its container
    (``podman exec``). Exactly one."""

    signal: Literal[RELOAD_SIGNALS] | None = None  # type: ignore[valid-type]
    command: list[UnitText] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one(self):
        if (self.signal is None) == (not self.command):
            raise ValueError("reload has exactly one of 'signal' (HUP, USR1, ...) or 'command'")
        if ";" in self.command:
            raise ValueError("command: a lone ';' separates commands in systemd units")
        return self


_ALIAS_RE = _HOSTNAME_RE


class NetworkAttachment(Strict):
    """A podman network the container joins, with names it answers to there (DNS aliases)."""

    name: ServiceName
    aliases: list[
        Annotated[str, AfterValidator(_pattern(_ALIAS_RE, "network alias (a host name)"))]
    ] = Field(default_factory=list)

    @property
    def options(self) -> str:
        """``:alias=a,alias=b`` (or nothing): what follows the network's name in podman's
        ``--network`` and quadlet's ``Network=`` (quadlet 4.4 keeps it after ``x.network``)."""
        return (":" + ",".join(f"alias={a}" for a in self.aliases)) if self.aliases else ""

    @property
    def spec(self) -> str:
        """podman run's ``--network`` value."""
        return self.name + self.options


# Quadlet [Container] keys passed through as they are (``quadlet_keys``): key -> (podman run's
# flag, the podman release whose quadlet has the key, read from pkg/systemd/quadlet/quadlet.go
# at each tag v4.4.0 to v5.8.0). Every flag is in podman 4.3's podman-run(1). An older quadlet
# gets PodmanArgs=--flag=value; the plain unit, --flag=value. "bool" keys take true/false.
PASSTHROUGH_KEYS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "AddHost": ("--add-host", (5, 3), "value"),
    "Annotation": ("--annotation", (4, 4), "word"),  # quadlet splits it into words
    "DNS": ("--dns", (4, 7), "value"),
    "DNSOption": ("--dns-option", (4, 7), "value"),
    "DNSSearch": ("--dns-search", (4, 7), "value"),
    "Entrypoint": ("--entrypoint", (5, 0), "value"),
    "EnvironmentHost": ("--env-host", (4, 4), "bool"),
    "ExposeHostPort": ("--expose", (4, 4), "value"),
    "GIDMap": ("--gidmap", (4, 8), "value"),
    "GroupAdd": ("--group-add", (5, 1), "value"),
    "HealthOnFailure": ("--health-on-failure", (4, 5), "value"),
    "IP": ("--ip", (4, 5), "value"),
    "IP6": ("--ip6", (4, 5), "value"),
    "Mount": ("--mount", (4, 5), "value"),
    "Pull": ("--pull", (4, 6), "value"),
    "StopSignal": ("--stop-signal", (5, 2), "value"),
    "SubGIDMap": ("--subgidname", (4, 8), "value"),
    "SubUIDMap": ("--subuidname", (4, 8), "value"),
    "Timezone": ("--tz", (4, 4), "value"),
    "UIDMap": ("--uidmap", (4, 8), "value"),
}
# Keys with a field of their own (the field is validated and rendered for both units).
_KEYS_WITH_A_FIELD = {
    "ContainerName": "name",
    "Image": "image",
    "Exec": "command",
    "Environment": "env",
    "EnvironmentFile": "secrets",
    "PublishPort": "ports",
    "Volume": "volumes",
    "AddDevice": "devices",
    "Network": "network / networks",
    "NetworkAlias": "networks[].aliases",
    "ShmSize": "shm_size",
    "Memory": "memory",
    "PidsLimit": "pids_limit",
    "AddCapability": "cap_add",
    "DropCapability": "cap_drop",
    "User": "container_user",
    "Group": "container_group",
    "WorkingDir": "working_dir",
    "HostName": "hostname",
    "StopTimeout": "stop_timeout",
    "RunInit": "init",
    "ReadOnly": "read_only",
    "Tmpfs": "tmpfs",
    "Label": "labels",
    "Ulimit": "ulimits",
    "Sysctl": "sysctls",
    "UserNS": "userns",
    "LogDriver": "log_driver",
    "LogOpt": "log_opts",
    "HealthCmd": "healthcheck",
    "HealthInterval": "healthcheck",
    "HealthTimeout": "healthcheck",
    "HealthRetries": "healthcheck",
    "HealthStartPeriod": "healthcheck",
    "Notify": "healthcheck",
}


def _passthrough(value: dict) -> dict[str, list[str]]:
    """``quadlet_keys``: each key one of PASSTHROUGH_KEYS, its value a string (or a list of
    them for a key given several times; a bool key true or false), each writable into a unit
    by the one quoting function (``operations._common.unit_value``)."""
    from operations._common import unit_value  # the one place values meet unit syntax

    if not isinstance(value, dict):
        raise ValueError("quadlet_keys is a table {Key: value or [values]}")
    result: dict[str, list[str]] = {}
    for key in sorted(value):
        given = value[key]
        if key not in PASSTHROUGH_KEYS:
            field = _KEYS_WITH_A_FIELD.get(key)
            hint = (
                f"it has a field of its own: {field}"
                if field
                else f"allowed: {', '.join(PASSTHROUGH_KEYS)}"
            )
            _refuse(key, f"{key!r} is not passed through ({hint})", given)
        _flag, _since, kind = PASSTHROUGH_KEYS[key]
        items = given if isinstance(given, list) else [given]
        values = []
        for item in items:
            if kind == "bool":
                if not isinstance(item, bool) or isinstance(given, list):
                    _refuse(key, f"{key} is true or false", given)
                values.append("true" if item else "false")
                continue
            if not isinstance(item, str) or not item:
                _refuse(key, f"{key} takes text (or a list of texts)", given)
            try:
                unit_value(item, word=kind == "word")
            except ValueError as error:
                _refuse(key, str(error), item)
            values.append(item)
        result[key] = values
    return result


class Restart(StrEnum):
    always = "always"
    on_failure = "on-failure"
    no = "no"


class PullPolicy(StrEnum):
    # Pull the image only when the store lacks it: a no-op run never reaches a registry, a
    # tag moved to other content upstream is not noticed.
    missing = "missing"
    # Pull the tag on every run and restart the service when it now names another image
    # than its container runs: each run reaches the registry and reports a change.
    always = "always"


class Service(Strict):
    """One production service: a container run by systemd (standard §3.1, §7.2)."""

    name: Annotated[ServiceName, AfterValidator(_not_reserved)]
    # Fully qualified (a registry host first) with an explicit tag or digest: a systemd unit
    # has no TTY to answer a short-name prompt, and "latest" is not a version. Not needed to
    # remove a service.
    image: str = ""
    command: list[UnitText] = Field(default_factory=list)
    env: dict[EnvName, UnitText] = Field(default_factory=dict)
    secrets: dict[EnvName, SecretSource] = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    restart: Restart = Restart.always
    pull: PullPolicy = PullPolicy.missing
    requires: list[ServiceName] = Field(default_factory=list)
    network: ServiceName | None = None
    healthcheck: HealthCheck | None = None
    user: UserName | None = None  # rootless: runs under this user's systemd
    present: bool = True
    remove_data: bool = False  # with present: false, also delete the directory and volumes
    # Runtime options: see the README's Services table; None/empty: podman's default.
    shm_size: Size | None = None
    ipc: Literal["host", "private", "shareable", "none"] | None = None
    memory: Size | None = None
    cpus: float | None = Field(default=None, gt=0, le=1024)
    pids_limit: int | None = Field(default=None, ge=-1)
    cap_add: list[Capability] = Field(default_factory=list)
    cap_drop: list[Capability] = Field(default_factory=list)
    container_user: ContainerId | None = None
    container_group: ContainerId | None = None
    working_dir: MountTarget | None = None
    hostname: (
        Annotated[str, AfterValidator(_pattern(_HOSTNAME_RE, "host name (RFC 1123)"))] | None
    ) = None
    host_network: bool = False
    stop_timeout: int | None = Field(default=None, ge=0, le=3600)
    init: bool = False
    read_only: bool = False
    tmpfs: list[Tmpfs] = Field(default_factory=list)
    labels: dict[Annotated[str, AfterValidator(_pattern(_LABEL_RE, "label key"))], UnitText] = (
        Field(default_factory=dict)
    )
    ulimits: dict[
        Annotated[str, AfterValidator(_ulimit_name)], Annotated[str, BeforeValidator(_ulimit)]
    ] = Field(default_factory=dict)
    sysctls: dict[
        Annotated[str, AfterValidator(_sysctl_name)],
        Annotated[str, AfterValidator(_pattern(_SYSCTL_VALUE_RE, "sysctl value (one word)"))],
    ] = Field(default_factory=dict)
    userns: Literal["auto", "host", "keep-id", "nomap"] | None = None
    log_driver: Literal["journald", "k8s-file", "none", "passthrough"] | None = None
    log_opts: dict[Literal["max-size", "path", "tag"], UnitText] = Field(default_factory=dict)
    timers: list[Timer] = Field(default_factory=list)
    files: list[ServiceFile] = Field(default_factory=list)
    reload: Reload | None = None
    networks: list[NetworkAttachment] = Field(default_factory=list)
    quadlet_keys: Annotated[dict[str, list[str]], BeforeValidator(_passthrough)] = Field(
        default_factory=dict
    )

    @property
    def attachments(self) -> list[NetworkAttachment]:
        """Every network the container joins: ``network`` (no aliases), then ``networks``."""
        # Not validated again: the renderer's quoting refuses what skipped validation.
        first = [NetworkAttachment.model_construct(name=self.network, aliases=[])] * bool(
            self.network
        )
        return first + list(self.networks)

    @model_validator(mode="after")
    def _consistent(self):
        if self.present or self.image:
            self._check_image()
        for device in self.devices:
            if not _CONTAINER_DEVICE_RE.match(device):
                raise ValueError(
                    f"device {device!r} is neither a /dev path nor a CDI name (vendor/class=name)"
                )
        clash = sorted(set(self.env) & set(self.secrets))
        if clash:
            raise ValueError(f"{', '.join(clash)} set in both env and secrets")
        if ";" in self.command:
            raise ValueError("command: a lone ';' separates commands in systemd units")
        if self.name in self.requires:
            raise ValueError("a service cannot require itself")
        self._check_runtime()
        for what, values in (
            ("requires", self.requires),
            ("ports", [(p.host, p.protocol, str(p.host_ip)) for p in self.ports]),
            ("volume targets", [v.target for v in self.volumes]),
        ):
            dupes = _repeated(values)
            if dupes:
                raise ValueError(f"{what} repeated: {', '.join(map(str, dupes))}")
        return self

    def _check_runtime(self) -> None:
        # What podman itself refuses together, refused here under the key it concerns.
        if self.shm_size and self.ipc in ("host", "none"):
            _refuse("shm_size", f"ipc {self.ipc!r} has no /dev/shm of its own", self.shm_size)
        if self.memory and size_bytes(self.memory) < MIN_MEMORY:
            _refuse("memory", f"{self.memory!r} is under podman's minimum, 6m", self.memory)
        if self.pids_limit == 0:
            _refuse("pids_limit", "-1 is unlimited, 0 is not a limit", 0)
        if self.container_group and not self.container_user:
            _refuse(
                "container_group",
                "needs container_user (podman's --user user:group)",
                self.container_group,
            )
        if self.host_network:
            if self.network:
                _refuse("network", "host_network is set: the host's, not another", self.network)
            if self.ports:
                _refuse(
                    "ports",
                    "host_network is set: the ports are the host's, none to publish",
                    [p.model_dump(mode="json") for p in self.ports],
                )
        for key in sorted(self.sysctls):
            if self.host_network and key.startswith("net."):
                _refuse(
                    f"sysctls.{key}", "host_network is set: the host's sysctl", self.sysctls[key]
                )
            if self.ipc == "host" and not key.startswith("net."):
                _refuse(f"sysctls.{key}", "ipc is host: the host's sysctl", self.sysctls[key])
        for cap in self.cap_drop:
            if cap in self.cap_add:
                _refuse("cap_drop", f"{cap} is also in cap_add", cap)
        for what, values in (
            ("cap_add", self.cap_add),
            ("cap_drop", self.cap_drop),
            ("tmpfs", [t.target for t in self.tmpfs]),
        ):
            dupes = _repeated(values)
            if dupes:
                _refuse(what, f"repeated: {', '.join(dupes)}", dupes[0])
        if self.userns in ("keep-id", "nomap") and not self.user:
            # podman: "keep-id is only supported in rootless mode" (4.3), and nomap the same.
            _refuse(
                "userns", f"{self.userns} maps a rootless user's own id: needs 'user'", self.userns
            )
        if self.log_opts and self.log_driver in ("none", "passthrough"):
            _refuse("log_opts", f"log_driver {self.log_driver} keeps no log to set options for", {})
        size = self.log_opts.get("max-size")
        if size is not None and not _LOG_SIZE_RE.match(size):
            _refuse("log_opts.max-size", f"{size!r} is not a size (10mb, 1g, 500k)", size)
        path = self.log_opts.get("path")
        if path is not None:
            if self.log_driver != "k8s-file":
                _refuse("log_opts.path", "a log file path is for log_driver k8s-file", path)
            try:
                _absolute_path(path)
                _pattern(_UNIT_PATH_RE, "log file path")(path)
            except ValueError as error:
                _refuse("log_opts.path", str(error), path)
        if "tag" in self.log_opts and self.log_driver not in (None, "journald"):
            _refuse("log_opts.tag", "a tag is for log_driver journald (podman's docs)", {})
        dupes = _repeated(t.name for t in self.timers)
        if dupes:
            _refuse("timers", f"names repeated: {', '.join(dupes)}", dupes[0])
        for i, tmpfs in enumerate(self.tmpfs):
            if tmpfs.target in {v.target for v in self.volumes}:
                _refuse(
                    f"tmpfs[{i}].target", f"{tmpfs.target} is a volume's target too", tmpfs.target
                )
        self._check_files()
        self._check_networks()

    def _check_files(self) -> None:
        dupes = _repeated(f.path for f in self.files)
        if dupes:
            _refuse("files", f"paths repeated: {', '.join(dupes)}", dupes[0])
        paths = {f.path for f in self.files}
        sources = {v.source for v in self.volumes if v.source is not None}
        for i, file in enumerate(self.files):
            if file.path in sources:
                _refuse(
                    f"files[{i}].path", f"{file.path} is a volume's source directory", file.path
                )
            parents = {
                "/".join(file.path.split("/")[:d]) for d in range(1, file.path.count("/") + 1)
            }
            inside = sorted(parents & paths)
            if inside:
                _refuse(f"files[{i}].path", f"{inside[0]} is a file, not a directory", file.path)
            unknown = sorted(file.secrets - set(self.secrets)) if file.present else []
            if unknown:
                _refuse(
                    f"files[{i}].template",
                    f"{file.template} reads secrets.{unknown[0]}, which is not one of the "
                    f"service's secrets ({', '.join(sorted(self.secrets)) or 'none'})",
                    file.template,
                )

    def _check_networks(self) -> None:
        names = [n.name for n in self.attachments]
        dupes = _repeated(names)
        if dupes:
            _refuse("networks", f"networks repeated: {', '.join(dupes)}", dupes[0])
        if self.host_network and self.networks:
            _refuse("networks", "host_network is set: the host's, not another", names[0])
        for i, attachment in enumerate(self.networks):
            dupes = _repeated(attachment.aliases)
            if dupes:
                _refuse(f"networks[{i}].aliases", f"repeated: {', '.join(dupes)}", dupes[0])

    def _check_image(self) -> None:
        if not self.image:
            raise ValueError("image is required for a present service")
        registry = self.image.split("/", 1)[0] if "/" in self.image else ""
        if not ("." in registry or ":" in registry or registry == "localhost"):
            raise ValueError(
                f"image {self.image!r} must start with its registry (docker.io/library/..., "
                "quay.io/...): systemd cannot answer a short-name prompt"
            )
        match = _IMAGE_RE.match(self.image)
        if not match:
            raise ValueError(
                f"image {self.image!r} is not a valid image reference "
                "(registry/path:tag or @sha256:digest; no spaces or shell characters)"
            )
        if not (match["tag"] or match["digest"]):
            raise ValueError(f"image {self.image!r} needs an explicit tag or digest")


# Read once at import (the package's own files).
COMPOSE_TEMPLATES = frozenset(p.name for p in (TEMPLATES / "compose").glob("*.j2"))
# What each compose template reads from vars: templates/compose/<name without .j2>.vars.json,
# {var: type}, a trailing "?" for an optional one.
_VAR_TYPES = {"str": str, "int": int, "bool": bool, "list[str]": list[str]}
COMPOSE_VARS = {
    name: json.loads((TEMPLATES / "compose" / f"{name[:-3]}.vars.json").read_text())
    for name in COMPOSE_TEMPLATES
}
# Names the rendering itself gives every template.
RESERVED_VARS = frozenset({"project", "managed_by"})


def _check_vars(template: str, values: dict) -> None:
    declared = COMPOSE_VARS[template]
    problems = [
        f"vars.{k}: reserved (the template's own {k})" for k in sorted(set(values) & RESERVED_VARS)
    ]
    problems += [
        f"vars.{k}: not a variable of {template} (it reads {', '.join(sorted(declared))})"
        for k in sorted(set(values) - set(declared) - RESERVED_VARS)
    ]
    for key, kind in declared.items():
        if key not in values:
            if not kind.endswith("?"):
                problems.append(f"vars.{key}: required by {template} ({kind})")
            continue
        try:
            TypeAdapter(_VAR_TYPES[kind.rstrip("?")]).validate_python(values[key], strict=True)
        except ValidationError:
            problems.append(
                f"vars.{key}: {template} expects {kind.rstrip('?')}, got {values[key]!r}"
            )
    if problems:
        raise ValueError("; ".join(problems))


_NAME_PART_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


def _file_name(value: str) -> str:
    """A relative path in the project directory: plain parts (dotfiles such as .env allowed),
    no '.' or '..'."""
    parts = value.split("/")
    if any(p in (".", "..") or not _NAME_PART_RE.match(p) for p in parts):
        raise ValueError(
            f"{value!r} is not a file name in the project directory (letters, digits, '_', "
            "'.', '-' between slashes; no '..')"
        )
    return value


class ComposeSource(Strict):
    """Where a compose project's file comes from when it is not a template: a file on the
    controller (``src``: copied into the project directory, checksummed) or one already on
    the host (``host_path``: left in place, watched by its checksum)."""

    src: AbsPath | None = None
    host_path: ServiceRoot | None = None
    # Extra files (``files``): the copy's mode; .env and config files may hold passwords.
    mode: Annotated[str, AfterValidator(_pattern(_MODE_RE, "octal mode (0600)"))] = "0600"

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.src is None) == (self.host_path is None):
            raise ValueError(
                "a compose file comes from exactly one of 'src' (a file on the controller) "
                "or 'host_path' (a file already on the host)"
            )
        return self

    @property
    def where(self) -> str:
        return f"{self.src} on the controller" if self.src else f"{self.host_path} on the host"


# podman-compose's bring-up, the wait for every container to run and the boot unit's start:
# the default time limit of each (seconds; a project's ``timeout`` overrides it).
COMPOSE_TIMEOUT = 300


class ComposeProject(Strict):
    """A compose project (standard §2.3, §7.2: the workstation pattern): a compose file
    rendered from ``templates/compose/<template>`` or the user's own (``file``), in
    ``<compose_root>/<name>/`` (or ``directory``), brought up with podman-compose as root or
    as ``user``, started at boot by the unit ``podman-compose-<name>.service``."""

    name: ServiceName  # the podman-compose project name (-p)
    template: (
        Annotated[
            str,
            AfterValidator(_pattern(_TEMPLATE_RE, "template file name under templates/compose/")),
        ]
        | None
    ) = None
    vars: dict[EnvName, object] = Field(default_factory=dict)  # given to the template
    file: ComposeSource | None = None  # the user's own compose file, instead of a template
    # Files beside the compose file (.env, config files), by name in the project directory.
    files: dict[Annotated[str, AfterValidator(_file_name)], ComposeSource] = Field(
        default_factory=dict
    )
    directory: ServiceRoot | None = None  # default: <compose_root>/<name>, or host_path's
    user: UserName | None = None  # rootless: podman-compose runs as this user
    timeout: int = Field(default=COMPOSE_TIMEOUT, ge=10, le=3600)  # seconds, each bring-up
    present: bool = True  # False: unit and copied files removed, podman-compose down (data kept)

    @model_validator(mode="after")
    def _template_exists(self):
        if self.present and (self.template is None) == (self.file is None):
            raise ValueError("a present compose project has exactly one of 'template' or 'file'")
        if self.template is not None and self.template not in COMPOSE_TEMPLATES:
            raise ValueError(
                f"template {self.template!r} is not in templates/compose/ "
                f"(there: {', '.join(sorted(COMPOSE_TEMPLATES)) or 'nothing'})"
            )
        if self.template is not None and self.present:
            _check_vars(self.template, self.vars)
        if self.vars and self.template is None:
            raise ValueError("vars are for a template; a compose file of your own has none")
        host_file = self.file.host_path if self.file else None
        if host_file and self.directory and self.directory != host_file.rsplit("/", 1)[0]:
            raise ValueError(
                f"file.host_path {host_file} is not in directory {self.directory}: the project "
                "directory is the compose file's (podman-compose reads .env from there)"
            )
        if COMPOSE_FILE in self.files or (host_file and host_file.rsplit("/", 1)[1] in self.files):
            raise ValueError("files: the compose file itself is not an extra file")
        return self

    def project_directory(self, root: str) -> str:
        if self.file and self.file.host_path:
            return self.file.host_path.rsplit("/", 1)[0]
        return self.directory or f"{root}/{self.name}"

    @property
    def compose_file(self) -> str:
        """The compose file's name in the project directory."""
        if self.file and self.file.host_path:
            return self.file.host_path.rsplit("/", 1)[1]
        return COMPOSE_FILE

    @property
    def unit(self) -> str:
        return f"podman-compose-{self.name}.service"


# A compose project's file in its directory when this package writes it (template or src).
COMPOSE_FILE = "compose.yaml"


_REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HTTPS_RE = re.compile(r"^https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/[A-Za-z0-9._~/%+-]*$")


class PodmanDesktop(Strict):
    """Podman Desktop, opt-in (standard §3.2 "optional", §4): off by default everywhere."""

    enabled: bool = False
    # Linux workstations: the Flatpak remote it is installed from.
    flatpak_remote: Annotated[str, AfterValidator(_pattern(_REMOTE_RE, "remote name"))] = "flathub"
    flatpak_remote_url: Annotated[
        str, AfterValidator(_pattern(_HTTPS_RE, "https URL of a .flatpakrepo file"))
    ] = "https://dl.flathub.org/repo/flathub.flatpakrepo"
    # macOS and Windows: a podman machine (the VM containers run in) for the login user.
    machine: bool = True


class HostData(Strict):
    """Everything this package reads from host data, with the standard's defaults."""

    host_class: HostClass = HostClass.workstation
    extra_packages: list[PackageName] = Field(default_factory=list)
    docker_compat: DockerCompat = DockerCompat.auto
    registries: Registries = Field(default_factory=Registries)
    graphroot: AbsPath = "/var/lib/containers/storage"
    runroot: AbsPath = "/run/containers/storage"
    storage_driver: StorageDriver = StorageDriver.overlay
    storage_device: StorageDevice | None = None
    existing_store: ExistingStore = ExistingStore.refuse
    socket_enabled: bool = False
    rootless_users: list[RootlessUser] = Field(default_factory=list)
    nvidia_enabled: bool | Literal["auto"] = "auto"
    nvidia_cdi_spec: AbsPath = "/etc/cdi/nvidia.yaml"
    nvidia_repository: NvidiaRepository = Field(default_factory=NvidiaRepository)
    service_root: ServiceRoot = "/srv/containers/apps"
    services: list[Service] = Field(default_factory=list)
    # After the services converged: remove the images of root's and each service user's store
    # that no container uses and no declared service names, keeping each service's current
    # and previous image (its image-record) for a rollback.
    prune_images: bool = False
    compose_root: ServiceRoot = "/srv/containers/compose"
    compose_projects: list[ComposeProject] = Field(default_factory=list)
    desktop: PodmanDesktop = Field(default_factory=PodmanDesktop)
    # Desktop hosts (group_data/macos.py, windows.py): which one, for the Podman Desktop opt-in.
    desktop_platform: Literal["macos", "windows"] | None = None
    # Docker -> Podman migration (deploys/migrate_from_docker.py): the rollback bundle on the
    # host (root-only: it holds the volumes' data). Written into unit-free shell commands,
    # quoted; the same character set as service_root keeps it printable in any report.
    migration_bundle: ServiceRoot = "/var/lib/podman-standard/docker-migration"
    # Containers moved to a rootless user's podman instead of root's: Docker container name
    # (or "*" for all) -> a user of rootless_users. Their volumes go into that user's store
    # with owners shifted through the user's subordinate ids.
    migration_rootless: Annotated[dict[str, UserName], AfterValidator(_rootless_targets)] = Field(
        default_factory=dict
    )
    # Apply the podman_registries entries the migration proposes from Docker's daemon.json
    # (registry mirrors, insecure registries) beside registries.registries; else only printed.
    migration_registries: bool = False
    # What deploys/rollback_to_docker.py restores into Docker's volumes.
    migration_rollback_from: RollbackFrom = RollbackFrom.podman
    phases: Annotated[list[Phase], BeforeValidator(_comma_list)] = Field(
        default_factory=lambda: list(Phase), min_length=1
    )
    # deploys/verify.py: drift and undeclared exposure are failures (exit non-zero), not
    # warnings.
    verify_strict: bool = False

    @field_validator("services")
    @classmethod
    def _services(cls, services: list[Service], info: ValidationInfo) -> list[Service]:
        # rootless_users is declared (so validated) first; absent here when it was invalid.
        users = info.data.get("rootless_users")
        _check_services(services, None if users is None else {u.name for u in users})
        return services

    @model_validator(mode="after")
    def _consistent(self):
        dupes = _repeated(u.name for u in self.rootless_users)
        if dupes:
            raise ValueError(f"rootless_users lists a user twice: {', '.join(dupes)}")
        for i, a in enumerate(self.rootless_users):
            for b in self.rootless_users[i + 1 :]:
                if a.subid_start and b.subid_start and _overlap(a, b):
                    raise ValueError(
                        f"rootless_users {a.name} and {b.name} have overlapping subid ranges"
                    )
        dupes = _repeated(p.name for p in self.compose_projects)
        if dupes:
            raise ValueError(f"compose_projects lists a name twice: {', '.join(dupes)}")
        users = {u.name for u in self.rootless_users}
        for cred in self.registries.credentials:
            if cred.user and cred.user not in users:
                raise ValueError(
                    f"registries.credentials: {cred.registry} for {cred.user}: {cred.user} is "
                    "not in rootless_users"
                )
        for container, user in sorted(self.migration_rootless.items()):
            if user not in users:
                raise ValueError(
                    f"migration_rootless: {container} -> {user}: {user} is not in "
                    "rootless_users (rootless containers need its subordinate ids and linger)"
                )
        lingering = {u.name for u in self.rootless_users if u.linger}
        services = {s.name for s in self.services}
        for project in self.compose_projects:
            if project.user and project.user not in users:
                raise ValueError(
                    f"compose project {project.name}: user {project.user} is not in "
                    "rootless_users (rootless containers need its subordinate ids and linger)"
                )
            if project.user and project.present and project.user not in lingering:
                raise ValueError(
                    f"compose project {project.name}: user {project.user} has linger: false; "
                    "its user unit would not start at boot"
                )
            if project.unit.removesuffix(".service") in services:
                raise ValueError(
                    f"compose project {project.name}: a service is named "
                    f"{project.unit.removesuffix('.service')}, the project's boot unit"
                )
        if self.desktop.enabled and self.host_class is HostClass.server:
            raise ValueError(
                "podman_desktop.enabled: servers run no GUI tools (standard §3.1); it is for "
                "workstations and Windows/macOS hosts"
            )
        if (
            self.desktop.enabled
            and self.host_class is HostClass.desktop
            and not self.desktop_platform
        ):
            raise ValueError(
                "podman_desktop.enabled on a desktop host needs desktop_platform (macos or "
                "windows; group_data/macos.py and windows.py set it)"
            )
        if self.storage_device and not _under(self.graphroot, self.storage_device.mount_point):
            raise ValueError(
                f"graphroot {self.graphroot} is not under storage_device.mount_point "
                f"{self.storage_device.mount_point}"
            )
        return self


def _overlap(a: RootlessUser, b: RootlessUser) -> bool:
    return (
        a.subid_start < b.subid_start + b.subid_count
        and b.subid_start < a.subid_start + a.subid_count
    )


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _check_services(services: list[Service], rootless: set[str] | None) -> None:
    """Across services: unique names, known rootless users, requires that exist, run under
    the same user and form no cycle, and networks that stay within one user."""
    dupes = _repeated(s.name for s in services)
    if dupes:
        raise ValueError(f"services lists a name twice: {', '.join(dupes)}")
    by_name = {s.name: s for s in services}
    for svc in services:
        for timer in svc.timers:
            unit = f"{svc.name}-{timer.name}"
            if unit in by_name:
                raise ValueError(
                    f"service {svc.name}: timer {timer.name} would be {unit}.service, "
                    f"the unit of service {unit}: rename the timer"
                )
    networks: dict[str, set[str | None]] = {}
    for svc in services:
        if svc.user and rootless is not None and svc.user not in rootless:
            raise ValueError(
                f"service {svc.name}: user {svc.user} is not in rootless_users "
                "(rootless services need its subordinate ids and linger)"
            )
        for dep in svc.requires:
            other = by_name.get(dep)
            if other is None:
                raise ValueError(f"service {svc.name} requires {dep}, which is not a service")
            if other.user != svc.user:
                raise ValueError(
                    f"service {svc.name} requires {dep}, which runs under another user's systemd"
                )
            if svc.present and not other.present:
                raise ValueError(f"service {svc.name} requires {dep}, which is present: false")
        for attachment in svc.attachments:
            networks.setdefault(attachment.name, set()).add(svc.user)
    for network, users in sorted(networks.items()):
        if len(users) > 1:
            raise ValueError(f"network {network} is shared by services of different users")
    order_services(services)


def order_services(services: list[Service]) -> list[Service]:
    """The services in dependency order (each after what it requires), else in list order;
    a cycle is a ValueError naming it."""
    by_name = {s.name: s for s in services}
    ordered: list[Service] = []
    state: dict[str, str] = {}

    def visit(svc: Service, path: list[str]) -> None:
        if state.get(svc.name) == "done":
            return
        if state.get(svc.name) == "visiting":
            cycle = path[path.index(svc.name) :] + [svc.name]
            raise ValueError(f"services require each other in a cycle: {' -> '.join(cycle)}")
        state[svc.name] = "visiting"
        for dep in svc.requires:
            if dep in by_name:
                visit(by_name[dep], path + [svc.name])
        state[svc.name] = "done"
        ordered.append(svc)

    for svc in services:
        visit(svc, [])
    return ordered


def network_removers(removed: list[Service], services: list[Service]) -> dict[str, list[str]]:
    """Of the services being removed, in ``removed``'s order: which networks each removes,
    the last one naming each network, unless a present service (of the same user) still
    uses it."""
    kept = {(s.user, n.name) for s in services if s.present for n in s.attachments}
    last = {(s.user, n.name): s.name for s in removed for n in s.attachments}
    removers: dict[str, list[str]] = {}
    for (user, network), name in last.items():
        if (user, network) not in kept:
            removers.setdefault(name, []).append(network)
    return {name: sorted(networks) for name, networks in removers.items()}
