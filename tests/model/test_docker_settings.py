"""Every setting of a Docker container decided (model/docker_settings.py), on real captured
``docker inspect`` output: a field with no decision fails; each of issue 13's twelve settings
is carried or refused by name."""

import dataclasses
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from facts import split_sections
from facts.docker import (
    DockerDaemonConfig,
    DockerDaemonConfigState,
    DockerImage,
    DockerInventory,
    _container,
)
from facts.gpu import NvidiaPresence
from model import docker_settings
from model.docker_settings import SETTINGS, markdown, undecided
from model.host_data import Registries, Service, size_bytes
from model.migration import build_plan, bundle_files, describe, render_docker_restore, services
from operations.services import render_unit
from tests.test_templates import PODMAN, _parse_unit, _systemd_words

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GUEST = FIXTURES / "guest-debian12"
# A current Docker's output (compose 2.40.3, 2026; see tests/fixtures/facts/README.md).
UPSTREAM = FIXTURES / "upstream"
CURRENT = UPSTREAM / "docker-inspect.minio-compose-2.40.3.txt"
DERIVED = json.loads((GUEST / "DockerInventory.settings.DERIVED.json").read_text())
BUNDLE = "/var/lib/podman-standard/docker-migration"
ROOT = Path(__file__).resolve().parents[2]

# The JSON names of moby's container Config and HostConfig (with Resources embedded), the
# union of v20.10.24 and master at b985e2313a8676e18072b442911fc8f64f17d440 (2026-08-23):
# api/types/container/config.go, host_config.go / hostconfig.go. v20.10.24 has Config's
# MacAddress and Resources' KernelMemory, KernelMemoryTCP; master has HostConfig.Annotations.
MOBY_CONFIG = (
    "Hostname Domainname User AttachStdin AttachStdout AttachStderr ExposedPorts Tty "
    "OpenStdin StdinOnce Env Cmd Healthcheck ArgsEscaped Image Volumes WorkingDir Entrypoint "
    "NetworkDisabled MacAddress OnBuild Labels StopSignal StopTimeout Shell"
).split()
MOBY_HOST_CONFIG = (
    "Binds ContainerIDFile LogConfig NetworkMode PortBindings RestartPolicy AutoRemove "
    "VolumeDriver VolumesFrom ConsoleSize Annotations CapAdd CapDrop CgroupnsMode Dns "
    "DnsOptions DnsSearch ExtraHosts GroupAdd IpcMode Cgroup Links OomScoreAdj PidMode "
    "Privileged PublishAllPorts ReadonlyRootfs SecurityOpt StorageOpt Tmpfs UTSMode UsernsMode "
    "ShmSize Sysctls Runtime Isolation CpuShares Memory NanoCpus CgroupParent BlkioWeight "
    "BlkioWeightDevice BlkioDeviceReadBps BlkioDeviceWriteBps BlkioDeviceReadIOps "
    "BlkioDeviceWriteIOps CpuPeriod CpuQuota CpuRealtimePeriod CpuRealtimeRuntime CpusetCpus "
    "CpusetMems Devices DeviceCgroupRules DeviceRequests KernelMemory KernelMemoryTCP "
    "MemoryReservation MemorySwap MemorySwappiness OomKillDisable PidsLimit Ulimits CpuCount "
    "CpuPercent IOMaximumIOps IOMaximumBandwidth Mounts MaskedPaths ReadonlyPaths Init"
).split()


def _captured_containers():
    for path in sorted(GUEST.glob("DockerInventory.*.txt")):
        for c in DockerInventory().process(path.read_text().splitlines()).containers:
            yield f"{path.name}:{c.name}", c
    for data in json.loads(CURRENT.read_text()):
        yield f"{CURRENT.name}:{data['Name']}", _container(data)


CAPTURED = list(_captured_containers())


def test_the_table_decides_exactly_mobys_fields():
    expected = {f"Config.{k}" for k in MOBY_CONFIG} | {f"HostConfig.{k}" for k in MOBY_HOST_CONFIG}
    assert set(SETTINGS) == expected
    assert all(s.decision in ("carried", "refused", "ignored", "listed") for s in SETTINGS.values())


@pytest.mark.parametrize("name, container", CAPTURED, ids=[n for n, _ in CAPTURED])
def test_every_field_of_real_inspect_output_is_decided(name, container):
    assert len(container.config) >= 17 and len(container.host_config) >= 50  # walked, not empty
    assert undecided(container) == []


def test_a_field_the_table_does_not_know_is_refused_when_set():
    _, c = CAPTURED[0]
    newer = dataclasses.replace(c, host_config={**c.host_config, "Future": {"On": True}})
    assert docker_settings.problems(newer, None)[-1] == (
        f'container {c.name}: HostConfig.Future ({{"On": true}}) is a Docker setting this '
        "version does not know: refused rather than dropped"
    )
    unset = dataclasses.replace(c, host_config={**c.host_config, "Future": None})
    assert undecided(unset) == ["HostConfig.Future"]
    assert len(docker_settings.problems(unset, None)) == len(docker_settings.problems(c, None))


def derived_output(case: dict, base: str = DERIVED["base"], name: str = DERIVED["container"]):
    """The base capture with container ``name`` changed as the case says (the DERIVED file)."""
    return derived_containers({name: case}, base)


def derived_containers(cases: dict[str, dict], base: str) -> list[str]:
    """The base capture with each named container changed as its case says."""
    sections = split_sections((GUEST / base).read_text().splitlines())
    containers = json.loads("\n".join(sections["containers"]))
    for data in containers:
        case = cases.get(data["Name"].lstrip("/"), {})
        for key in ("Config", "HostConfig"):
            for field, value in case.get(key, {}).items():
                if field == "Labels":  # added to what the capture has
                    value = {**(data[key].get("Labels") or {}), **value}
                data[key][field] = value
        if "Networks" in case:
            (endpoint,) = data["NetworkSettings"]["Networks"].values()
            data["NetworkSettings"]["Networks"] = {n: endpoint for n in case["Networks"]}
    out = []
    for key, body in sections.items():
        out.append("@@" + key)
        out += json.dumps(containers, indent=4).splitlines() if key == "containers" else body
    return out


def _derived(case: dict):
    return DockerInventory().process(derived_output(case))


def _plan(inventory):
    return build_plan(inventory, BUNDLE, service_root="/srv/containers/apps")


# Issue 13's twelve settings and the other runtime settings the services carry: refused (the
# message's start), or carried as (the service's fields, the plain unit's podman flags, the
# rollback's docker create flags, the bundle compose file's keys).
REFUSED_AS = {
    "gpus-all": "--gpus/DeviceRequests (all GPUs)",  # (no CDI spec on this host: see below)
    "privileged": "--privileged/Privileged (true)",
}
HEALTH = "wget -q -O /dev/null http://localhost/ || exit 1"
CARRIED_AS = {
    "device-fuse": (
        {"devices": ["/dev/fuse"]},
        ["--device", "/dev/fuse"],
        ["--device", "/dev/fuse:/dev/fuse:rwm"],
        {"devices": ["/dev/fuse:/dev/fuse:rwm"]},
    ),
    "healthcheck": (
        {"healthcheck": {"command": HEALTH, "interval": "10s"}},
        ["--health-cmd", HEALTH],
        ["--health-cmd", HEALTH, "--health-interval", "10s"],
        {"healthcheck": {"test": ["CMD-SHELL", HEALTH], "interval": "10s"}},
    ),
    "healthcheck-timing": (
        {
            "healthcheck": {
                "command": "true",
                "interval": "10s",
                "timeout": "5s",
                "start_period": "30s",
                "retries": 5,
            }
        },
        ["--health-timeout", "5s", "--health-retries", "5", "--health-start-period", "30s"],
        ["--health-interval", "10s", "--health-timeout", "5s", "--health-retries", "5"],
        {
            "healthcheck": {
                "test": ["CMD-SHELL", "true"],
                "interval": "10s",
                "timeout": "5s",
                "start_period": "30s",
                "retries": 5,
            }
        },
    ),
    "cap-add": (
        {"cap_add": ["CAP_NET_ADMIN"]},
        ["--cap-add", "CAP_NET_ADMIN"],
        ["--cap-add", "CAP_NET_ADMIN"],
        {"cap_add": ["CAP_NET_ADMIN"]},
    ),
    "cap-drop": (
        {"cap_drop": ["CAP_MKNOD"]},
        ["--cap-drop", "CAP_MKNOD"],
        ["--cap-drop", "CAP_MKNOD"],
        {"cap_drop": ["CAP_MKNOD"]},
    ),
    "memory-2g": ({"memory": "2g"}, ["--memory", "2g"], ["--memory", "2g"], {"mem_limit": "2g"}),
    "cpus-1.5": ({"cpus": 1.5}, ["--cpus", "1.5"], ["--cpus", "1.5"], {"cpus": 1.5}),
    "shm-8g": ({"shm_size": "8g"}, ["--shm-size", "8g"], ["--shm-size", "8g"], {"shm_size": "8g"}),
    "ipc-host": ({"ipc": "host"}, ["--ipc", "host"], ["--ipc", "host"], {"ipc": "host"}),
    "network-host": (
        {"host_network": True},
        ["--network", "host"],
        ["--network", "host"],
        {"network_mode": "host"},
    ),
    "user": (
        {"container_user": "1000", "container_group": "1000"},
        ["--user", "1000:1000"],
        ["--user", "1000:1000"],
        {"user": "1000:1000"},
    ),
    "workdir": (
        {"working_dir": "/srv/app"},
        ["--workdir", "/srv/app"],
        ["--workdir", "/srv/app"],
        {"working_dir": "/srv/app"},
    ),
    "hostname": (
        {"hostname": "tuned-host"},
        ["--hostname", "tuned-host"],
        ["--hostname", "tuned-host"],
        {"hostname": "tuned-host"},
    ),
    "stop-timeout": (
        {"stop_timeout": 5},
        ["--stop-timeout", "5"],
        ["--stop-timeout", "5"],
        {"stop_grace_period": "5s"},
    ),
    "label": (
        {"labels": {"org.example.team": "infra"}},
        ["--label", "org.example.team=infra"],
        [],  # (Docker's side: all labels, --label, from the container's own)
        {},
    ),
    "ulimit": (
        {"ulimits": {"nofile": "1024:2048"}},
        ["--ulimit", "nofile=1024:2048"],
        ["--ulimit", "nofile=1024:2048"],
        {"ulimits": {"nofile": {"soft": 1024, "hard": 2048}}},
    ),
    "tmpfs": (
        {"tmpfs": [{"target": "/scratch", "size": "8m", "mode": "1777"}]},
        ["--tmpfs", "/scratch:size=8m,mode=1777"],
        ["--tmpfs", "/scratch:size=8m,mode=1777"],
        {"tmpfs": ["/scratch:size=8m,mode=1777"]},
    ),
    "sysctl": (
        {"sysctls": {"net.core.somaxconn": "512"}},
        ["--sysctl", "net.core.somaxconn=512"],
        ["--sysctl", "net.core.somaxconn=512"],
        {"sysctls": {"net.core.somaxconn": "512"}},
    ),
    "init": ({"init": True}, ["--init"], ["--init"], {"init": True}),
    "read-only": ({"read_only": True}, ["--read-only"], ["--read-only"], {"read_only": True}),
    "pids-limit": (
        {"pids_limit": 200},
        ["--pids-limit", "200"],
        ["--pids-limit", "200"],
        {"pids_limit": 200},
    ),
    "log-journald": (
        {"log_driver": "journald", "log_opts": {"tag": "worker"}},
        ["--log-driver", "journald", "--log-opt", "tag=worker"],
        ["--log-driver", "journald", "--log-opt", "tag=worker"],
        {"logging": {"driver": "journald", "options": {"tag": "worker"}}},
    ),
    "userns-host": (
        {"userns": "host"},
        ["--userns", "host"],
        ["--userns", "host"],
        {"userns_mode": "host"},
    ),
}


def test_the_base_capture_migrates_as_it_is():
    plan = _plan(_derived({}))
    assert plan["problems"] == []
    assert set(REFUSED_AS) | set(CARRIED_AS) == set(DERIVED["cases"])


@pytest.mark.parametrize("case", sorted(REFUSED_AS))
def test_refused_by_name_in_the_plan(case):
    plan = _plan(_derived(DERIVED["cases"][case]))
    assert plan["problems"] == [
        f"container worker: {REFUSED_AS[case]} is not carried by this version: "
        + next(p.split(": ", 2)[2] for p in plan["problems"])
    ]
    assert f"CANNOT MIGRATE: container worker: {REFUSED_AS[case]}" in describe(plan, "h")


def _contains(argv: list[str], part: list[str]) -> bool:
    return any(argv[i : i + len(part)] == part for i in range(len(argv) - len(part) + 1))


def _plain_argv(entry: dict) -> list[str]:
    svc = Service.model_validate(entry)
    unit = _parse_unit(
        render_unit(svc, "plain", "/srv/containers/apps/worker", False, podman=PODMAN["plain"])
    )
    words = _systemd_words(" ".join(v.removesuffix("\\") for v in unit["Service"]["ExecStart"]))
    # `--flag=value` as `--flag value` (the unit writes both forms).
    return [part for w in words for part in (w.split("=", 1) if w.startswith("--") else [w])]


def _restore_argv(plan: dict, name: str = "worker") -> list[str]:
    script = render_docker_restore(plan)
    [line] = [x for x in script.splitlines() if f"docker create --name {name} " in x]
    return shlex.split(line.split("|| ", 1)[1])


@pytest.mark.parametrize("case", sorted(CARRIED_AS))
def test_carried_into_the_service_the_unit_and_the_bundle(case):
    """Carried into the service's fields, from there into the plain unit's podman command,
    and kept for the rollback: the docker create flags of docker-restore.sh and the keys of
    docker-compose.yml re-create it under Docker."""
    fields, podman, docker, compose = CARRIED_AS[case]
    plan = _plan(_derived(DERIVED["cases"][case]))
    assert plan["problems"] == []
    [worker] = [c["service"] for c in plan["containers"] if c["name"] == "worker"]
    assert {k: worker[k] for k in fields} == fields
    assert _contains(_plain_argv(worker), podman)
    argv = _restore_argv(plan)
    assert _contains(argv, docker)
    [restored] = [
        c
        for c in yaml.safe_load(bundle_files(plan)["docker-compose.yml"])["services"].values()
        if c["container_name"] == "worker"
    ]
    assert {k: restored.get(k) for k in compose} == compose


def test_the_runtime_settings_are_printed_in_the_plan():
    case = DERIVED["cases"]
    changes = {"HostConfig": {**case["shm-8g"]["HostConfig"], **case["cap-add"]["HostConfig"]}}
    text = describe(_plan(_derived(changes)), "h")
    assert '\n    carried: {"cap_add": ["CAP_NET_ADMIN"], "shm_size": "8g"}\n' in text
    text = describe(_plan(_derived(case["device-fuse"])), "h")
    assert "\n    devices /dev/fuse\n" in text
    text = describe(_plan(_derived(case["healthcheck"])), "h")
    assert f"\n    healthcheck every 10s: {HEALTH}" in text


def _stopped(inventory, name: str = "worker"):
    return dataclasses.replace(
        inventory,
        containers=[
            dataclasses.replace(c, state="exited") if c.name == name else c
            for c in inventory.containers
        ],
    )


def test_a_stopped_containers_settings_are_checked_too():
    """A container that is not running is only kept in the bundle: its settings must survive
    the rollback's re-creation under Docker (docker-restore.sh), or it is refused by name.
    Docker itself re-creates what a service cannot hold (--privileged, --tty, --dns, ...)."""
    case = DERIVED["cases"]
    changes = {
        "HostConfig": {
            **case["privileged"]["HostConfig"],
            **case["shm-8g"]["HostConfig"],
            "Dns": ["192.0.2.53"],
            "Links": ["/web:/worker/web"],
        },
        "Config": {"Tty": True, "OpenStdin": True},
    }
    plan = _plan(_stopped(_derived(changes)))
    assert [p.split(" is not carried")[0] for p in plan["problems"]] == [
        'container worker (not running: kept in the bundle): --link/Links (["/web:/worker/web"])'
    ]
    del changes["HostConfig"]["Links"]
    plan = _plan(_stopped(_derived(changes)))
    assert plan["problems"] == []
    argv = _restore_argv(plan)
    for part in (["--shm-size", "8g"], ["--tty"], ["--interactive"], ["--privileged"]):
        assert _contains(argv, part), argv
    assert _contains(argv, ["--dns", "192.0.2.53"])
    # --gpus for a container kept in the bundle: re-created by Docker itself, no CDI needed.
    plan = _plan(_stopped(_derived(case["gpus-all"])))
    assert plan["problems"] == []
    assert _contains(_restore_argv(plan), ["--gpus", "all"])
    # A running one with the same settings is refused by name: a service cannot hold them.
    running = _plan(_derived(changes))["problems"]
    assert [p.split(" (")[0] for p in running] == [
        "container worker: --tty/Tty",
        "container worker: --interactive/OpenStdin",
        "container worker: --dns/Dns",
        "container worker: --privileged/Privileged",
    ]


@pytest.mark.parametrize(
    "changes, refused",
    [
        ({"HostConfig": {"IpcMode": "container:web"}}, '--ipc/IpcMode ("container:web")'),
        ({"HostConfig": {"NetworkMode": "none"}}, '--network/NetworkMode ("none")'),
        ({"HostConfig": {"Tmpfs": {"/t": "exec"}}}, '--tmpfs/Tmpfs ({"/t": "exec"})'),
        ({"HostConfig": {"Tmpfs": {"/t": "size=50%"}}}, '--tmpfs/Tmpfs ({"/t": "size=50%"})'),
        (
            {"HostConfig": {"LogConfig": {"Type": "syslog", "Config": {}}}},
            '--log-driver/LogConfig ({"Config": {}, "Type": "syslog"})',
        ),
        ({"HostConfig": {"UsernsMode": "private"}}, '--userns/UsernsMode ("private")'),
        ({"HostConfig": {"MemorySwap": 2**31}}, "--memory-swap/MemorySwap (2147483648 bytes"),
    ],
)
def test_values_the_service_cannot_hold_are_refused_by_name(changes, refused):
    [problem] = _plan(_derived(changes))["problems"]
    assert problem.startswith(f"container worker: {refused}")


def test_values_the_model_refuses_are_refused_by_name():
    # A sysctl podman does not set in a container, a memory limit under podman's minimum.
    [sysctl] = _plan(_derived({"HostConfig": {"Sysctls": {"vm.swappiness": "1"}}}))["problems"]
    assert sysctl.startswith("container worker: sysctls.vm.swappiness.[key]: ")
    assert "is not namespaced" in sysctl
    [memory] = _plan(_derived({"HostConfig": {"Memory": 4 * 2**20}}))["problems"]
    assert memory.startswith("container worker: memory: ") and "under podman's minimum" in memory


@pytest.mark.parametrize(
    "n, text", [(8 * 2**30, "8g"), (96 * 2**20, "96m"), (1536 * 2**10, "1536k"), (1000, "1000")]
)
def test_sizes_in_podmans_syntax(n, text):
    assert docker_settings.size(n) == text
    assert size_bytes(text) == n


def test_labels_carried_except_dockers_own_and_the_images():
    c, image = _worker(Labels={"org.example.team": "infra", "com.docker.compose.project": "x"})
    image = dataclasses.replace(image, config={**image.config, "Labels": {"from": "image"}})
    c = dataclasses.replace(
        c, config={**c.config, "Labels": {**c.config["Labels"], "from": "image"}}
    )
    assert docker_settings.carried(c, image)["labels"] == {"org.example.team": "infra"}


# The GPU host's `nvidia-ctk cdi list` (tests/fixtures/facts/upstream, COMPOSED from real
# fragments: see its README): gpu=0, gpu=GPU-3eb87630-..., gpu=all.
CDI = (
    NvidiaPresence()
    .process((UPSTREAM / "NvidiaPresence.gpu-host.COMPOSED.txt").read_text().splitlines())
    .cdi_devices
)
UUID = "GPU-3eb87630-93d5-b2b6-b8ff-9b359caf4ee2"


def test_gpus_without_the_hosts_cdi_spec_are_refused_saying_what_to_do():
    [problem] = _plan(_derived(DERIVED["cases"]["gpus-all"]))["problems"]
    assert problem == (
        "container worker: --gpus/DeviceRequests (all GPUs) is not carried by this version: "
        "podman reaches GPUs through CDI devices, and this host's CDI spec has no "
        "nvidia.com/gpu=all (`nvidia-ctk cdi list`): generate it first (deploys/nvidia.py); "
        "re-create the container without it first, or keep it on Docker"
    )


def _gpus(**request):
    case = DERIVED["cases"]["gpus-all"]
    [base] = case["HostConfig"]["DeviceRequests"]
    return _derived({"HostConfig": {"DeviceRequests": [{**base, **request}]}})


@pytest.mark.parametrize(
    "request_, devices",
    [
        ({}, ["nvidia.com/gpu=all"]),  # --gpus all
        ({"Count": 0, "DeviceIDs": ["0"]}, ["nvidia.com/gpu=0"]),  # --gpus device=0
        ({"Count": 0, "DeviceIDs": [UUID]}, [f"nvidia.com/gpu={UUID}"]),
        ({"Driver": "nvidia", "Capabilities": [["compute", "utility", "gpu"]]}, None),
    ],
)
def test_gpus_become_the_hosts_cdi_devices(request_, devices):
    plan = build_plan(_gpus(**request_), BUNDLE, cdi_devices=CDI)
    assert plan["problems"] == []
    [worker] = [c["service"] for c in plan["containers"] if c["name"] == "worker"]
    assert worker["devices"] == (devices or ["nvidia.com/gpu=all"])
    Service.model_validate(worker)


@pytest.mark.parametrize(
    "request_, why",
    [
        ({"Count": 2}, "a GPU count lets Docker pick which GPUs; podman names them"),
        ({"Count": 0, "DeviceIDs": ["1"]}, "this host's CDI spec has no nvidia.com/gpu=1"),
        ({"Capabilities": [["gpu", "video"]]}, "the compute and utility driver capabilities"),
        ({"Driver": "amd"}, "podman has no device driver 'amd'"),
    ],
)
def test_gpus_the_host_cannot_name_are_refused(request_, why):
    [problem] = build_plan(_gpus(**request_), BUNDLE, cdi_devices=CDI)["problems"]
    assert problem.startswith("container worker: --gpus/DeviceRequests (")
    assert why in problem


def _worker(**config):
    inventory = _derived({"Config": config})
    c = next(c for c in inventory.containers if c.name == "worker")
    return c, next(i for i in inventory.images if i.id == c.image_id)


@pytest.mark.parametrize(
    "health, why",
    [
        ({"Test": ["CMD", "true"]}, "one shell command (CMD-SHELL), not an exec form"),
        ({"Test": ["NONE"]}, "cannot switch off its image's healthcheck"),
        ({"Test": ["CMD-SHELL", "true"], "StartInterval": 10**9}, "has no --health-start-interval"),
        (
            {"Test": ["CMD-SHELL", "true"], "Timeout": 1500},
            "--health-timeout is whole milliseconds",
        ),
        ({"Test": ["CMD-SHELL", "true"], "Retries": 101}, "retries at most 100 times"),
    ],
)
def test_a_healthcheck_the_service_cannot_hold_is_refused(health, why):
    c, image = _worker(Healthcheck=health)
    [problem] = docker_settings.problems(c, image)
    assert problem.startswith("container worker: --health-cmd/Healthcheck (")
    assert why in problem
    assert docker_settings.healthcheck(c, image) is None


def test_the_images_own_settings_are_no_settings_of_the_container():
    health = {"Test": ["CMD-SHELL", "true"], "Interval": 10**9, "Timeout": 5 * 10**9}
    c, image = _worker(Healthcheck=health, User="nobody", WorkingDir="/srv")
    image = dataclasses.replace(image, config={**image.config, **c.config})
    assert docker_settings.problems(c, image) == []
    assert docker_settings.healthcheck(c, image) is None  # podman runs the image's own


def test_docker_defaults_that_follow_other_flags_are_accepted():
    c, image = _worker()
    # --memory alone: Docker's own MemorySwap; --network host: the host's hostname.
    derived = {"Memory": 2**20 * 64, "MemorySwap": 2**20 * 128, "NetworkMode": "host"}
    c = dataclasses.replace(c, host_config={**c.host_config, **derived})
    c = dataclasses.replace(c, config={**c.config, "Hostname": "the-host"})
    assert docker_settings.problems(c, image) == []
    assert docker_settings.carried(c, image) == {"host_network": True, "memory": "64m"}


def test_labels_are_carried():
    inventory = DockerInventory().process(
        (GUEST / "DockerInventory.two-containers.txt").read_text().splitlines()
    )
    plan = _plan(inventory)
    [web] = [c["service"] for c in plan["containers"] if c["name"] == "web"]
    assert web["labels"] == {"com.example.role": "frontend"}
    assert '    carried: {"labels": {"com.example.role": "frontend"}}' in describe(plan, "h")


def test_a_current_dockers_container_is_refused_only_for_its_own_settings():
    """The current capture, with an image that gives it what a container inherits (its
    entrypoint, command, env, labels, working directory, volumes): nothing is refused, and
    only its stop timeout (which no image sets; compose 2.40.3 sent 1 s) is carried (compose's
    own labels make the project)."""
    [data] = json.loads(CURRENT.read_text())
    c = _container(data)
    inherited = ("Entrypoint", "Cmd", "Env", "Labels", "WorkingDir", "Volumes")
    image = DockerImage(
        id=c.image_id, repo_tags=[], size_bytes=0, config={k: c.config[k] for k in inherited}
    )
    assert docker_settings.problems(c, image) == []
    assert docker_settings.carried(c, image) == {"stop_timeout": 1}


def test_the_migration_readme_table_is_the_decisions_table():
    assert markdown() in (ROOT / "deploys" / "README.md").read_text()


def daemon(name: str) -> DockerDaemonConfigState:
    return DockerDaemonConfig().process((UPSTREAM / name).read_text().splitlines())


GIST = "DockerDaemonConfig.gist-sample-data-root-dns.COMPOSED.txt"


def _two_containers():
    return DockerInventory().process(
        (GUEST / "DockerInventory.two-containers.txt").read_text().splitlines()
    )


def test_daemon_json_registries_are_proposed_and_printed():
    plan = _plan_with(_derived({}), daemon("DockerDaemonConfig.common-settings.COMPOSED.txt"))
    assert plan["problems"] == []
    proposed = [
        {
            "prefix": "docker.io",
            "mirrors": [
                {"location": "docker.mirrors.ustc.edu.cn"},
                {"location": "hub-mirror.c.163.com", "insecure": True},
            ],
        },
        {"prefix": "192.168.0.74", "insecure": True},
    ]
    assert plan["daemon"]["registries"] == proposed
    Registries.model_validate({"registries": proposed})
    text = describe(plan, "h")
    assert (
        "  /etc/docker/daemon.json: proposed podman_registries entries (applied with "
        "podman_migration_registries: true): " + json.dumps(proposed, sort_keys=True)
    ) in text
    assert (
        "  /etc/docker/daemon.json: not carried: live-restore (true): no podman meaning here"
        in (text)
    )


def test_daemon_json_dns_is_refused_by_name_when_a_container_is_re_created():
    plan = _plan_with(_derived({}), daemon(GIST))
    assert plan["problems"] == [
        '/etc/docker/daemon.json: dns (["192.168.1.1"]) sets the containers\' DNS servers, '
        "which the podman services would not get: this version does not carry it; remove it "
        "from daemon.json (and restart docker) first"
    ]
    nothing_running = dataclasses.replace(
        _derived({}),
        containers=[dataclasses.replace(c, state="exited") for c in _derived({}).containers],
    )
    assert _plan_with(nothing_running, daemon(GIST))["daemon"]["problems"] == []


def test_daemon_json_data_root_is_dockers_data_root():
    inventory = _two_containers()
    web = next(c for c in inventory.containers if c.name == "web")
    bind = next(m for m in web.mounts if m.type == "bind")
    moved = dataclasses.replace(
        web,
        mounts=[m for m in web.mounts if m is not bind]
        + [dataclasses.replace(bind, source="/mnt/disk1")],
    )
    inventory = dataclasses.replace(
        inventory, containers=[moved if c is web else c for c in inventory.containers]
    )
    plan = _plan_with(inventory, daemon(GIST))
    assert plan["daemon"]["data_root"] == "/mnt/disk1/docker"
    assert any(
        p.startswith("bind mount /mnt/disk1 of web holds Docker's data root /mnt/disk1/docker")
        for p in plan["problems"]
    )
    assert "  /etc/docker/daemon.json: data-root /mnt/disk1/docker (Docker's volumes)" in (
        describe(plan, "h")
    )


def test_daemon_json_cidr_and_unreadable_file():
    cidr = _plan_with(_derived({}), daemon("DockerDaemonConfig.mirror-and-cidr.COMPOSED.txt"))
    assert cidr["problems"] == []
    assert cidr["daemon"]["not_carried"] == [
        "insecure-registries 172.30.0.0/16: a CIDR range has no registries.conf form (name each "
        "registry in podman_registries)"
    ]
    broken = _plan_with(_derived({}), daemon("DockerDaemonConfig.truncated.DERIVED.txt"))
    assert broken["problems"] == [
        "/etc/docker/daemon.json is not a JSON object: its settings cannot be read"
    ]


def _plan_with(inventory, config):
    return build_plan(inventory, BUNDLE, service_root="/srv/containers/apps", daemon=config)


def test_daemon_json_registry_urls_lose_their_scheme():
    config = daemon("DockerDaemonConfig.moby-registry-options-test.COMPOSED.txt")
    assert _plan_with(_derived({}), config)["daemon"]["registries"] == [
        {"prefix": "docker.io", "mirrors": [{"location": "mirrors.example.com"}]},
        {"prefix": "insecure-registry.example.com", "insecure": True},
    ]


def _stack(**changes):
    compose = DERIVED["compose"]
    cases = json.loads(json.dumps(compose["containers"]))
    for name, labels in changes.items():
        cases[name]["Config"]["Labels"].update(labels)
    return DockerInventory().process(derived_containers(cases, compose["base"]))


def test_a_compose_stack_moves_as_one_unit_in_its_order():
    plan = _plan(_stack())
    assert plan["problems"] == []
    assert plan["compose_projects"] == [
        {
            "name": "stack",
            "containers": ["web", "worker"],
            "working_dir": "/srv/stack",
            "order": "its containers' depends_on labels",
            # The project's own file (its config_files label), kept when it is on the host.
            "files": [
                {"path": "/srv/stack/compose.yaml", "archive": "compose/stack/0-compose.yaml"}
            ],
            "files_not_kept": [],
        }
    ]
    assert (
        "compose-file compose/stack/0-compose.yaml /srv/stack/compose.yaml\n"
        in (bundle_files(plan)["plan.txt"])
    )
    order = [(s["name"], s.get("requires"), s["network"]) for s in services(plan)]
    assert order == [("web", None, "stack_default"), ("worker", ["web"], "stack_default")]
    text = describe(plan, "h")
    assert "\n    starts after web\n" in text
    assert (
        "\n    compose file /srv/stack/compose.yaml -> compose/stack/0-compose.yaml (when on "
        "this host)"
    ) in text
    assert (
        "  compose project stack (/srv/stack): web, worker move as one unit (services; "
        "depends_on as requires)"
    ) in text
    assert "not carried: --label" not in text  # compose's own labels make the project


def test_a_compose_stack_split_or_waiting_on_health_is_refused():
    plan = build_plan(_stack(), BUNDLE, {"worker": "vagrant"})
    assert (
        "compose project stack: its containers would go to different owners (root, vagrant): a "
        "project moves as one unit (name all of its containers in migration_rootless)"
    ) in plan["problems"]
    healthy = _plan(_stack(worker={"com.docker.compose.depends_on": "web:service_healthy:false"}))
    assert healthy["problems"] == [
        "compose project stack: worker depends on web with condition service_healthy, which a "
        "service's requires (the start order) does not wait for"
    ]
    missing = _plan(_stack(worker={"com.docker.compose.depends_on": "db:service_started:true"}))
    assert missing["problems"] == [
        "compose project stack: worker depends on db, which is not a running container of the "
        "project (it would not come back as a service): start it first"
    ]


def test_a_compose_stack_comes_back_dependencies_first():
    reverse = {"com.docker.compose.depends_on": "worker:service_started:false"}
    plan = _plan(_stack(web=reverse, worker={"com.docker.compose.depends_on": ""}))
    assert [(s["name"], s.get("requires")) for s in services(plan)] == [
        ("worker", None),
        ("web", ["worker"]),
    ]


def test_a_bind_mounts_propagation_is_refused():
    c, image = _worker()
    binds = ["workdata:/srv/data", "/srv/static:/static:ro,rshared"]
    c = dataclasses.replace(c, host_config={**c.host_config, "Binds": binds})
    [problem] = docker_settings.problems(c, image)
    assert problem.startswith(
        'container worker: --volume/Binds (["workdata:/srv/data", '
        '"/srv/static:/static:ro,rshared"]) is not carried by this version: the service '
        "carries only volumes (from Mounts; ro kept, mount propagation refused)"
    )
    c = dataclasses.replace(c, host_config={**c.host_config, "Binds": binds[:1] + ["/a:/b:ro"]})
    assert docker_settings.problems(c, image) == []


@pytest.mark.parametrize(
    "mount, carried",
    [
        # A bind whose missing source Docker would create (the service's copy exists).
        (
            {
                "Type": "bind",
                "Source": "/srv/a",
                "Target": "/a",
                "BindOptions": {"CreateMountpoint": True},
            },
            True,
        ),
        ({"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {}}, True),
        (
            {
                "Type": "bind",
                "Source": "/srv/a",
                "Target": "/a",
                "BindOptions": {"Propagation": "rshared"},
            },
            False,
        ),
        (
            {"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {"NoCopy": True}},
            False,
        ),
        (
            {"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {"Subpath": "x"}},
            False,
        ),
    ],
)
def test_mount_options_carried_or_refused(mount, carried):
    c, image = _worker()
    c = dataclasses.replace(c, host_config={**c.host_config, "Mounts": [mount]})
    assert (docker_settings.problems(c, image) == []) is carried


def test_a_gpu_container_is_carried_into_the_rendered_units():
    """Issue 13's proof without a GPU: --gpus all, --device /dev/fuse and a healthcheck, carried
    into the plan, then into both unit renderings (the plain one parsed back to podman's
    argv)."""
    case = DERIVED["cases"]
    changes = {
        "HostConfig": {**case["gpus-all"]["HostConfig"], **case["device-fuse"]["HostConfig"]},
        "Config": case["healthcheck"]["Config"],
    }
    plan = build_plan(_derived(changes), BUNDLE, cdi_devices=CDI)
    assert plan["problems"] == []
    [entry] = [s for s in services(plan) if s["name"] == "worker"]
    svc = Service.model_validate(entry)
    plain = _parse_unit(
        render_unit(svc, "plain", "/srv/containers/apps/worker", False, podman=PODMAN["plain"])
    )
    argv = _systemd_words(" ".join(v.removesuffix("\\") for v in plain["Service"]["ExecStart"]))
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "--device"]
    assert devices == ["/dev/fuse", "nvidia.com/gpu=all"]
    health = [argv[i + 1] for i, a in enumerate(argv) if a == "--health-cmd"]
    assert health == ["wget -q -O /dev/null http://localhost/ || exit 1"]
    quadlet = _parse_unit(
        render_unit(svc, "quadlet", "/srv/containers/apps/worker", False, podman=PODMAN["quadlet"])
    )
    assert quadlet["Container"]["AddDevice"] == ["/dev/fuse", "nvidia.com/gpu=all"]
    assert quadlet["Container"]["HealthInterval"] == ["10s"]


def test_the_rollback_re_creates_carried_settings_under_docker():
    case = DERIVED["cases"]
    gpus = {"Count": 0, "DeviceIDs": ["0", UUID], "Capabilities": [["compute", "utility", "gpu"]]}
    changes = {
        "HostConfig": {**case["device-fuse"]["HostConfig"], "DeviceRequests": [gpus]},
        "Config": case["healthcheck"]["Config"],
    }
    script = render_docker_restore(build_plan(_derived(changes), BUNDLE, cdi_devices=[]))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    [line] = [x for x in script.splitlines() if "docker create --name worker" in x]
    argv = shlex.split(line.split("|| ", 1)[1])
    flags = argv[argv.index("--device") : argv.index("10.0.2.2:58851/library/busybox:latest")]
    assert flags == [
        "--device",
        "/dev/fuse:/dev/fuse:rwm",
        "--gpus",
        f'"device=0,{UUID}","capabilities=compute,utility"',
        "--health-cmd",
        "wget -q -O /dev/null http://localhost/ || exit 1",
        "--health-interval",
        "10s",
    ]


def test_a_real_tuned_container_is_carried_whole():
    # tests/realhost/test_migration.py's `tuned`, as Docker 20.10 on Debian 12 inspected it
    # (DockerInventory.migration-tuned.txt): every flag it was created with becomes a field.
    capture = (GUEST / "DockerInventory.migration-tuned.txt").read_text().splitlines()
    plan = _plan(DockerInventory().process(capture))
    assert plan["problems"] == []
    [tuned] = [s for s in services(plan) if s["name"] == "tuned"]
    assert {k: v for k, v in tuned.items() if k not in ("image", "command")} == {
        "name": "tuned",
        "env": {},
        "ports": [],
        "volumes": [],
        "restart": "no",
        "hostname": "tuned-host",
        "container_user": "1000",
        "container_group": "1000",
        "working_dir": "/tmp",
        "labels": {"org.example.team": "infra"},
        "stop_timeout": 5,
        "cap_add": ["NET_ADMIN"],
        "read_only": True,
        "tmpfs": [{"target": "/scratch", "size": "8m"}],
        "shm_size": "96m",
        "sysctls": {"net.core.somaxconn": "512"},
        "memory": "128m",
        "cpus": 0.5,
        "pids_limit": 200,
        "ulimits": {"nofile": "1024:2048"},
    }
    Service.model_validate(tuned)  # and the services model takes it as it is
