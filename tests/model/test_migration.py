"""The migration plan (model/migration.py) from real Docker output: what is carried over, what
stops the migration, and the bundle files rendered from it."""

import dataclasses
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from pyinfra.api import OperationError

from facts.docker import DataDir, DockerInventory, DockerMount
from facts.storage import PathMount
from model.host_data import Service
from model.migration import (
    FILES,
    build_plan,
    bundle_files,
    compose_files_to_read,
    describe,
    id_problems,
    mapped_ids,
    overlap_problems,
    podman_name,
    port_problems,
    qualify,
    render_compose,
    render_docker_restore,
    render_plan_text,
    services,
    shown,
    space_check,
    space_needs,
)
from operations import migration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "guest-debian12"
BUNDLE = "/var/lib/podman-standard/docker-migration"


def _inventory(name: str = "DockerInventory.two-containers.txt"):
    return DockerInventory().process((FIXTURES / name).read_text().splitlines())


def _without_bind_mounts(inventory):
    """The captured inventory with web's bind mount taken out (what a user does first)."""
    containers = [
        dataclasses.replace(c, mounts=[m for m in c.mounts if m.type == "volume"])
        for c in inventory.containers
    ]
    return dataclasses.replace(inventory, containers=containers)


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("local/busybox:1.35", "docker.io/local/busybox:1.35"),
        ("docker.io/library/redis:7", "docker.io/library/redis:7"),
        ("10.0.2.2:5000/library/nginx:alpine", "10.0.2.2:5000/library/nginx:alpine"),
        ("localhost/app", "localhost/app:latest"),
        ("quay.io/org/img@sha256:" + "a" * 64, "quay.io/org/img@sha256:" + "a" * 64),
        ("registry:5000/app", "registry:5000/app:latest"),
    ],
)
def test_qualify(reference, expected):
    assert qualify(reference) == expected


@pytest.mark.parametrize(
    "reference, local_only, expected",
    [
        # As podman 4.3 names a loaded docker-archive tag (seen on the Debian 12 guest).
        ("local/web:1", True, "localhost/local/web:1"),
        ("myapp", True, "localhost/myapp:latest"),
        ("10.0.2.2:5000/app:1", True, "10.0.2.2:5000/app:1"),
        ("busybox:latest", False, "docker.io/library/busybox:latest"),
    ],
)
def test_podman_name(reference, local_only, expected):
    assert podman_name(reference, local_only) == expected


def test_bind_mount_of_a_directory_becomes_a_copy_in_the_service_directory():
    plan = build_plan(_inventory(), BUNDLE, service_root="/srv/containers/apps")
    assert plan["problems"] == []
    [web] = services(plan)
    assert web["volumes"] == [
        {"volume": "appdata", "target": "/data", "read_only": False},
        {"source": "host/srv/web", "target": "/www", "read_only": True},
    ]
    Service.model_validate(web)
    assert plan["binds"] == [
        {
            "container": "web",
            "user": None,
            "host_path": "/srv/web",
            "source": "host/srv/web",
            "service_dir": "/srv/containers/apps/web",
            "archive": "binds/web-0.tar",
            "content_digest": "binds/web-0.content-sha256",
            "size_bytes": None,
        }
    ]
    assert (
        "bind web root binds/web-0.tar /srv/web /srv/containers/apps/web host/srv/web\n"
        in render_plan_text(plan)
    )
    assert "then copied to /srv/containers/apps/web/host/srv/web (the original stays)" in (
        describe(plan, "h")
    )
    # Docker's own definition keeps the bind mount (for the rollback).
    assert "/srv/web:/www:ro" in render_docker_restore(plan)


def _with_mounts(inventory, **mounts):
    """``inventory`` with each named container's mounts replaced by (type, source, target)."""
    containers = []
    for c in inventory.containers:
        if c.name in mounts:
            c = dataclasses.replace(
                c,
                mounts=[
                    DockerMount(type=t, source=src, destination=dst, name=None, rw=True)
                    for t, src, dst in mounts[c.name]
                ],
            )
        containers.append(c)
    return dataclasses.replace(inventory, containers=containers)


@pytest.mark.parametrize(
    "mounts, problem",
    [
        ([("bind", "/srv/my web", "/www")], "bind mount /srv/my web -> /www is neither"),
        ([("bind", "/", "/host")], "bind mount / -> /host is neither"),
        ([("tmpfs", "", "/run/x")], "tmpfs mount  -> /run/x is neither"),
    ],
)
def test_mount_that_cannot_be_copied_is_a_problem(mounts, problem):
    plan = build_plan(_with_mounts(_two_services(), web=mounts), BUNDLE)
    assert [p for p in plan["problems"] if problem in p] != []


def test_bind_mounts_sharing_data_are_a_problem():
    inventory = _with_mounts(
        _two_services(),
        web=[("bind", "/srv/shared", "/a")],
        worker=[("bind", "/srv/shared/sub", "/b")],
    )
    plan = build_plan(inventory, BUNDLE)
    assert plan["problems"] == [
        "bind mounts /srv/shared (web) and /srv/shared/sub (worker) share data: each service "
        "gets its own copy, and the copies would drift apart (move the data into a named "
        "volume first)"
    ]
    # Siblings with a common prefix are not nested.
    inventory = _with_mounts(
        _two_services(), web=[("bind", "/srv/a", "/a")], worker=[("bind", "/srv/ab", "/b")]
    )
    assert build_plan(inventory, BUNDLE)["problems"] == []


def test_plan_of_the_captured_host():
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    assert plan["problems"] == []
    assert [(c["name"], c["state"], c["recreate"]) for c in plan["containers"]] == [
        ("oneshot", "created", False),  # never started: kept in the bundle only
        ("web", "running", True),
    ]
    assert plan["volumes"] == [
        {
            "name": "appdata",
            "labels": {},
            "docker_mountpoint": "/var/lib/docker/volumes/appdata/_data",
            "size_bytes": None,  # captured before the fact measured sizes
            "archive": "volumes/appdata.tar",
            "content_digest": "volumes/appdata.content-sha256",
            "user": None,  # root's podman
        }
    ]
    # Imported (no RepoDigests): only the bundle's archive can bring it back.
    [image] = plan["images"]
    assert image["local_only"] and image["archive"] == "images/f134fdc9b405.tar"
    assert image["refs"] == ["localhost/local/busybox:1.35", "localhost/local/busybox:latest"]
    assert image["owners"] == ["root"]


def test_running_container_becomes_a_valid_service():
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    [web] = services(plan)
    assert web == {
        "name": "web",
        "image": "localhost/local/busybox:1.35",  # the tag it was created with
        "command": ["httpd", "-f", "-p", "80", "-h", "/www"],  # differs from the image's sh
        "env": {},  # carried in its 0600 secrets file, not in the 0644 unit
        "ports": [
            {"host": 8080, "container": 80, "protocol": "tcp"},
            {"host": 8443, "container": 443, "protocol": "tcp", "host_ip": "127.0.0.1"},
        ],
        "volumes": [{"volume": "appdata", "target": "/data", "read_only": False}],
        "restart": "always",  # unless-stopped
        "network": "appnet",
        "labels": {"com.example.role": "frontend"},  # its own (docker run --label)
    }
    Service.model_validate(web)
    [entry] = [c for c in plan["containers"] if c["name"] == "web"]
    assert entry["secret_env"] == {"GREETING": "hello", "MULTI": "a b"}


def test_what_a_service_cannot_express_is_a_problem():
    inventory = _without_bind_mounts(_inventory())
    web = next(c for c in inventory.containers if c.name == "web")
    odd = dataclasses.replace(
        web,
        entrypoint=["/bin/tini", "--"],
        config={**web.config, "Entrypoint": ["/bin/tini", "--"]},
        ports=[dataclasses.replace(web.ports[0], host_port="")],
        networks=["appnet", "other"],
        restart_policy="sometimes",
    )
    inventory = dataclasses.replace(inventory, containers=[odd])
    problems = build_plan(inventory, BUNDLE)["problems"]
    assert [p.split(":")[0] for p in problems] == ["container web"] * 4
    joined = "\n".join(problems)
    for text in ("entrypoint", "random host port", "only one user-defined network", "sometimes"):
        assert text in joined


def test_image_env_is_not_repeated_in_the_service():
    inventory = _without_bind_mounts(_inventory())
    image = dataclasses.replace(inventory.images[0], env=["GREETING=hello", "PATH=/bin"])
    inventory = dataclasses.replace(inventory, images=[image])
    plan = build_plan(inventory, BUNDLE)
    assert [c["secret_env"] for c in plan["containers"] if c["recreate"]] == [{"MULTI": "a b"}]


def test_container_on_an_untagged_image_is_a_problem():
    inventory = _inventory()
    image = dataclasses.replace(inventory.images[0], repo_tags=[])
    plan = build_plan(dataclasses.replace(inventory, images=[image]), BUNDLE)
    assert "container oneshot: its image local/busybox:latest has no tag" in plan["problems"][0]
    assert plan["images"] == []


def test_compose_file_keeps_everything_docker_knew():
    text = render_compose(build_plan(_inventory(), BUNDLE))
    assert text.startswith("# managed by podman-standard (deploys/migrate_from_docker.py)")
    compose = yaml.safe_load(text)
    assert compose["services"]["web"] == {
        "image": "local/busybox:1.35",  # Docker's tag, as Docker ran it (not podman's name)
        "container_name": "web",
        "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
        "environment": ["GREETING=hello", "MULTI=a b"],
        "labels": {"com.example.role": "frontend"},
        "ports": ["8080:80/tcp", "127.0.0.1:8443:443/tcp"],
        "volumes": ["appdata:/data", "/srv/web:/www:ro"],
        "restart": "unless-stopped",
        "networks": ["appnet"],
    }
    assert compose["services"]["oneshot"]["restart"] == "on-failure:3"
    assert compose["volumes"] == {"appdata": {"external": True, "name": "appdata"}}
    assert compose["networks"] == {"appnet": {"external": True, "name": "appnet"}}


def test_plan_text_is_the_script_work_list():
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    assert render_plan_text(plan) == (
        "volume appdata root\n"
        "image-save images/f134fdc9b405.tar local/busybox:1.35 local/busybox:latest\n"
        "image-archive root images/f134fdc9b405.tar local/busybox:1.35 local/busybox:latest\n"
        "image-tag root sha256:f134fdc9b405e1de255f7ca826cdc14a674df95bbce33679decfcd310e452bc5 "
        "localhost/local/busybox:1.35 localhost/local/busybox:latest\n"
        "service web root\n"
        "running web\n"
    )


def test_docker_restore_script_quotes_every_value():
    inventory = _inventory()
    web = next(c for c in inventory.containers if c.name == "web")
    hostile = dataclasses.replace(web, env=["X=$(touch /tmp/pwned); `id` 'q' \"d\""])
    inventory = dataclasses.replace(inventory, containers=[hostile])
    script = render_docker_restore(build_plan(inventory, BUNDLE))
    line = script.splitlines()[-1]
    assert line.startswith("docker container inspect web >/dev/null 2>&1 || docker create")
    words = shlex.split(line.split("|| ", 1)[1])
    assert words[words.index("--env") + 1] == "X=$(touch /tmp/pwned); `id` 'q' \"d\""
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    "created_with, expected",
    [
        ("local/busybox:1.35", "local/busybox:1.35"),  # as captured
        ("docker.io/local/busybox:latest", "local/busybox:latest"),  # Docker's own spelling
        ("local/busybox:gone", "local/busybox:1.35"),  # retagged since: the image's first tag
    ],
)
def test_docker_restore_script_names_images_by_dockers_tags(created_with, expected):
    inventory = _inventory()
    web = next(c for c in inventory.containers if c.name == "web")
    inventory = dataclasses.replace(
        inventory, containers=[dataclasses.replace(web, image=created_with)]
    )
    plan = build_plan(inventory, BUNDLE)
    # podman's name for it is localhost/local/...: Docker would try to pull that from a
    # registry named "localhost"; the saved archive restores Docker's tags.
    assert services(plan)[0]["image"].startswith("localhost/local/busybox:")
    words = shlex.split(render_docker_restore(plan).splitlines()[-1].split("|| ", 1)[1])
    assert words[words.index("appnet") + 1] == expected
    assert yaml.safe_load(render_compose(plan))["services"]["web"]["image"] == expected
    assert "image-save images/f134fdc9b405.tar local/busybox:1.35 local/busybox:latest\n" in (
        render_plan_text(plan)
    )


def test_bundle_files_and_manifest():
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    files = bundle_files(plan)
    assert set(files) == {
        FILES[k] for k in ("manifest", "plan", "compose", "services", "docker_restore")
    }
    assert json.loads(files["manifest.json"]) == plan
    # To paste into group_data: the env as secrets from the controller's environment.
    [web] = services(plan)
    assert json.loads(files["podman-services.json"]) == [
        {**web, "secrets": {"GREETING": {"env": "GREETING"}, "MULTI": {"env": "MULTI"}}}
    ]
    for entry in json.loads(files["podman-services.json"]):
        Service.model_validate(entry)


# --- rootless target, the host's limits ---------------------------------------------------

DEVHOST = FIXTURES.parent / "devhost-debian12"


def _two_services(worker_volume: str = "appdata"):
    """The migration test's Docker host (captured); ``worker_volume`` other than appdata gives
    worker a volume of its own (what the real-host test's host has since)."""
    inventory = _inventory("DockerInventory.migration-two-services.txt")
    if worker_volume == "appdata":
        return inventory
    containers = []
    for c in inventory.containers:
        if c.name == "worker":
            c = dataclasses.replace(
                c, mounts=[dataclasses.replace(c.mounts[0], name=worker_volume)]
            )
        containers.append(c)
    [appdata] = inventory.volumes
    own = dataclasses.replace(
        appdata,
        name=worker_volume,
        mountpoint=f"/var/lib/docker/volumes/{worker_volume}/_data",
        size_bytes=4096,
    )
    return dataclasses.replace(inventory, containers=containers, volumes=[appdata, own])


def test_rootless_worker_becomes_a_user_service_with_its_volume_and_image():
    plan = build_plan(_two_services("workdata"), BUNDLE, {"worker": "vagrant"})
    assert plan["problems"] == []
    by_name = {c["name"]: c for c in plan["containers"]}
    assert (by_name["web"]["user"], by_name["worker"]["user"]) == (None, "vagrant")
    worker = next(s for s in services(plan) if s["name"] == "worker")
    assert worker["user"] == "vagrant" and "user" not in by_name["web"]["service"]
    Service.model_validate(worker)
    assert {v["name"]: v["user"] for v in plan["volumes"]} == {
        "appdata": None,
        "workdata": "vagrant",
    }
    owners = {i["docker_tags"][0].split("/")[-1]: i["owners"] for i in plan["images"]}
    # busybox is worker's: only vagrant's podman gets it; nginx (no container) stays root's.
    assert owners == {"web:1": ["root"], "nginx:alpine": ["root"], "busybox:latest": ["vagrant"]}
    text = render_plan_text(plan)
    assert "volume workdata vagrant\n" in text and "service worker vagrant\n" in text
    assert "image-stream vagrant 10.0.2.2:49073/library/busybox:latest\n" in text
    assert "image-tag vagrant sha256:61e31013a508" in text
    assert "(rootless, vagrant's systemd)" in describe(plan, "h")


def test_every_container_rootless_with_star():
    plan = build_plan(_two_services(), BUNDLE, {"*": "vagrant"})
    assert plan["problems"] == []
    assert [c["user"] for c in plan["containers"]] == ["vagrant", "vagrant"]
    assert [v["user"] for v in plan["volumes"]] == ["vagrant"]


def test_volume_shared_by_owners_is_a_problem():
    plan = build_plan(_two_services(), BUNDLE, {"worker": "vagrant"})
    assert plan["problems"] == [
        "volume appdata is used by containers of different owners: web (root); worker "
        "(vagrant); a volume moves into one owner's podman (move those containers together)"
    ]


def test_rootless_names_a_container_docker_does_not_run():
    inventory = _without_bind_mounts(_inventory())
    plan = build_plan(inventory, BUNDLE, {"oneshot": "vagrant", "ghost": "vagrant"})
    assert plan["problems"] == [
        "migration_rootless names container ghost, which Docker does not have",
        "migration_rootless names container oneshot, which is not running: it is only "
        "exported, not re-created under anyone's podman",
    ]


@pytest.mark.parametrize(
    "ranges, count, expected",
    [
        ([], 65536, 65536),  # none yet: operations.rootless.user adds one
        ([[100000, 65536]], 65536, 65536),
        ([[100000, 65536], [300000, 1000]], 65536, 66536),  # podman maps them all, in order
        ([[100000, 1000]], 65536, 66536),  # too small: a second range is added
    ],
)
def test_mapped_ids(ranges, count, expected):
    assert mapped_ids(ranges, count) == expected


def test_owner_beyond_the_mapping_is_a_problem_naming_volume_and_id():
    plan = build_plan(_two_services("workdata"), BUNDLE, {"worker": "vagrant"})
    found = DataDir().process(
        (DEVHOST / "DataDir.owners-beyond-65536.txt").read_text().splitlines()
    )
    owners = {"workdata": (found.uids, found.gids)}
    assert id_problems(plan, {"vagrant": (65536, 65536)}, owners) == [
        "volume workdata: uid 70000 cannot be mapped into vagrant's rootless podman, which maps "
        "uids 0-65536 (0 is vagrant, 1-65536 its subordinate ids): change those owners, or "
        "give vagrant a larger subid_count"
    ]
    # A larger range holds it; gid 100 and the rest always fit.
    assert id_problems(plan, {"vagrant": (70000, 65536)}, owners) == []
    # Owners never read are a problem too (the volume's directory was missing).
    assert id_problems(plan, {"vagrant": (65536, 65536)}, {}) == [
        "volume workdata: the owners of its files could not be read"
    ]


def test_rootless_port_below_the_unprivileged_start_is_a_problem():
    plan = build_plan(_two_services(), BUNDLE, {"*": "vagrant"})
    assert port_problems(plan, 1024) == []  # web publishes 8080
    [problem] = port_problems(plan, 8081)
    assert problem.startswith(
        "container web: as vagrant's rootless service it cannot publish host port 8080 (the "
        "host's net.ipv4.ip_unprivileged_port_start is 8081)"
    )
    rootful = build_plan(_two_services(), BUNDLE)
    assert port_problems(rootful, 8081) == []


def _mount(fixture: str) -> dict:
    fact = PathMount().process((DEVHOST / fixture).read_text().splitlines())
    return {"source": fact.source, "target": fact.target, "avail": fact.avail_bytes}


def test_space_needs_per_owner():
    plan = build_plan(_two_services("workdata"), BUNDLE, {"worker": "vagrant"})
    needs = space_needs(
        plan, {"root": "/var/lib/containers/storage", "vagrant": "/home/vagrant/.local/x"}
    )
    assert needs == [
        # Both volumes' tarballs and web's image (the only local-only one).
        ("the bundle", BUNDLE, 50343971 + 4096 + 1985642),
        ("root's podman store", "/var/lib/containers/storage", 50343971 + 1985642 + 1985629),
        ("vagrant's podman store", "/home/vagrant/.local/x", 4096 + 1985570),
    ]


def test_space_summed_per_filesystem_with_a_margin():
    plan = build_plan(_two_services(), BUNDLE)
    needs = space_needs(plan, {"root": "/var/lib/containers/storage"})
    root = _mount("PathMount.var-lib.txt")
    rows, problems = space_check(needs, {BUNDLE: root, "/var/lib/containers/storage": root})
    assert problems == []
    [row] = rows
    data = 2 * 50343971 + 2 * 1985642 + 1985570 + 1985629
    assert row["data_bytes"] == data
    assert row["needed_bytes"] == data + 64 * 2**20  # 10 % is less than the 64 MiB floor
    assert row["free_bytes"] == 83989827584
    plan["space"] = rows
    assert "space on / (/dev/vda): needs" in describe(plan, "h")


def test_too_small_filesystem_is_a_problem_with_the_figures():
    plan = build_plan(_two_services(), BUNDLE)
    needs = space_needs(plan, {"root": "/var/lib/containers/storage"})
    tiny = _mount("PathMount.tiny-tmpfs.txt")
    root = _mount("PathMount.var-lib.txt")
    _, problems = space_check(needs, {BUNDLE: tiny, "/var/lib/containers/storage": root})
    data = 50343971 + 1985642
    assert problems == [
        f"not enough free space on /tmp/cap/tiny (tmpfs) for the bundle {BUNDLE}: needs "
        f"{data + 64 * 2**20} bytes ({(data + 64 * 2**20) / 2**20:.1f} MiB) ({data} bytes "
        f"({data / 2**20:.1f} MiB) + 67108864 bytes (64.0 MiB) margin), 13774848 bytes "
        "(13.1 MiB) free"
    ]
    _, problems = space_check(needs, {BUNDLE: root})
    assert problems == [
        "root's podman store (/var/lib/containers/storage): the free space of its filesystem "
        "could not be read"
    ]


# --- host-controlled text printed -------------------------------------------------------

ESC_CLEAR = "\x1b[2J\x1b[H"  # clears the terminal: would hide what came before


def test_shown_escapes_control_and_format_characters():
    assert shown("plain é text") == "plain é text"
    assert shown(f"a{ESC_CLEAR}b\rc\td\u202ee\\f\x9b") == (
        "a\\x1b[2J\\x1b[Hb\\rc\\td\\u202ee\\\\f\\x9b"
    )


def test_plan_and_problems_show_dockers_control_characters_escaped():
    inventory = _with_mounts(_two_services(), web=[("tmpfs", "", f"/run/{ESC_CLEAR}x\rEVIL")])
    web = next(c for c in inventory.containers if c.name == "web")
    hostile = dataclasses.replace(
        web, cmd=["sh", "-c", f"echo {ESC_CLEAR}"], env=["A\x1bB=1"], networks=["n\rm"]
    )
    inventory = dataclasses.replace(
        inventory, containers=[hostile, *(c for c in inventory.containers if c.name != "web")]
    )
    plan = build_plan(inventory, BUNDLE)
    text = describe(plan, "h")
    assert not [c for c in text if not c.isprintable() and c != "\n"]
    lines = text.splitlines()
    assert "    command sh -c 'echo \\x1b[2J\\x1b[H', env A\\x1bB" in lines
    assert "    tmpfs  -> /run/\\x1b[2J\\x1b[Hx\\rEVIL" in lines
    assert (
        "  CANNOT MIGRATE: container web: tmpfs mount  -> /run/\\x1b[2J\\x1b[Hx\\rEVIL is neither "
        "a named volume nor a bind mount of a directory with a plain path (letters, digits, "
        "'_', '.', '-'): move the data into a named volume first"
    ) in lines
    # The export refuses such a plan, with the same escaping.
    with pytest.raises(OperationError) as info:
        list(migration.export._inner(bundle=BUNDLE, plan=plan))
    assert "\x1b" not in str(info.value) and "\\x1b[2J" in str(info.value)


# --- the audit: odd but real Docker states ------------------------------------------------


def test_host_port_range_and_mounted_volume_are_refused_by_name():
    # Derived capture: web also has `-p 8081-8090:81`, workdata was created with
    # `--opt type=none --opt o=bind --opt device=/srv/workdata` (as Docker prints them).
    plan = build_plan(
        _inventory("DockerInventory.migration-port-range-bind-volume.DERIVED.txt"), BUNDLE
    )
    assert plan["problems"] == [
        "container web: publishes 81/tcp on host port range 8081-8090 (Docker picks one of "
        "them at each start); a podman_services port is one host port: publish it on a fixed "
        "one first",
        "volume workdata: Docker mounts it from its options (device=/srv/workdata, o=bind, "
        "type=none) only while a container uses it, so with its containers stopped the export "
        "would archive an empty directory: move its data into a plain named volume, or "
        "bind-mount the source directory itself, first",
    ]


def test_volume_with_a_quota_option_is_refused_by_name():
    inventory = _two_services()
    [appdata] = inventory.volumes
    inventory = dataclasses.replace(
        inventory, volumes=[dataclasses.replace(appdata, options={"size": "10G"})]
    )
    assert build_plan(inventory, BUNDLE)["problems"] == [
        "volume appdata: its options (size=10G) are not carried over (a podman volume is "
        "created without them): remove them first"
    ]


def test_paused_container_is_carried_as_running():
    # Derived capture: `docker pause worker` (State.Status "paused", Paused true).
    inventory = _inventory("DockerInventory.migration-worker-paused.DERIVED.txt")
    assert [c.state for c in inventory.containers if c.name == "worker"] == ["paused"]
    plan = build_plan(inventory, BUNDLE, {"worker": "vagrant"})
    assert plan["problems"] == []
    assert [s["name"] for s in services(plan)] == ["web", "worker"]
    # `docker ps` lists it: the export's check of what runs expects it.
    assert "running web\nrunning worker\n" in render_plan_text(plan)
    assert "  container worker [paused] -> re-create as a podman service (rootless" in (
        describe(plan, "h")
    )


# --- bind mounts overlapping what the migration writes or an engine keeps ------------------


@pytest.mark.parametrize(
    "host_path, problems",
    [
        # -v /srv:/srv with the default service root: the copy would land inside its source.
        ("/srv", ["holds the service root /srv/containers/apps"]),
        ("/srv/containers/apps/other", ["is inside the service root /srv/containers/apps"]),
        ("/srv/containers/apps", ["is the service root /srv/containers/apps"]),
        (
            "/var/lib",
            [
                "holds the bundle /var/lib/podman-standard/docker-migration",
                "holds Docker's data root /var/lib/docker",
            ],
        ),
        ("/var/lib/podman-standard/docker-migration/x", ["is inside the bundle"]),
        ("/var/lib/docker/volumes/appdata/_data", ["is inside Docker's data root /var/lib/docker"]),
        ("/srv/containersX", []),  # a common prefix is not an overlap
    ],
)
def test_bind_mount_overlapping_the_migrations_paths_is_refused(host_path, problems):
    inventory = _with_mounts(_two_services(), web=[("bind", host_path, "/www")])
    plan = build_plan(inventory, BUNDLE, service_root="/srv/containers/apps")
    assert len(plan["problems"]) == len(problems)
    for problem, found in zip(problems, plan["problems"], strict=True):
        assert found.startswith(f"bind mount {host_path} of web {problem}")
        assert found.endswith(
            "its copy or the rollback's restore of it would overwrite or delete the other; "
            "bind-mount a directory apart from the migration's and the engines' data, or move "
            "the data into a named volume first"
        )


def test_bind_mount_holding_a_podman_store_is_refused():
    inventory = _with_mounts(_two_services(), web=[("bind", "/var/lib/containers", "/c")])
    plan = build_plan(inventory, BUNDLE)
    assert plan["problems"] == []
    stores = [("root's podman store", "/var/lib/containers/storage")]
    assert overlap_problems(plan, stores) == [
        "bind mount /var/lib/containers of web holds root's podman store "
        "/var/lib/containers/storage: its copy or the rollback's restore of it would "
        "overwrite or delete the other; bind-mount a directory apart from the migration's and "
        "the engines' data, or move the data into a named volume first"
    ]


def test_docker_env_that_a_secrets_file_cannot_hold_is_refused_by_name():
    inventory = _without_bind_mounts(_inventory())
    web = next(c for c in inventory.containers if c.name == "web")
    hostile = dataclasses.replace(web, env=["DB_PASSWORD=pa\rExecStartPre=/bin/sh", "a-b=1"])
    problems = build_plan(dataclasses.replace(inventory, containers=[hostile]), BUNDLE)["problems"]
    assert problems == [
        "container web: env.DB_PASSWORD: Value error, must not contain control characters ('\\r')",
        "container web: env.a-b.[key]: Value error, 'a-b' is not a valid environment variable name",
    ]
    assert "ExecStartPre" not in "".join(problems)  # the value itself is never printed


# --- a stack docker-compose 1.x made (Debian 12's docker-compose), on its real capture ------

COMPOSE_V1 = "DockerInventory.migration-compose-v1.txt"
COMPOSE_V1_FILE = "/srv/stack/docker-compose.yml"


def _v1_plan(files=None):
    inventory = _inventory(COMPOSE_V1)
    if files is None:
        files = {COMPOSE_V1_FILE: (FIXTURES / "compose-v1-stack.docker-compose.yml").read_text()}
    return build_plan(inventory, BUNDLE, service_root="/srv/containers/apps", compose_files=files)


def test_a_compose_v1_stack_takes_its_order_from_its_file():
    inventory = _inventory(COMPOSE_V1)
    # Compose 1.x writes no depends_on label and its config_files relative to the working dir.
    [app] = [c for c in inventory.containers if c.name == "stack_app_1"]
    assert "com.docker.compose.depends_on" not in app.labels
    assert app.labels["com.docker.compose.project.config_files"] == "docker-compose.yml"
    assert compose_files_to_read(inventory) == [COMPOSE_V1_FILE]
    plan = _v1_plan()
    assert plan["problems"] == []
    [project] = plan["compose_projects"]
    assert project["order"] == f"depends_on of {COMPOSE_V1_FILE}"
    # The file is kept in the bundle (its path made absolute).
    assert project["files"] == [
        {"path": COMPOSE_V1_FILE, "archive": "compose/stack/0-docker-compose.yml"}
    ]
    order = [(s["name"], s.get("requires")) for s in services(plan)]
    assert order[-2:] == [("stack_db_1", None), ("stack_app_1", ["stack_db_1"])]
    # Each keeps its service's name on the project's network (Docker's short id dropped):
    # app reaches db as "db".
    by_name = {s["name"]: s for s in services(plan)}
    assert by_name["stack_db_1"]["networks"] == [{"name": "stack_default", "aliases": ["db"]}]
    assert by_name["stack_app_1"]["networks"] == [{"name": "stack_default", "aliases": ["app"]}]
    assert "network" not in by_name["stack_db_1"]
    for entry in by_name.values():
        Service.model_validate(entry)
    text = describe(plan, "h")
    assert f"\n    start order: depends_on of {COMPOSE_V1_FILE}\n" in text
    assert "\n    starts after stack_db_1\n" in text


def test_a_compose_v1_stack_without_its_file_moves_in_any_order():
    plan = _v1_plan({COMPOSE_V1_FILE: None})
    assert plan["problems"] == []
    [project] = plan["compose_projects"]
    assert project["order"] == (
        f"unknown: compose 1.x labels no depends_on and {COMPOSE_V1_FILE} is not on this host "
        "(its services start in any order)"
    )
    assert all(not s.get("requires") for s in services(plan))


@pytest.mark.parametrize(
    "text, problem",
    [
        # The mapping form, with a condition a service's requires does not wait for.
        (
            "services:\n  app:\n    depends_on:\n      db:\n        condition: service_healthy\n",
            "compose project stack: stack_app_1 depends on db with condition service_healthy",
        ),
        # A dependency that is not one of the project's running containers.
        (
            "services:\n  app:\n    depends_on: [cache]\n",
            "compose project stack: stack_app_1 depends on cache, which is not a running "
            "container of the project",
        ),
        ("services: [unclosed\n", f"compose project stack: {COMPOSE_V1_FILE}: not YAML ("),
        ("- a list\n", f"compose project stack: {COMPOSE_V1_FILE}: not a compose file"),
        (
            "services:\n  app:\n    depends_on: db\n",
            f"compose project stack: {COMPOSE_V1_FILE}: service app: depends_on is neither",
        ),
    ],
)
def test_a_compose_v1_file_that_cannot_be_carried_is_refused(text, problem):
    plan = _v1_plan({COMPOSE_V1_FILE: text})
    assert any(p.startswith(problem) for p in plan["problems"]), plan["problems"]


def test_a_compose_v1_file_of_the_old_format_has_its_services_at_the_top():
    plan = _v1_plan({COMPOSE_V1_FILE: "db:\n  image: busybox\napp:\n  depends_on: [db]\n"})
    assert plan["problems"] == []
    assert services(plan)[-1] == {**services(plan)[-1], "requires": ["stack_db_1"]}


def test_network_aliases_go_back_to_docker_in_the_rollback_files():
    plan = _v1_plan()
    restore = render_docker_restore(plan)
    [line] = [x for x in restore.splitlines() if "docker create --name stack_db_1 " in x]
    assert "--network stack_default --network-alias db " in line
    compose = yaml.safe_load(render_compose(plan))
    assert compose["services"]["stack_app_1"]["networks"] == {
        "stack_default": {"aliases": ["app"]}
    }
    # A container on Docker's default network keeps its plain list (none here has aliases).
    assert "networks" not in compose["services"]["fused"]


def test_device_healthcheck_and_host_network_of_the_v1_capture_are_carried():
    by_name = {s["name"]: s for s in services(_v1_plan())}
    assert by_name["fused"]["devices"] == ["/dev/fuse"]
    assert by_name["fused"]["healthcheck"] == {
        "command": "test -c /dev/fuse",
        "interval": "10s",
        "retries": 2,
    }
    assert by_name["hostnet"]["host_network"] is True
    assert by_name["hostnet"]["restart"] == "always"  # unless-stopped


@pytest.mark.parametrize(
    "fixture, rootless",
    [(COMPOSE_V1, {}), ("DockerInventory.migration-tuned.txt", {"worker": "vagrant"})],
)
def test_a_run_resuming_from_the_manifest_renders_the_same_bundle(fixture, rootless):
    """A run that lost its connection is resumed from manifest.json (its keys sorted): the
    files it renders again must be the ones the first export's SHA256SUMS recorded, or the
    rollback would refuse the bundle (seen on a guest: the compose file and the services'
    JSON came out in another key order)."""
    files = {COMPOSE_V1_FILE: (FIXTURES / "compose-v1-stack.docker-compose.yml").read_text()}
    plan = build_plan(_inventory(fixture), BUNDLE, rootless, compose_files=files)
    assert plan["problems"] == []
    first = bundle_files(migration.with_unit_files(plan))
    resumed = json.loads(first[FILES["manifest"]])
    assert bundle_files(migration.with_unit_files(resumed)) == first
    # Still readable: each service's name and image first.
    entries = json.loads(first[FILES["services"]])
    assert all(list(entry)[:2] == ["name", "image"] for entry in entries)
