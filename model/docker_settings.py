"""Every setting of a Docker container, decided (standard §6.1: the migration loses nothing).

:data:`SETTINGS` holds one decision for each field of ``docker inspect``'s ``Config`` and
``HostConfig`` (moby's ``api/types/container`` ``Config``, ``HostConfig`` and its embedded
``Resources``, Docker 20.10 through current):

- **carried**: into a field of the ``podman_services`` entry (the row's ``carry``, merged by
  :func:`carried`; image, command, env, ports, volumes, restart and network by
  ``model.migration._service``); a value that field cannot hold is refused. The bundle's
  ``docker-restore.sh`` and ``docker-compose.yml`` re-create the same fields under Docker
  (:func:`docker_run_flags`, :func:`compose_keys`);
- **refused**: a value at Docker's default (or inherited from the image, which podman runs
  the same way) is no problem; any other value stops the migration before any change, naming
  the container, the ``docker run`` flag and the value;
- **ignored**: no effect on how a service runs (why is given).

A field this table does not know (a newer Docker's) is refused when it holds a value and
ignored when empty: refused rather than guessed. deploys/README.md's table is :func:`markdown`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from facts.docker import DAEMON_JSON, DockerContainer, DockerDaemonConfigState, DockerImage
from model.host_data import Registry

CARRIED = "carried"
REFUSED = "refused"
IGNORED = "ignored"
# Docker's defaults (moby daemon/config: DefaultShmSize; the HealthConfig defaults of
# daemon/health.go; a zero duration or count means "inherit / default").
DEFAULT_SHM_SIZE = 64 * 2**20
_SECOND = 10**9
HEALTH_DEFAULTS = {"Interval": 30 * _SECOND, "Timeout": 30 * _SECOND, "StartPeriod": 0,
                   "StartInterval": 5 * _SECOND, "Retries": 3}  # fmt: skip
HEALTH_FLAGS = {"Interval": "--health-interval", "Timeout": "--health-timeout",
                "StartPeriod": "--health-start-period", "StartInterval": "--health-start-interval",
                "Retries": "--health-retries"}  # fmt: skip
# Labels Docker's own tools put on what they create (docker compose: read as a compose
# project; swarm and stack): not carried as the service's labels (kept in the bundle).
DOCKER_LABELS = ("com.docker.compose.", "com.docker.swarm.", "com.docker.stack.")
# Log drivers whose logs simply move to the journal under a podman service (their rotation
# options, max-size/max-file/compress, rotate a file that no longer exists).
LOG_DRIVERS = ("json-file", "local")
# Why a refused setting is refused: a podman_services entry has no field for it, or podman
# has no equivalent.
NOT_YET = "a podman_services entry has no field for it"
NO_PODMAN = "podman has no equivalent"
WINDOWS = "a Windows container setting"


@dataclass(frozen=True)
class Context:
    """What a setting's default depends on: the container and its image."""

    container: DockerContainer
    image: DockerImage | None
    # The host's CDI device names (facts.gpu.NvidiaPresence: `nvidia-ctk cdi list`).
    cdi_devices: tuple[str, ...] = ()
    # False: a container that is only kept in the bundle (not running): what matters is that
    # the rollback's re-creation under Docker keeps the setting, not podman's form of it.
    podman: bool = True

    def image_config(self, key: str) -> Any:
        return (self.image.config if self.image else {}).get(key)


Accept = Callable[[Any, Context], bool]
# A carried setting's value as the service's fields ({}: at Docker's default or the image's).
Carry = Callable[[Any, Context], dict]


def empty(value: Any, _ctx: Context | None = None) -> bool:
    """Go's zero values as ``docker inspect`` prints them (null, "", 0, false, [], {})."""
    return value in (None, "", 0, False, [], {})


def _always(_value: Any, _ctx: Context) -> bool:
    return True


def _one_of(*values: Any) -> Accept:
    return lambda value, _ctx: empty(value) or value in values


def _inherited(key: str) -> Accept:
    """The value the container got from its image (moby's daemon/commit.go merge()): podman
    runs the same image the same way."""

    def accept(value: Any, ctx: Context) -> bool:
        image = ctx.image_config(key)
        if key == "Labels":
            return set((value or {}).items()) <= set((image or {}).items())
        return (value or None) == (image or None)

    return accept


def _default_hostname(value: Any, ctx: Context) -> bool:
    # Docker names a container's host after its short id; on the host network it is the
    # host's own name (the network mode is decided itself).
    c = ctx.container
    return empty(value) or value == c.id[:12] or c.host_config.get("NetworkMode") == "host"


def _memory_swap(value: Any, ctx: Context) -> bool:
    # With --memory alone Docker sets twice the limit (daemon_unix.go), or -1 (no swap limit).
    memory = ctx.container.host_config.get("Memory") or 0
    return empty(value) or value == -1 or (memory > 0 and value == 2 * memory)


def _log_config(value: Any, _ctx: Context) -> bool:
    kind, options = (value or {}).get("Type", ""), (value or {}).get("Config") or {}
    if kind in ("", *LOG_DRIVERS):
        return True
    if kind == "journald":
        return set(options) <= {"tag"}
    return kind == "none" and not options


def _carry_log(value: Any, _ctx: Context) -> dict:
    kind, options = (value or {}).get("Type", ""), (value or {}).get("Config") or {}
    if kind in ("journald", "none"):
        tag = {"log_opts": {"tag": options["tag"]}} if options.get("tag") else {}
        return {"log_driver": kind, **tag}
    return {}


# `--mount` entries are carried from the container's Mounts; of their options only these
# values, which a service's volume behaves like (CreateMountpoint: Docker creates a missing
# source, and the service's copy of it exists; rprivate is the default propagation).
MOUNT_OPTIONS_CARRIED = {
    "BindOptions": {"CreateMountpoint": (True,), "Propagation": ("rprivate",)},
    "VolumeOptions": {"Labels": None},  # the volume's own labels, carried with the volume
}


def _plain_mounts(value: Any, _ctx: Context) -> bool:
    plain = {"Type", "Source", "Target", "ReadOnly", "Consistency"}
    for mount in value or []:
        for key, options in mount.items():
            if key in plain or empty(options):
                continue
            allowed = MOUNT_OPTIONS_CARRIED.get(key)
            if allowed is None or not isinstance(options, dict):
                return False
            for name, v in options.items():
                if not (
                    empty(v) or name in allowed and (allowed[name] is None or v in allowed[name])
                ):
                    return False
    return True


# `-v src:dst:opts` options a service's volume does not hold (mount propagation).
PROPAGATION = {"shared", "rshared", "slave", "rslave"}


def _plain_binds(value: Any, _ctx: Context) -> bool:
    options = [b.split(":")[2] for b in value or [] if b.count(":") >= 2]
    return not any(set(o.split(",")) & PROPAGATION for o in options)


def _network_mode(value: Any, _ctx: Context) -> bool:
    return not (value == "none" or str(value or "").startswith("container:"))


def _healthcheck(value: Any, ctx: Context) -> bool:
    return _inherited("Healthcheck")(value, ctx) or healthcheck_problem(value) is None


def size(n: int) -> str:
    """A byte count as podman's (and Docker's) size syntax: the largest of g, m, k that
    divides it exactly, else plain bytes (8589934592 -> 8g, 100663296 -> 96m)."""
    for unit, factor in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def duration(ns: int) -> str:
    """Nanoseconds as a unit duration: whole seconds as ``10s``, else milliseconds."""
    ms = ns // 10**6
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _field(name: str, convert: Callable[[Any], Any] = lambda v: v) -> Carry:
    """Carried into the service's ``name`` (nothing at Go's zero value)."""
    return lambda value, _ctx: {} if empty(value) else {name: convert(value)}


def _unless(default: Accept, carry: Carry) -> Carry:
    """``carry``, except at Docker's default or the image's value (``default``)."""
    return lambda value, ctx: {} if default(value, ctx) else carry(value, ctx)


def _carry_user(value: Any, _ctx: Context) -> dict:
    user, _, group = str(value).partition(":")
    return {"container_user": user, **({"container_group": group} if group else {})}


def _carry_labels(value: Any, ctx: Context) -> dict:
    """The container's own labels (not the image's, which podman reads from the image; not
    those Docker's tools made)."""
    inherited = ctx.image_config("Labels") or {}
    own = {
        k: v
        for k, v in sorted((value or {}).items())
        if inherited.get(k) != v and not k.startswith(DOCKER_LABELS)
    }
    return {"labels": own} if own else {}


# --tmpfs options that are podman's defaults as well as Docker's (rw,noexec,nosuid,nodev).
TMPFS_DEFAULT_OPTIONS = {"rw", "noexec", "nosuid", "nodev"}
_TMPFS_SIZE_RE = re.compile(r"^([0-9]{1,15})([kmgKMG]?)$")


def _tmpfs_entry(target: str, options: str) -> dict | None:
    """One ``--tmpfs`` mount as the service's ``tmpfs`` entry, or None (an option it cannot
    hold: exec, ro, uid=, a size in %)."""
    entry: dict = {"target": target}
    for option in filter(None, (options or "").split(",")):
        key, _, value = option.partition("=")
        if option in TMPFS_DEFAULT_OPTIONS:
            continue
        if key == "size" and _TMPFS_SIZE_RE.match(value):
            entry["size"] = value.lower()
        elif key == "mode" and re.match(r"^[0-7]{3,4}$", value):
            entry["mode"] = value
        else:
            return None
    return entry


def _tmpfs(value: Any, _ctx: Context) -> bool:
    return all(_tmpfs_entry(t, o) for t, o in (value or {}).items())


def _carry_tmpfs(value: Any, _ctx: Context) -> dict:
    return {"tmpfs": [_tmpfs_entry(t, o) for t, o in sorted(value.items())]} if value else {}


def _carry_ulimits(value: Any, _ctx: Context) -> dict:
    limits = {u["Name"]: f"{u['Soft']}:{u['Hard']}" for u in value or []}
    return {"ulimits": limits} if limits else {}


def _carry_health(value: Any, ctx: Context) -> dict:
    health = healthcheck(ctx.container, ctx.image)
    return {"healthcheck": health} if health else {}


def _carry_devices(_value: Any, ctx: Context) -> dict:
    found = devices(ctx.container)
    return {"devices": found} if found else {}


@dataclass(frozen=True)
class Setting:
    flag: str
    decision: str
    why: str = ""
    accept: Accept = empty
    # CARRIED: the value as the service's fields (None: model.migration._service carries it).
    carry: Carry | None = None
    # REFUSED for a service, yet `docker create FLAG VALUE` re-creates it: a container only
    # kept in the bundle (not running) keeps it through the rollback (docker_run_flags).
    docker: bool = False


def _r(flag: str, why: str = NOT_YET, accept: Accept = empty, docker: bool = False) -> Setting:
    return Setting(flag, REFUSED, why, accept, None, docker)


def _i(flag: str, why: str) -> Setting:
    return Setting(flag, IGNORED, why, _always)


def _c(flag: str, why: str, accept: Accept = _always, carry: Carry | None = None) -> Setting:
    return Setting(flag, CARRIED, why, accept, carry)


SETTINGS: dict[str, Setting] = {
    # --- Config
    "Config.Hostname": _c(
        "--hostname",
        "hostname (not Docker's default, the short id; the host's on the host network)",
        carry=_unless(_default_hostname, _field("hostname")),
    ),
    "Config.Domainname": _r("--domainname", docker=True),
    "Config.User": _c(
        "--user",
        "container_user, container_group (not the image's own)",
        carry=_unless(_inherited("User"), _carry_user),
    ),
    "Config.AttachStdin": _i("--attach", "which streams the creating CLI attached"),
    "Config.AttachStdout": _i("--attach", "which streams the creating CLI attached"),
    "Config.AttachStderr": _i("--attach", "which streams the creating CLI attached"),
    "Config.ExposedPorts": _i(
        "--expose", "metadata for -P and links (both refused); ports are published explicitly"
    ),
    "Config.Tty": _r("--tty", "a service has no terminal", docker=True),
    "Config.OpenStdin": _r("--interactive", "a service has no standard input", docker=True),
    "Config.StdinOnce": _i("--attach", "only with an attached standard input"),
    "Config.Env": _c("--env", "env (what differs from the image's), into the secrets file"),
    "Config.Cmd": _c("command", "command (when it differs from the image's)"),
    "Config.Healthcheck": _c(
        "--health-cmd",
        "healthcheck (a shell command; interval, timeout, retries, start period)",
        _healthcheck,
        _carry_health,
    ),
    "Config.ArgsEscaped": _i("(image)", "Windows-only command-line escaping"),
    "Config.Image": _c("image", "image (by the tag podman loads)"),
    "Config.Volumes": _i("--volume", "anonymous volume targets; the mounts are decided by Mounts"),
    "Config.WorkingDir": _c(
        "--workdir",
        "working_dir (not the image's own)",
        carry=_unless(_inherited("WorkingDir"), _field("working_dir")),
    ),
    "Config.Entrypoint": _r("--entrypoint", accept=_inherited("Entrypoint")),
    "Config.NetworkDisabled": _r("--network none", NO_PODMAN),
    "Config.MacAddress": _r("--mac-address"),
    "Config.OnBuild": _i("(image)", "build-time metadata"),
    "Config.Labels": _c(
        "--label",
        "labels (the container's own; not the image's, nor com.docker.compose/swarm/stack's, "
        "which stay in the bundle)",
        carry=_carry_labels,
    ),
    "Config.StopSignal": _r("--stop-signal", accept=_inherited("StopSignal"), docker=True),
    "Config.StopTimeout": _c(
        "--stop-timeout", "stop_timeout (seconds)", carry=_field("stop_timeout")
    ),
    "Config.Shell": _i("(image)", "used only when building an image"),
    # --- HostConfig
    "HostConfig.Binds": _c(
        "--volume", "volumes (from Mounts; ro kept, mount propagation refused)", _plain_binds
    ),
    "HostConfig.ContainerIDFile": _i("--cidfile", "a file the creating CLI wrote"),
    "HostConfig.LogConfig": _c(
        "--log-driver",
        "json-file and local: the journal (their rotation options rotate a file that is no "
        "more); journald (tag) and none: log_driver, log_opts",
        _log_config,
        _carry_log,
    ),
    "HostConfig.NetworkMode": _c(
        "--network",
        "network (one user-defined network; Docker's bridge: podman's; host: host_network)",
        _network_mode,
        lambda value, _ctx: {"host_network": True} if value == "host" else {},
    ),
    "HostConfig.PortBindings": _c("--publish", "ports (fixed host ports)"),
    "HostConfig.RestartPolicy": _c(
        "--restart",
        "restart (unless-stopped: always; no retry limit, which only Docker re-creates)",
        lambda value, ctx: not (ctx.podman and (value or {}).get("MaximumRetryCount")),
    ),
    "HostConfig.AutoRemove": _i("--rm", "a service's container is removed when it stops"),
    "HostConfig.VolumeDriver": _r("--volume-driver", NO_PODMAN),
    "HostConfig.VolumesFrom": _r("--volumes-from"),
    "HostConfig.ConsoleSize": _i("(CLI)", "the creating terminal's size"),
    "HostConfig.Annotations": _r("--annotation"),
    "HostConfig.CapAdd": _c("--cap-add", "cap_add", carry=_field("cap_add", list)),
    "HostConfig.CapDrop": _c("--cap-drop", "cap_drop", carry=_field("cap_drop", list)),
    "HostConfig.CgroupnsMode": _r("--cgroupns", accept=_one_of("private")),
    "HostConfig.Dns": _r("--dns", docker=True),
    "HostConfig.DnsOptions": _r("--dns-option", docker=True),
    "HostConfig.DnsSearch": _r("--dns-search", docker=True),
    "HostConfig.ExtraHosts": _r("--add-host", docker=True),
    "HostConfig.GroupAdd": _r("--group-add", docker=True),
    "HostConfig.IpcMode": _c(
        "--ipc",
        "ipc (host, none; private and shareable: podman's own)",
        _one_of("private", "shareable", "host", "none"),
        _unless(_one_of("private", "shareable"), _field("ipc")),
    ),
    "HostConfig.Cgroup": _r("--cgroup"),
    "HostConfig.Links": _r("--link", "legacy links; use a user-defined network"),
    "HostConfig.OomScoreAdj": _r("--oom-score-adj", docker=True),
    "HostConfig.PidMode": _r("--pid"),
    "HostConfig.Privileged": _r(
        "--privileged",
        "every capability and device of the host: name the capabilities (--cap-add) and "
        "devices (--device) it needs instead",
        docker=True,
    ),
    "HostConfig.PublishAllPorts": _r("--publish-all", "publish fixed host ports instead"),
    "HostConfig.ReadonlyRootfs": _c("--read-only", "read_only", carry=_field("read_only")),
    "HostConfig.SecurityOpt": _r("--security-opt", docker=True),
    "HostConfig.StorageOpt": _r("--storage-opt"),
    "HostConfig.Tmpfs": _c(
        "--tmpfs",
        "tmpfs (size, mode; Docker's default options rw,noexec,nosuid,nodev are podman's)",
        _tmpfs,
        _carry_tmpfs,
    ),
    "HostConfig.UTSMode": _r("--uts"),
    "HostConfig.UsernsMode": _c(
        "--userns", "userns (host)", _one_of("host"), _field("userns")
    ),  # fmt: skip
    "HostConfig.ShmSize": _c(
        "--shm-size",
        "shm_size (bytes as 8g, 96m)",
        carry=_unless(_one_of(DEFAULT_SHM_SIZE), _field("shm_size", size)),
    ),
    "HostConfig.Sysctls": _c("--sysctl", "sysctls", carry=_field("sysctls", dict)),
    "HostConfig.Runtime": _r("--runtime", NO_PODMAN, _one_of("runc", "io.containerd.runc.v2")),
    "HostConfig.Isolation": _r("--isolation", WINDOWS, _one_of("default")),
    "HostConfig.CpuShares": _r("--cpu-shares", docker=True),
    "HostConfig.Memory": _c("--memory", "memory (bytes as 2g)", carry=_field("memory", size)),
    "HostConfig.NanoCpus": _c(
        "--cpus", "cpus (NanoCpus / 10^9)", carry=_field("cpus", lambda v: v / 1e9)
    ),
    "HostConfig.CgroupParent": _r("--cgroup-parent"),
    "HostConfig.BlkioWeight": _r("--blkio-weight"),
    "HostConfig.BlkioWeightDevice": _r("--blkio-weight-device"),
    "HostConfig.BlkioDeviceReadBps": _r("--device-read-bps"),
    "HostConfig.BlkioDeviceWriteBps": _r("--device-write-bps"),
    "HostConfig.BlkioDeviceReadIOps": _r("--device-read-iops"),
    "HostConfig.BlkioDeviceWriteIOps": _r("--device-write-iops"),
    "HostConfig.CpuPeriod": _r("--cpu-period"),
    "HostConfig.CpuQuota": _r("--cpu-quota"),
    "HostConfig.CpuRealtimePeriod": _r("--cpu-rt-period"),
    "HostConfig.CpuRealtimeRuntime": _r("--cpu-rt-runtime"),
    "HostConfig.CpusetCpus": _r("--cpuset-cpus", docker=True),
    "HostConfig.CpusetMems": _r("--cpuset-mems"),
    "HostConfig.Devices": _c(
        "--device", "devices (host[:container[:permissions]])", carry=_carry_devices
    ),
    "HostConfig.DeviceCgroupRules": _r("--device-cgroup-rule"),
    "HostConfig.DeviceRequests": _c(
        "--gpus",
        "devices: the host's CDI names (all GPUs: nvidia.com/gpu=all; --gpus device=0: "
        "nvidia.com/gpu=0)",
        lambda value, ctx: (
            gpu_problem(value, ctx.cdi_devices) is None
            if ctx.podman
            else not any(r.get("Options") for r in value or [])
        ),
    ),  # (its devices are carried with HostConfig.Devices')
    "HostConfig.KernelMemory": _r("--kernel-memory", NO_PODMAN),
    "HostConfig.KernelMemoryTCP": _r("--kernel-memory-tcp", NO_PODMAN),
    "HostConfig.MemoryReservation": _r("--memory-reservation", docker=True),
    "HostConfig.MemorySwap": _r("--memory-swap", accept=_memory_swap),
    "HostConfig.MemorySwappiness": _r("--memory-swappiness", accept=_one_of(-1)),
    "HostConfig.OomKillDisable": _r("--oom-kill-disable"),
    "HostConfig.PidsLimit": _c(
        "--pids-limit",
        "pids_limit (Docker's unlimited, 0 or -1: podman's default)",
        carry=_unless(_one_of(-1), _field("pids_limit")),
    ),
    "HostConfig.Ulimits": _c("--ulimit", "ulimits (soft:hard)", carry=_carry_ulimits),
    "HostConfig.CpuCount": _r("--cpu-count", WINDOWS),
    "HostConfig.CpuPercent": _r("--cpu-percent", WINDOWS),
    "HostConfig.IOMaximumIOps": _r("--io-maxiops", WINDOWS),
    "HostConfig.IOMaximumBandwidth": _r("--io-maxbandwidth", WINDOWS),
    "HostConfig.Mounts": _c("--mount", "volumes (from Mounts; options refused)", _plain_mounts),
    "HostConfig.MaskedPaths": _i(
        "--security-opt",
        "Docker's default masks (follow --privileged and --security-opt, "
        "both decided); podman applies its own",
    ),  # fmt: skip
    "HostConfig.ReadonlyPaths": _i(
        "--security-opt", "Docker's default read-only paths (as MaskedPaths)"
    ),
    "HostConfig.Init": _c("--init", "init", carry=_field("init")),
}


def _fields(c: DockerContainer) -> list[tuple[str, Any]]:
    return [(f"Config.{k}", v) for k, v in c.config.items()] + [
        (f"HostConfig.{k}", v) for k, v in c.host_config.items()
    ]


def undecided(c: DockerContainer) -> list[str]:
    """The fields of ``c``'s Config and HostConfig that :data:`SETTINGS` does not decide."""
    return [key for key, _ in _fields(c) if key not in SETTINGS]


def _value(key: str, value: Any) -> str:
    if key == "HostConfig.DeviceRequests":
        return "; ".join(map(_device_request, value))
    if key in ("HostConfig.Memory", "HostConfig.ShmSize", "HostConfig.MemorySwap") and value > 0:
        return f"{value} bytes, {value / 2**30:g} GiB"
    if key == "HostConfig.NanoCpus":
        return f"{value / 1e9:g} CPUs"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _device_request(request: dict) -> str:
    count, ids = request.get("Count") or 0, request.get("DeviceIDs") or []
    which = "all GPUs" if count == -1 else f"GPUs {', '.join(ids)}" if ids else f"{count} GPUs"
    driver = request.get("Driver") or ""
    return which + (f", driver {driver}" if driver else "")


def problems(
    c: DockerContainer,
    image: DockerImage | None,
    cdi_devices: list[str] | None = None,
    podman: bool = True,
) -> list[str]:
    """Every setting of ``c`` that the migration cannot carry, by name: the container, the
    ``docker run`` flag, the inspect field and its value (printed through ``shown``).
    ``cdi_devices``: the host's CDI device names, which ``--gpus`` becomes. ``podman``
    False: a container only kept in the bundle (its settings must survive the rollback's
    re-creation under Docker)."""
    ctx = Context(c, image, tuple(cdi_devices or ()), podman)
    where = f"container {c.name}" + ("" if podman else " (not running: kept in the bundle)")
    out = []
    for key, value in _fields(c):
        setting = SETTINGS.get(key)
        if setting is None:
            if not empty(value):
                out.append(
                    f"{where}: {key} ({_value(key, value)}) is a Docker setting "
                    "this version does not know: refused rather than dropped"
                )
            continue
        if setting.accept(value, ctx) or (setting.docker and not podman):
            continue
        why = setting.why
        if key == "Config.Healthcheck":
            why = healthcheck_problem(value) or why
        elif key == "HostConfig.DeviceRequests" and podman:
            why = gpu_problem(value, ctx.cdi_devices) or why
        elif setting.decision == CARRIED:
            why = f"the service carries only {setting.why}"
        out.append(
            f"{where}: {setting.flag}/{key.split('.', 1)[1]} "
            f"({_value(key, value)}) is not carried by this version: {why}; re-create the "
            "container without it first, or keep it on Docker"
        )
    return out


def carried(c: DockerContainer, image: DockerImage | None) -> dict:
    """The settings of ``c`` the table carries as the service's runtime fields (devices,
    healthcheck, shm_size, cap_add, labels, …), those :func:`problems` accepts; the rest of
    the service (image, command, env, ports, volumes, restart, network) is
    ``model.migration._service``'s."""
    ctx = Context(c, image)
    out: dict = {}
    for key, value in _fields(c):
        setting = SETTINGS.get(key)
        if setting and setting.carry and setting.accept(value, ctx):
            out.update(setting.carry(value, ctx))
    return out


# What --gpus may ask for that a CDI device of the whole GPU gives (NVIDIA's default driver
# capabilities are compute and utility; the CDI spec carries at least those).
GPU_CAPABILITIES = {"gpu", "nvidia", "compute", "utility"}


def _gpu_names(request: dict) -> list[str]:
    ids = request.get("DeviceIDs") or []
    return [f"nvidia.com/gpu={i}" for i in ids] if ids else ["nvidia.com/gpu=all"]


def gpu_problem(value: list | None, cdi_devices: tuple[str, ...] | list[str]) -> str | None:
    """Why ``value`` (HostConfig.DeviceRequests) has no CDI form on this host, or None."""
    for request in value or []:
        if (request.get("Driver") or "nvidia") != "nvidia":
            return f"podman has no device driver {request['Driver']!r}"
        capabilities = request.get("Capabilities") or [["gpu"]]
        if not any(set(c) <= GPU_CAPABILITIES and "gpu" in c for c in capabilities):
            return "podman's CDI GPU devices give the compute and utility driver capabilities only"
        if request.get("Options"):
            return "a CDI device takes no driver options"
        if not request.get("DeviceIDs") and request.get("Count") != -1:
            return (
                "a GPU count lets Docker pick which GPUs; podman names them: give the "
                "container --gpus device=<index or UUID> (or all) first"
            )
        missing = [n for n in _gpu_names(request) if n not in cdi_devices]
        if missing:
            return (
                f"podman reaches GPUs through CDI devices, and this host's CDI spec has no "
                f"{', '.join(missing)} (`nvidia-ctk cdi list`): generate it first "
                "(deploys/nvidia.py)"
            )
    return None


def devices(c: DockerContainer) -> list[str]:
    """``--device`` as the service's devices: ``/dev/x``, or ``host:container[:perms]``; then
    ``--gpus`` as the host's CDI names (checked by :func:`problems`)."""
    out = []
    for d in c.host_config.get("Devices") or []:
        host, inside = d.get("PathOnHost", ""), d.get("PathInContainer") or d.get("PathOnHost")
        perms = d.get("CgroupPermissions") or "rwm"
        if inside == host and perms == "rwm":
            out.append(host)
        else:
            out.append(f"{host}:{inside}" + ("" if perms == "rwm" else f":{perms}"))
    for request in c.host_config.get("DeviceRequests") or []:
        out += [n for n in _gpu_names(request) if n not in out]
    return out


def _gpus_flag(request: dict) -> str:
    """A DeviceRequest as ``docker run --gpus`` reads it (a CSV record: a field holding a
    comma is quoted)."""
    ids = request.get("DeviceIDs") or []
    count = request.get("Count")
    fields = [f"device={','.join(ids)}" if ids else "all" if count == -1 else f"count={count}"]
    capabilities = [c for c in (request.get("Capabilities") or [[]])[0] if c != "gpu"]
    if capabilities:
        fields.append(f"capabilities={','.join(capabilities)}")
    if request.get("Driver"):
        fields.append(f"driver={request['Driver']}")
    return ",".join(f'"{f}"' if "," in f else f for f in fields)


# The carried fields as Docker's own flags (the same names as podman's for these); devices,
# GPUs, the log driver and labels are re-created from the inspect values themselves.
DOCKER_FLAGS = {
    "shm_size": "--shm-size",
    "ipc": "--ipc",
    "memory": "--memory",
    "cpus": "--cpus",
    "pids_limit": "--pids-limit",
    "cap_add": "--cap-add",
    "cap_drop": "--cap-drop",
    "working_dir": "--workdir",
    "hostname": "--hostname",
    "stop_timeout": "--stop-timeout",
    "init": "--init",
    "read_only": "--read-only",
    "tmpfs": "--tmpfs",
    "ulimits": "--ulimit",
    "sysctls": "--sysctl",
    "userns": "--userns",
}


def _tmpfs_spec(entry: dict) -> str:
    options = [f"{k}={entry[k]}" for k in ("size", "mode") if entry.get(k)]
    return entry["target"] + (":" + ",".join(options) if options else "")


def _words(field: str, value: Any) -> list[str]:
    """A carried field's values as one flag's arguments (none for a switch)."""
    if value is True:
        return []
    if field == "tmpfs":
        return [_tmpfs_spec(t) for t in value]
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in sorted(value.items())]
    if isinstance(value, list):
        return list(value)
    return [f"{value:g}" if isinstance(value, float) else str(value)]


def _user(fields: dict) -> str | None:
    user = fields.get("container_user")
    group = fields.get("container_group")
    return f"{user}:{group}" if user and group else user


def _health_words(health: dict) -> list[tuple[str, str]]:
    return [
        (f"--health-{key.replace('_', '-')}", str(health[key]))
        for key in ("interval", "timeout", "retries", "start_period")
        if health.get(key) is not None
    ]


def docker_run_flags(c: DockerContainer, image: DockerImage | None) -> list[str]:
    """``docker create`` flags for the settings the services carry beyond the basics (the
    rollback re-creates a container Docker lost with them): the carried runtime fields,
    devices, GPUs, a shell healthcheck, the log driver; and, for a container only kept in the
    bundle, the refused settings Docker re-creates (``Setting.docker``)."""
    fields = carried(c, image)
    flags = []
    for d in c.host_config.get("Devices") or []:
        inside = d.get("PathInContainer") or d["PathOnHost"]
        flags += ["--device", f"{d['PathOnHost']}:{inside}:{d.get('CgroupPermissions') or 'rwm'}"]
    for request in c.host_config.get("DeviceRequests") or []:
        flags += ["--gpus", _gpus_flag(request)]
    if fields.get("host_network"):
        flags += ["--network", "host"]
    if _user(fields):
        flags += ["--user", _user(fields)]
    for field, flag in DOCKER_FLAGS.items():
        if field in fields:
            words = _words(field, fields[field])
            flags += [flag] if not words else [w for word in words for w in (flag, word)]
    if "healthcheck" in fields:
        flags += ["--health-cmd", fields["healthcheck"]["command"]]
        flags += [w for pair in _health_words(fields["healthcheck"]) for w in pair]
    ctx = Context(c, image)
    for key, value in _fields(c):
        setting = SETTINGS.get(key)
        if setting and setting.docker and not setting.accept(value, ctx):
            values = value if isinstance(value, list) else [value]
            flags += (
                [setting.flag]
                if value is True
                else [w for v in values for w in (setting.flag, str(v))]
            )
    log = c.host_config.get("LogConfig") or {}
    if log.get("Type") and (log["Type"] != "json-file" or log.get("Config")):
        flags += ["--log-driver", log["Type"]]
        for key, value in sorted((log.get("Config") or {}).items()):
            flags += ["--log-opt", f"{key}={value}"]
    return flags


# The carried fields as the compose file's keys (the compose specification's names).
COMPOSE_KEYS = {
    "shm_size": "shm_size",
    "ipc": "ipc",
    "memory": "mem_limit",
    "cpus": "cpus",
    "pids_limit": "pids_limit",
    "cap_add": "cap_add",
    "cap_drop": "cap_drop",
    "working_dir": "working_dir",
    "hostname": "hostname",
    "init": "init",
    "read_only": "read_only",
    "sysctls": "sysctls",
    "userns": "userns_mode",
}


def compose_keys(c: DockerContainer, image: DockerImage | None) -> dict:
    """The carried settings as a compose service's keys (the bundle's docker-compose.yml
    shows every container as Docker ran it)."""
    fields = carried(c, image)
    out = {COMPOSE_KEYS[k]: v for k, v in fields.items() if k in COMPOSE_KEYS}
    if fields.get("host_network"):
        out["network_mode"] = "host"
    if _user(fields):
        out["user"] = _user(fields)
    if "stop_timeout" in fields:
        out["stop_grace_period"] = f"{fields['stop_timeout']}s"
    if "tmpfs" in fields:
        out["tmpfs"] = [_tmpfs_spec(t) for t in fields["tmpfs"]]
    if "ulimits" in fields:
        out["ulimits"] = {
            name: dict(zip(("soft", "hard"), map(int, v.split(":")), strict=True))
            for name, v in sorted(fields["ulimits"].items())
        }
    if c.host_config.get("Devices"):
        out["devices"] = [
            f"{d['PathOnHost']}:{d.get('PathInContainer') or d['PathOnHost']}:"
            f"{d.get('CgroupPermissions') or 'rwm'}"
            for d in c.host_config["Devices"]
        ]
    gpus = [
        {
            "driver": r.get("Driver") or "nvidia",
            **({"device_ids": r["DeviceIDs"]} if r.get("DeviceIDs") else {"count": "all"}),
            "capabilities": (r.get("Capabilities") or [["gpu"]])[0],
        }
        for r in c.host_config.get("DeviceRequests") or []
    ]
    if gpus:
        out["deploy"] = {"resources": {"reservations": {"devices": gpus}}}
    if "healthcheck" in fields:
        health = fields["healthcheck"]
        out["healthcheck"] = {"test": ["CMD-SHELL", health["command"]]}
        out["healthcheck"].update(
            {k: v for k, v in health.items() if k != "command" and v is not None}
        )
    log = c.host_config.get("LogConfig") or {}
    if log.get("Type") and (log["Type"] != "json-file" or log.get("Config")):
        out["logging"] = {
            "driver": log["Type"],
            **({"options": log["Config"]} if log.get("Config") else {}),
        }
    return out


def healthcheck_problem(value: dict | None) -> str | None:
    """Why ``value`` (a Config.Healthcheck) is no services healthcheck, or None."""
    if not value:
        return None
    test = value.get("Test") or []
    if test[:1] == ["NONE"]:
        return "a service cannot switch off its image's healthcheck"
    if test[:1] != ["CMD-SHELL"] or len(test) != 2:
        return "a service's healthcheck is one shell command (CMD-SHELL), not an exec form"
    if value.get("StartInterval") not in (None, 0, HEALTH_DEFAULTS["StartInterval"]):
        return f"a service's healthcheck has no {HEALTH_FLAGS['StartInterval']}"
    for key in ("Interval", "Timeout", "StartPeriod"):
        if (value.get(key) or 0) % 10**6:
            return f"a service's healthcheck {HEALTH_FLAGS[key]} is whole milliseconds"
    if (value.get("Retries") or 0) > 100:
        return "a service's healthcheck retries at most 100 times"
    return None


def healthcheck(c: DockerContainer, image: DockerImage | None) -> dict | None:
    """The container's own healthcheck as the service's (None: none, or the image's own, which
    podman runs from the image); a timing at Docker's default (zero) is left to podman's,
    which is the same (30s, 30s, 3, 0s)."""
    value = c.config.get("Healthcheck")
    if _inherited("Healthcheck")(value, Context(c, image)) or healthcheck_problem(value):
        return None
    out = {
        "command": value["Test"][1],
        "interval": duration(value.get("Interval") or HEALTH_DEFAULTS["Interval"]),
    }
    for key, field in (("Timeout", "timeout"), ("StartPeriod", "start_period")):
        if value.get(key):
            out[field] = duration(value[key])
    if value.get("Retries"):
        out["retries"] = value["Retries"]
    return out


def markdown() -> str:
    """The decisions as deploys/README.md's table."""
    rows = ["| inspect field | `docker run` | decision |", "| --- | --- | --- |"]
    for key, s in SETTINGS.items():
        what = {
            CARRIED: f"carried: {s.why}",
            REFUSED: f"refused unless at Docker's default or the image's ({s.why})"
            + ("; kept for a stopped container (docker create re-creates it)" if s.docker else ""),
            IGNORED: f"ignored: {s.why}",
        }[s.decision]
        rows.append(f"| `{key}` | `{s.flag}` | {what} |")
    return "\n".join(rows) + "\n"


# --- The daemon's own configuration (/etc/docker/daemon.json, facts.docker.DockerDaemonConfig)

# Keys that change how every container runs without showing in its inspect output: refused
# (when a container is re-created) unless at dockerd's default. Keys carried: DAEMON_CARRIED.
# Every other key has no meaning for podman here and is listed in the plan.
DAEMON_REFUSED: dict[str, tuple[tuple, str]] = {
    "dns": (((),), "the containers' DNS servers"),
    "dns-opts": (((),), "the containers' resolv.conf options"),
    "dns-search": (((),), "the containers' DNS search domains"),
    "ip": (("0.0.0.0", "::"), "the address every published port binds to"),
    "userns-remap": ((), "the containers' user namespace (their files' owners on disk)"),
    "default-ulimits": (({},), "the containers' ulimits"),
    "icc": ((True,), "whether containers on the default bridge reach each other"),
    "no-new-privileges": ((False,), "no-new-privileges for every container"),
    "seccomp-profile": (("builtin",), "the containers' seccomp profile"),
    "init": ((False,), "an init process in every container"),
    "cgroup-parent": ((), "the containers' parent cgroup"),
}
DAEMON_CARRIED = {
    "registry-mirrors": "Docker Hub mirrors: a proposed podman_registries entry for docker.io",
    "insecure-registries": "a proposed podman_registries entry (insecure: true) each",
    "data-root": "where Docker's volumes are read from",
    "graph": "data-root's name before Docker 17.05",
}


def _location(url: str) -> tuple[str, bool]:
    """A daemon.json registry URL as a registries.conf location, and whether it is plain
    HTTP (dockerd accepts ``host[:port]`` with or without a scheme)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "https", url
    return rest.rstrip("/"), scheme == "http"


def _cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


def daemon_plan(config: DockerDaemonConfigState, recreating: bool) -> dict:
    """What the migration does with daemon.json: ``registries`` (the proposed
    ``podman_registries`` entries), ``data_root``, ``not_carried`` (listed in the plan) and
    ``problems`` (settings that change how the re-created containers run, when
    ``recreating``)."""
    out: dict = {"file": None, "data_root": None, "registries": [], "not_carried": []}
    out["problems"] = problems = []
    if not config.exists:
        return out
    out["file"] = DAEMON_JSON
    if not config.valid:
        problems.append(f"{DAEMON_JSON} is not a JSON object: its settings cannot be read")
        return out
    out["data_root"] = config.data_root
    registries: dict[str, dict] = {}
    for url in config.registry_mirrors:
        location, insecure = _location(url)
        hub = registries.setdefault("docker.io", {"prefix": "docker.io", "mirrors": []})
        hub["mirrors"].append({"location": location, **({"insecure": True} if insecure else {})})
    for value in config.insecure_registries:
        location, _ = _location(value)
        if _cidr(location):
            out["not_carried"].append(
                f"insecure-registries {location}: a CIDR range has no registries.conf form "
                "(name each registry in podman_registries)"
            )
        elif location not in registries:
            registries[location] = {"prefix": location, "insecure": True}
    for entry in registries.values():
        try:
            Registry.model_validate(entry)
        except ValidationError as error:
            out["not_carried"].append(
                f"registry {entry['prefix']}: {error.errors()[0]['msg']} (not proposed)"
            )
        else:
            out["registries"].append(entry)
    for key, value in sorted(config.settings.items()):
        if key in DAEMON_CARRIED:
            continue
        if key in DAEMON_REFUSED:
            defaults, what = DAEMON_REFUSED[key]
            if recreating and not (empty(value) or value in defaults):
                problems.append(
                    f"{DAEMON_JSON}: {key} ({_value(key, value)}) sets {what}, which the "
                    "podman services would not get: this version does not carry it; remove "
                    "it from daemon.json (and restart docker) first"
                )
            continue
        out["not_carried"].append(f"{key} ({_value(key, value)}): no podman meaning here")
    return out
