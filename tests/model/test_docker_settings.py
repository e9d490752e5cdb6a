"""Every setting of a Docker container decided (model/docker_settings.py), on real captured
``docker inspect`` output: a field with no decision fails; each of issue 13's twelve settings
is carried or refused by name."""

import dataclasses
import json
import shlex
import subprocess
from pathlib import Path

import pytest

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
from model.host_data import Registries, Service
from model.migration import build_plan, describe, render_docker_restore, services
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


# Issue 13's twelve settings: refused (the message's start) or carried (the service's fields).
REFUSED_AS = {
    "gpus-all": "--gpus/DeviceRequests (all GPUs)",
    "cap-add": '--cap-add/CapAdd (["CAP_NET_ADMIN"])',
    "privileged": "--privileged/Privileged (true)",
    "memory-2g": "--memory/Memory (2147483648 bytes, 2 GiB)",
    "cpus-1.5": "--cpus/NanoCpus (1.5 CPUs)",
    "shm-8g": "--shm-size/ShmSize (8589934592 bytes, 8 GiB)",
    "ipc-host": '--ipc/IpcMode ("host")',
    "network-host": '--network/NetworkMode ("host")',
    "user": '--user/User ("1000:1000")',
    "workdir": '--workdir/WorkingDir ("/srv/app")',
}
CARRIED_AS = {
    "device-fuse": {"devices": ["/dev/fuse"]},
    "healthcheck": {
        "healthcheck": {
            "command": "wget -q -O /dev/null http://localhost/ || exit 1",
            "interval": "10s",
        }
    },
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


@pytest.mark.parametrize("case", sorted(CARRIED_AS))
def test_carried_into_the_service(case):
    plan = _plan(_derived(DERIVED["cases"][case]))
    assert plan["problems"] == []
    [worker] = [c["service"] for c in plan["containers"] if c["name"] == "worker"]
    for key, value in CARRIED_AS[case].items():
        assert worker[key] == value
    Service.model_validate(worker)
    assert PRINTED_AS[case] in describe(plan, "h")


PRINTED_AS = {
    "device-fuse": "\n    devices /dev/fuse\n",
    "healthcheck": "\n    healthcheck every 10s: wget -q -O /dev/null http://localhost/ || exit 1",
}


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
        ({"Test": ["CMD-SHELL", "true"], "Timeout": 5 * 10**9}, "has no --health-timeout"),
        ({"Test": ["CMD-SHELL", "true"], "Retries": 5}, "has no --health-retries"),
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
    assert [p.split(" (")[0] for p in docker_settings.problems(c, image)] == [
        "container worker: --network/NetworkMode",
        "container worker: --memory/Memory",
    ]


def test_labels_are_listed_not_refused():
    inventory = DockerInventory().process(
        (GUEST / "DockerInventory.two-containers.txt").read_text().splitlines()
    )
    text = describe(_plan(inventory), "h")
    assert (
        '    not carried: --label {"com.example.role": "frontend"} (read by tools through '
        "Docker's API, not by the container; kept in the bundle)"
    ) in text


def test_a_current_dockers_container_is_refused_only_for_its_own_settings():
    """The current capture, with an image that gives it what a container inherits (its
    entrypoint, command, env, labels, working directory, volumes): only its stop timeout (which
    no image sets; compose 2.40.3 sent 1 s) is its own."""
    [data] = json.loads(CURRENT.read_text())
    c = _container(data)
    inherited = ("Entrypoint", "Cmd", "Env", "Labels", "WorkingDir", "Volumes")
    image = DockerImage(
        id=c.image_id, repo_tags=[], size_bytes=0, config={k: c.config[k] for k in inherited}
    )
    assert docker_settings.problems(c, image) == [
        f"container {c.name}: --stop-timeout/StopTimeout (1) is not carried by this version: "
        "the migration does not map it to podman_services yet; re-create the container "
        "without it first, or keep it on Docker"
    ]


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
        {"name": "stack", "containers": ["web", "worker"], "working_dir": "/srv/stack"}
    ]
    order = [(s["name"], s.get("requires"), s["network"]) for s in services(plan)]
    assert order == [("web", None, "stack_default"), ("worker", ["web"], "stack_default")]
    text = describe(plan, "h")
    assert "\n    starts after web\n" in text
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
        "10000ms",
    ]
