"""Every setting of a Docker container, decided (standard §6.1: the migration loses nothing).

:data:`SETTINGS` holds one decision for each field of ``docker inspect``'s ``Config`` and
``HostConfig`` (moby's ``api/types/container`` ``Config``, ``HostConfig`` and its embedded
``Resources``, Docker 20.10 through current):

- **carried**: into a field of the ``podman_services`` entry (``model.migration._service``
  and :func:`devices` / :func:`healthcheck` below); a value that field cannot hold is refused;
- **refused**: a value at Docker's default (or inherited from the image, which podman runs
  the same way) is no problem; any other value stops the migration before any change, naming
  the container, the ``docker run`` flag and the value;
- **ignored**: no effect on how a service runs (why is given);
- **listed**: not carried, and printed in the plan (nothing a container itself reads).

A field this table does not know (a newer Docker's) is refused when it holds a value and
ignored when empty: refused rather than guessed. deploys/README.md's table is :func:`markdown`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from facts.docker import DAEMON_JSON, DockerContainer, DockerDaemonConfigState, DockerImage
from model.host_data import Registry

CARRIED = "carried"
REFUSED = "refused"
IGNORED = "ignored"
LISTED = "listed"
# Docker's defaults (moby daemon/config: DefaultShmSize; the HealthConfig defaults of
# daemon/health.go; a zero duration or count means "inherit / default").
DEFAULT_SHM_SIZE = 64 * 2**20
_SECOND = 10**9
HEALTH_DEFAULTS = {"Interval": 30 * _SECOND, "Timeout": 30 * _SECOND, "StartPeriod": 0,
                   "StartInterval": 5 * _SECOND, "Retries": 3}  # fmt: skip
HEALTH_FLAGS = {"Interval": "--health-interval", "Timeout": "--health-timeout",
                "StartPeriod": "--health-start-period", "StartInterval": "--health-start-interval",
                "Retries": "--health-retries"}  # fmt: skip
# The labels docker compose puts on what it creates: read as a compose project, not listed.
COMPOSE_LABELS = "com.docker.compose."
# Log drivers whose logs simply move to the journal under a podman service.
LOG_DRIVERS = ("json-file", "local", "journald")
# Why a refused setting is refused: the migration does not map it to a podman_services field
# (yet: the services model gained runtime options after this table was made), or podman has no
# equivalent.
NOT_YET = "the migration does not map it to podman_services yet"
NO_PODMAN = "podman has no equivalent"
WINDOWS = "a Windows container setting"


@dataclass(frozen=True)
class Context:
    """What a setting's default depends on: the container and its image."""

    container: DockerContainer
    image: DockerImage | None
    # The host's CDI device names (facts.gpu.NvidiaPresence: `nvidia-ctk cdi list`).
    cdi_devices: tuple[str, ...] = ()

    def image_config(self, key: str) -> Any:
        return (self.image.config if self.image else {}).get(key)


Accept = Callable[[Any, Context], bool]


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


def _hostname(value: Any, ctx: Context) -> bool:
    # Docker names a container's host after its short id; on the host network it is the
    # host's own name (the network mode is decided itself).
    c = ctx.container
    return value == c.id[:12] or c.host_config.get("NetworkMode") == "host"


def _memory_swap(value: Any, ctx: Context) -> bool:
    # With --memory alone Docker sets twice the limit (daemon_unix.go), or -1 (no swap limit).
    memory = ctx.container.host_config.get("Memory") or 0
    return empty(value) or value == -1 or (memory > 0 and value == 2 * memory)


def _log_config(value: Any, _ctx: Context) -> bool:
    return (value or {}).get("Type", "") in ("", *LOG_DRIVERS)


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
    return not (value in ("host", "none") or str(value or "").startswith("container:"))


def _restart(value: Any, _ctx: Context) -> bool:
    return not (value or {}).get("MaximumRetryCount")


def _healthcheck(value: Any, ctx: Context) -> bool:
    return _inherited("Healthcheck")(value, ctx) or healthcheck_problem(value) is None


@dataclass(frozen=True)
class Setting:
    flag: str
    decision: str
    why: str = ""
    accept: Accept = empty


def _r(flag: str, why: str = NOT_YET, accept: Accept = empty) -> Setting:
    return Setting(flag, REFUSED, why, accept)


def _i(flag: str, why: str) -> Setting:
    return Setting(flag, IGNORED, why, _always)


def _c(flag: str, why: str, accept: Accept = _always) -> Setting:
    return Setting(flag, CARRIED, why, accept)


SETTINGS: dict[str, Setting] = {
    # --- Config
    "Config.Hostname": _r("--hostname", accept=_hostname),
    "Config.Domainname": _r("--domainname"),
    "Config.User": _r("--user", accept=_inherited("User")),
    "Config.AttachStdin": _i("--attach", "which streams the creating CLI attached"),
    "Config.AttachStdout": _i("--attach", "which streams the creating CLI attached"),
    "Config.AttachStderr": _i("--attach", "which streams the creating CLI attached"),
    "Config.ExposedPorts": _i(
        "--expose", "metadata for -P and links (both refused); ports are published explicitly"
    ),
    "Config.Tty": _r("--tty", "a service has no terminal"),
    "Config.OpenStdin": _r("--interactive", "a service has no standard input"),
    "Config.StdinOnce": _i("--attach", "only with an attached standard input"),
    "Config.Env": _c("--env", "env (what differs from the image's), into the secrets file"),
    "Config.Cmd": _c("command", "command (when it differs from the image's)"),
    "Config.Healthcheck": _c(
        "--health-cmd", "healthcheck (a shell command; interval)", _healthcheck
    ),
    "Config.ArgsEscaped": _i("(image)", "Windows-only command-line escaping"),
    "Config.Image": _c("image", "image (by the tag podman loads)"),
    "Config.Volumes": _i("--volume", "anonymous volume targets; the mounts are decided by Mounts"),
    "Config.WorkingDir": _r("--workdir", accept=_inherited("WorkingDir")),
    "Config.Entrypoint": _r("--entrypoint", accept=_inherited("Entrypoint")),
    "Config.NetworkDisabled": _r("--network none", NO_PODMAN),
    "Config.MacAddress": _r("--mac-address"),
    "Config.OnBuild": _i("(image)", "build-time metadata"),
    "Config.Labels": Setting(
        "--label",
        LISTED,
        "read by tools through Docker's API, not by the container; kept in the bundle",
        _inherited("Labels"),
    ),
    "Config.StopSignal": _r("--stop-signal", accept=_inherited("StopSignal")),
    "Config.StopTimeout": _r("--stop-timeout"),
    "Config.Shell": _i("(image)", "used only when building an image"),
    # --- HostConfig
    "HostConfig.Binds": _c(
        "--volume", "volumes (from Mounts; ro kept, mount propagation refused)", _plain_binds
    ),
    "HostConfig.ContainerIDFile": _i("--cidfile", "a file the creating CLI wrote"),
    "HostConfig.LogConfig": _r("--log-driver", "a service logs to the journal", _log_config),
    "HostConfig.NetworkMode": _c(
        "--network",
        "network (one user-defined network; Docker's bridge: podman's)",
        _network_mode,
    ),  # fmt: skip
    "HostConfig.PortBindings": _c("--publish", "ports (fixed host ports)"),
    "HostConfig.RestartPolicy": _c(
        "--restart", "restart (unless-stopped: always; no retry limit)", _restart
    ),
    "HostConfig.AutoRemove": _i("--rm", "a service's container is removed when it stops"),
    "HostConfig.VolumeDriver": _r("--volume-driver", NO_PODMAN),
    "HostConfig.VolumesFrom": _r("--volumes-from"),
    "HostConfig.ConsoleSize": _i("(CLI)", "the creating terminal's size"),
    "HostConfig.Annotations": _r("--annotation"),
    "HostConfig.CapAdd": _r("--cap-add"),
    "HostConfig.CapDrop": _r("--cap-drop"),
    "HostConfig.CgroupnsMode": _r("--cgroupns", accept=_one_of("private")),
    "HostConfig.Dns": _r("--dns"),
    "HostConfig.DnsOptions": _r("--dns-option"),
    "HostConfig.DnsSearch": _r("--dns-search"),
    "HostConfig.ExtraHosts": _r("--add-host"),
    "HostConfig.GroupAdd": _r("--group-add"),
    "HostConfig.IpcMode": _r("--ipc", accept=_one_of("private", "shareable")),
    "HostConfig.Cgroup": _r("--cgroup"),
    "HostConfig.Links": _r("--link", "legacy links; use a user-defined network"),
    "HostConfig.OomScoreAdj": _r("--oom-score-adj"),
    "HostConfig.PidMode": _r("--pid"),
    "HostConfig.Privileged": _r("--privileged"),
    "HostConfig.PublishAllPorts": _r("--publish-all", "publish fixed host ports instead"),
    "HostConfig.ReadonlyRootfs": _r("--read-only"),
    "HostConfig.SecurityOpt": _r("--security-opt"),
    "HostConfig.StorageOpt": _r("--storage-opt"),
    "HostConfig.Tmpfs": _r("--tmpfs"),
    "HostConfig.UTSMode": _r("--uts"),
    "HostConfig.UsernsMode": _r("--userns"),
    "HostConfig.ShmSize": _r("--shm-size", accept=_one_of(DEFAULT_SHM_SIZE)),
    "HostConfig.Sysctls": _r("--sysctl"),
    "HostConfig.Runtime": _r("--runtime", NO_PODMAN, _one_of("runc", "io.containerd.runc.v2")),
    "HostConfig.Isolation": _r("--isolation", WINDOWS, _one_of("default")),
    "HostConfig.CpuShares": _r("--cpu-shares"),
    "HostConfig.Memory": _r("--memory"),
    "HostConfig.NanoCpus": _r("--cpus"),
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
    "HostConfig.CpusetCpus": _r("--cpuset-cpus"),
    "HostConfig.CpusetMems": _r("--cpuset-mems"),
    "HostConfig.Devices": _c("--device", "devices (host[:container[:permissions]])"),
    "HostConfig.DeviceCgroupRules": _r("--device-cgroup-rule"),
    "HostConfig.DeviceRequests": _c(
        "--gpus",
        "devices: the host's CDI names (all GPUs: nvidia.com/gpu=all; --gpus device=0: "
        "nvidia.com/gpu=0)",
        lambda value, ctx: gpu_problem(value, ctx.cdi_devices) is None,
    ),
    "HostConfig.KernelMemory": _r("--kernel-memory", NO_PODMAN),
    "HostConfig.KernelMemoryTCP": _r("--kernel-memory-tcp", NO_PODMAN),
    "HostConfig.MemoryReservation": _r("--memory-reservation"),
    "HostConfig.MemorySwap": _r("--memory-swap", accept=_memory_swap),
    "HostConfig.MemorySwappiness": _r("--memory-swappiness", accept=_one_of(-1)),
    "HostConfig.OomKillDisable": _r("--oom-kill-disable"),
    "HostConfig.PidsLimit": _r("--pids-limit", accept=_one_of(-1)),
    "HostConfig.Ulimits": _r("--ulimit"),
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
    "HostConfig.Init": _r("--init"),
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
    c: DockerContainer, image: DockerImage | None, cdi_devices: list[str] | None = None
) -> list[str]:
    """Every setting of ``c`` that the migration cannot carry, by name: the container, the
    ``docker run`` flag, the inspect field and its value (printed through ``shown``).
    ``cdi_devices``: the host's CDI device names, which ``--gpus`` becomes."""
    ctx = Context(c, image, tuple(cdi_devices or ()))
    out = []
    for key, value in _fields(c):
        setting = SETTINGS.get(key)
        if setting is None:
            if not empty(value):
                out.append(
                    f"container {c.name}: {key} ({_value(key, value)}) is a Docker setting "
                    "this version does not know: refused rather than dropped"
                )
            continue
        if setting.decision == LISTED or setting.accept(value, ctx):
            continue
        why = setting.why
        if key == "Config.Healthcheck":
            why = healthcheck_problem(value) or why
        elif key == "HostConfig.DeviceRequests":
            why = gpu_problem(value, ctx.cdi_devices) or why
        elif setting.decision == CARRIED:
            why = f"the service carries only {setting.why}"
        out.append(
            f"container {c.name}: {setting.flag}/{key.split('.', 1)[1]} "
            f"({_value(key, value)}) is not carried by this version: {why}; re-create the "
            "container without it first, or keep it on Docker"
        )
    return out


def listed(c: DockerContainer, image: DockerImage | None) -> list[str]:
    """What the plan prints as not carried (the LISTED settings that differ from the image)."""
    ctx = Context(c, image)
    out = []
    for key, value in _fields(c):
        setting = SETTINGS.get(key)
        if setting and setting.decision == LISTED and not setting.accept(value, ctx):
            own = value
            if key == "Config.Labels":
                inherited = ctx.image_config("Labels") or {}
                # docker compose's own labels make the project (model.migration).
                own = {
                    k: v
                    for k, v in value.items()
                    if inherited.get(k) != v and not k.startswith(COMPOSE_LABELS)
                }
                if not own:
                    continue
            out.append(f"{setting.flag} {_value(key, own)} ({setting.why})")
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


def docker_run_flags(c: DockerContainer) -> list[str]:
    """``docker create`` flags for the settings the services carry beyond the basics (the
    rollback re-creates a container Docker lost with them): devices, GPUs, a shell
    healthcheck with its interval."""
    flags = []
    for d in c.host_config.get("Devices") or []:
        inside = d.get("PathInContainer") or d["PathOnHost"]
        flags += ["--device", f"{d['PathOnHost']}:{inside}:{d.get('CgroupPermissions') or 'rwm'}"]
    for request in c.host_config.get("DeviceRequests") or []:
        flags += ["--gpus", _gpus_flag(request)]
    health = c.config.get("Healthcheck") or {}
    if (health.get("Test") or [])[:1] == ["CMD-SHELL"] and len(health["Test"]) == 2:
        flags += ["--health-cmd", health["Test"][1]]
        if health.get("Interval"):
            flags += ["--health-interval", f"{health['Interval'] // 10**6}ms"]
    return flags


def healthcheck_problem(value: dict | None) -> str | None:
    """Why ``value`` (a Config.Healthcheck) is no services healthcheck, or None."""
    if not value:
        return None
    test = value.get("Test") or []
    if test[:1] == ["NONE"]:
        return "a service cannot switch off its image's healthcheck"
    if test[:1] != ["CMD-SHELL"] or len(test) != 2:
        return "a service's healthcheck is one shell command (CMD-SHELL), not an exec form"
    for key, flag in HEALTH_FLAGS.items():
        if key != "Interval" and value.get(key) not in (None, 0, HEALTH_DEFAULTS[key]):
            return f"a service's healthcheck has no {flag}"
    interval = value.get("Interval") or HEALTH_DEFAULTS["Interval"]
    if interval % 10**6:
        return "a service's healthcheck interval is whole milliseconds"
    return None


def healthcheck(c: DockerContainer, image: DockerImage | None) -> dict | None:
    """The container's own healthcheck as the service's (None: none, or the image's own, which
    podman runs from the image)."""
    value = c.config.get("Healthcheck")
    if _inherited("Healthcheck")(value, Context(c, image)) or healthcheck_problem(value):
        return None
    interval = (value.get("Interval") or HEALTH_DEFAULTS["Interval"]) // 10**6
    text = f"{interval // 1000}s" if interval % 1000 == 0 else f"{interval}ms"
    return {"command": value["Test"][1], "interval": text}


def markdown() -> str:
    """The decisions as deploys/README.md's table."""
    rows = ["| inspect field | `docker run` | decision |", "| --- | --- | --- |"]
    for key, s in SETTINGS.items():
        what = {
            CARRIED: f"carried: {s.why}",
            REFUSED: f"refused unless at Docker's default or the image's ({s.why})",
            IGNORED: f"ignored: {s.why}",
            LISTED: f"listed in the plan: {s.why}",
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
