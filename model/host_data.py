"""The one typed model of everything group_data and host data may say.

Every key this package reads lives in the ``podman_`` namespace of pyinfra host data.
Keys outside that namespace (``ssh_user``, ``_sudo``, …) belong to pyinfra and pass
through untouched; a ``podman_`` key the model does not know is an error (a typo such
as ``podman_graphrot`` must not silently fall back to a default).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

NAMESPACE = "podman_"

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:-]*$")
# host[:port][/path] — what registries.conf accepts as a prefix/location, no scheme.
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9.*-]*(:[0-9]{1,5})?(/[A-Za-z0-9._/-]+)?$")
_DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9/_.-]+$")


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
RegistryRef = Annotated[
    str, AfterValidator(_pattern(_REGISTRY_RE, "registry (host[:port][/path])"))
]
DevicePath = Annotated[str, AfterValidator(_pattern(_DEVICE_RE, "device path under /dev"))]


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


class Phase(StrEnum):
    install = "install"
    config = "config"
    storage = "storage"
    verify = "verify"


def _repeated(values) -> list[str]:
    values = list(values)
    return sorted({v for v in values if values.count(v) > 1})


def _comma_list(value):
    # `--data podman_phases=install,config` arrives from the CLI as one string.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Mirror(Strict):
    location: RegistryRef
    insecure: bool = False


class Registry(Strict):
    prefix: RegistryRef
    location: RegistryRef | None = None
    insecure: bool = False
    blocked: bool = False
    mirrors: list[Mirror] = Field(default_factory=list)


class Registries(Strict):
    search: list[RegistryRef] = Field(default_factory=lambda: ["docker.io", "quay.io", "ghcr.io"])
    short_name_mode: ShortNameMode = ShortNameMode.enforcing
    registries: list[Registry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_prefixes(self):
        dupes = _repeated(r.prefix for r in self.registries)
        if dupes:
            raise ValueError(f"registry prefixes must be unique, repeated: {', '.join(dupes)}")
        return self


class StorageDevice(Strict):
    device: DevicePath
    mount_point: AbsPath
    fstype: Literal["ext4", "xfs"] = "ext4"
    # Create a filesystem only when the device carries no signature at all.
    format_if_blank: bool = False


class RootlessUser(Strict):
    name: UserName
    subid_start: int | None = Field(default=None, ge=1)
    subid_count: int = Field(default=65536, ge=65536)
    linger: bool = True


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
    service_root: AbsPath = "/srv/containers/apps"
    phases: Annotated[list[Phase], BeforeValidator(_comma_list)] = Field(
        default_factory=lambda: list(Phase), min_length=1
    )

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
