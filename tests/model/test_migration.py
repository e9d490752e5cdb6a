"""The migration plan (model/migration.py) from real Docker output: what is carried over, what
stops the migration, and the bundle files rendered from it."""

import dataclasses
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from facts.docker import DockerInventory
from model.host_data import Service
from model.migration import (
    FILES,
    build_plan,
    bundle_files,
    describe,
    podman_name,
    qualify,
    render_compose,
    render_docker_restore,
    render_plan_text,
    services,
)

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


def test_bind_mount_stops_the_plan_naming_it():
    plan = build_plan(_inventory(), BUNDLE)
    assert plan["problems"] == [
        "container web: bind mount /srv/web -> /www is not a named volume (only named volumes "
        "are carried over: move the data into one first)"
    ]
    assert "CANNOT MIGRATE: container web: bind mount /srv/web" in describe(plan, "h")


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
        }
    ]
    # Imported (no RepoDigests): only the bundle's archive can bring it back.
    [image] = plan["images"]
    assert image["local_only"] and image["archive"] == "images/f134fdc9b405.tar"
    assert image["refs"] == ["localhost/local/busybox:1.35", "localhost/local/busybox:latest"]


def test_running_container_becomes_a_valid_service():
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    [web] = services(plan)
    assert web == {
        "name": "web",
        "image": "localhost/local/busybox:1.35",  # the tag it was created with
        "command": ["httpd", "-f", "-p", "80", "-h", "/www"],  # differs from the image's sh
        "env": {"GREETING": "hello", "MULTI": "a b"},
        "ports": [
            {"host": 8080, "container": 80, "protocol": "tcp"},
            {"host": 8443, "container": 443, "protocol": "tcp", "host_ip": "127.0.0.1"},
        ],
        "volumes": [{"volume": "appdata", "target": "/data", "read_only": False}],
        "restart": "always",  # unless-stopped
        "network": "appnet",
    }
    Service.model_validate(web)


def test_what_a_service_cannot_express_is_a_problem():
    inventory = _without_bind_mounts(_inventory())
    web = next(c for c in inventory.containers if c.name == "web")
    odd = dataclasses.replace(
        web,
        entrypoint=["/bin/tini", "--"],
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
    [web] = services(build_plan(inventory, BUNDLE))
    assert web["env"] == {"MULTI": "a b"}


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
        "image": "localhost/local/busybox:1.35",
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
        "volume appdata\n"
        "image-archive images/f134fdc9b405.tar local/busybox:1.35 local/busybox:latest\n"
        "image-tag sha256:f134fdc9b405e1de255f7ca826cdc14a674df95bbce33679decfcd310e452bc5 "
        "localhost/local/busybox:1.35 localhost/local/busybox:latest\n"
        "service web\n"
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


def test_bundle_files_and_manifest():
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    files = bundle_files(plan)
    assert set(files) == {
        FILES[k] for k in ("manifest", "plan", "compose", "services", "docker_restore")
    }
    assert json.loads(files["manifest.json"]) == plan
    assert json.loads(files["podman-services.json"]) == services(plan)
