"""podman_services: what a service may say, what is rejected, and messages that name it."""

import runpy
from pathlib import Path

import pytest
from pydantic import ValidationError
from pyinfra.api import Config, Inventory, State

from model.host_data import HostData, network_removers, order_services
from model.validate import host_errors

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "docker.io/library/redis:7.4.1"


def _services(*services, **data):
    return HostData.model_validate({"services": list(services), **data})


def _svc(name="app", **fields):
    return {"name": name, "image": IMAGE, **fields}


def test_motoko_group_data_is_valid_and_ordered():
    data = runpy.run_path(str(ROOT / "group_data/motoko.py"))
    cfg = HostData.model_validate(
        {k.removeprefix("podman_"): v for k, v in data.items() if k.startswith("podman_")}
    )
    names = [s.name for s in order_services(cfg.services)]
    assert names.index("nextcloud-db") < names.index("nextcloud-app")
    assert names.index("nextcloud-redis") < names.index("nextcloud-app")
    vllm = next(s for s in cfg.services if s.name == "vllm-embeddings")
    assert vllm.devices == ["nvidia.com/gpu=all"]
    assert cfg.service_root == "/space/containers/apps"
    # Secrets are references to the controller, never values in the repository.
    for svc in cfg.services:
        for source in svc.secrets.values():
            assert source.env and not source.file


def test_a_full_service_is_accepted_with_defaults():
    cfg = _services(
        _svc(
            "web",
            command=["httpd", "-f", "a b"],
            env={"GREETING": 'hello "world" 100% $HOME'},
            secrets={"DB_PASSWORD": {"env": "WEB_DB_PASSWORD"}, "TOKEN": {"file": "/etc/tok"}},
            ports=[{"host": 8080, "container": 80, "host_ip": "127.0.0.1"}],
            volumes=[
                {"source": "html/static", "target": "/www", "read_only": True},
                {"volume": "webdata", "target": "/data"},
            ],
            devices=["nvidia.com/gpu=all", "/dev/dri/renderD128"],
            network="frontend",
            healthcheck={"command": "wget -q -O- http://localhost/"},
            user="svc-web",
        ),
        rootless_users=[{"name": "svc-web"}],
    )
    web = cfg.services[0]
    assert web.restart.value == "always"
    assert web.present and not web.remove_data
    assert web.ports[0].protocol == "tcp"
    assert web.healthcheck.interval == "30s"
    assert cfg.services[0].image == IMAGE


@pytest.mark.parametrize(
    ("service", "needle"),
    [
        (_svc("../etc"), "not a valid name"),
        (_svc("web;rm"), "not a valid name"),
        (_svc("Web"), "not a valid name"),
        (_svc("a" * 64), "not a valid name"),
        (_svc(image="redis:7.4"), "must start with its registry"),
        (_svc(image="docker.io/library/redis"), "explicit tag or digest"),
        (_svc(image="docker.io/library/redis:7 ; rm -rf /"), "not a valid image reference"),
        (_svc(image="docker.io/library/$(id):1"), "not a valid image reference"),
        (_svc(env={"1BAD": "x"}), "not a valid environment variable name"),
        (_svc(env={"OK": "line\nbreak"}), "control characters"),
        (_svc(command=["echo", "tab\there"]), "control characters"),
        (_svc(command=["true", ";", "reboot"]), "lone ';'"),
        (_svc(secrets={"PW": {"env": "A", "file": "/x"}}), "exactly one of 'env' or 'file'"),
        (_svc(secrets={"PW": {}}), "exactly one of 'env' or 'file'"),
        (_svc(secrets={"PW": {"file": "relative/secret"}}), "absolute path"),
        (_svc(secrets={"PW": {"value": "hunter2"}}), "Extra inputs are not permitted"),
        (_svc(env={"PW": "a"}, secrets={"PW": {"env": "PW"}}), "in both env and secrets"),
        (_svc(ports=[{"host": 0, "container": 80}]), "greater than or equal to 1"),
        (_svc(ports=[{"host": 80, "container": 70000}]), "less than or equal to 65535"),
        (_svc(ports=[{"host": 80, "container": 80, "protocol": "sctp"}]), "'tcp' or 'udp'"),
        (_svc(ports=[{"host": 80, "container": 80, "host_ip": "localhost"}]), "IPv4"),
        (_svc(ports=[{"host": 80, "container": 80}, {"host": 80, "container": 81}]), "repeated"),
        (_svc(volumes=[{"target": "/data"}]), "exactly one of 'source'"),
        (_svc(volumes=[{"source": "a", "volume": "b", "target": "/d"}]), "exactly one"),
        (_svc(volumes=[{"source": "../other", "target": "/d"}]), "relative path under"),
        (_svc(volumes=[{"source": "/etc", "target": "/d"}]), "relative path under"),
        (_svc(volumes=[{"source": "a b", "target": "/d"}]), "relative path under"),
        (_svc(volumes=[{"source": "secrets.env", "target": "/d"}]), "secrets file"),
        (_svc(volumes=[{"volume": "-x", "target": "/d"}]), "not a valid named volume"),
        (_svc(volumes=[{"source": "a", "target": "data"}]), "absolute path"),
        (_svc(volumes=[{"source": "a", "target": "/d:ro"}]), "no space, ':', ','"),
        (_svc(devices=["--privileged"]), "neither a /dev path nor a CDI name"),
        (_svc(devices=["nvidia.com/gpu=all;reboot"]), "neither a /dev path nor a CDI name"),
        (_svc(restart="unless-stopped"), "'always', 'on-failure' or 'no'"),
        (_svc(network="front end"), "not a valid name"),
        (_svc(healthcheck={"command": "true", "interval": "soon"}), "must look like 30s"),
        (_svc(healthcheck={"command": ""}), "at least 1 character"),
        (_svc(requires=["app"]), "cannot require itself"),
        (_svc(privileged=True), "Extra inputs are not permitted"),
        (_svc("docker"), "a unit this package manages itself"),
        (_svc("podman"), "a unit this package manages itself"),
    ],
)
def test_bad_services_are_rejected(service, needle):
    with pytest.raises(ValidationError) as info:
        _services(service)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("services", "data", "needle"),
    [
        ([_svc("a"), _svc("a")], {}, "lists a name twice: a"),
        ([_svc("a", requires=["db"])], {}, "service a requires db, which is not a service"),
        (
            [_svc("a", requires=["b"]), _svc("b", requires=["c"]), _svc("c", requires=["a"])],
            {},
            "cycle: a -> b -> c -> a",
        ),
        ([_svc("a", user="bob")], {}, "service a: user bob is not in rootless_users"),
        (
            [_svc("a", requires=["b"]), _svc("b", user="bob")],
            {"rootless_users": [{"name": "bob"}]},
            "runs under another user's systemd",
        ),
        (
            [_svc("a", requires=["b"]), _svc("b", present=False)],
            {},
            "service a requires b, which is present: false",
        ),
        (
            [_svc("a", network="n"), _svc("b", network="n", user="bob")],
            {"rootless_users": [{"name": "bob"}]},
            "network n is shared by services of different users",
        ),
        ([], {"service_root": "/srv/my apps"}, "not a valid service root"),
        ([], {"service_root": "/srv/apps%i"}, "not a valid service root"),
    ],
)
def test_inconsistent_services_are_rejected(services, data, needle):
    with pytest.raises(ValidationError) as info:
        _services(*services, **data)
    assert needle in str(info.value)


def test_an_image_is_needed_only_to_run_a_service():
    assert _services({"name": "old", "present": False}).services[0].image == ""
    with pytest.raises(ValidationError, match="image is required for a present service"):
        _services({"name": "new"})


def test_dependency_order_keeps_list_order_otherwise():
    cfg = _services(_svc("app", requires=["db", "cache"]), _svc("cache"), _svc("db"), _svc("other"))
    assert [s.name for s in order_services(cfg.services)] == ["db", "cache", "app", "other"]


def test_errors_name_the_service():
    inventory = Inventory(
        (
            [
                (
                    "motoko",
                    {
                        "podman_services": [
                            _svc("ok"),
                            _svc("nextcloud-db", ports=[{"host": 0, "container": 5432}]),
                            _svc("litellm", image="litellm"),
                        ]
                    },
                )
            ],
            {},
        )
    )
    State(inventory, Config())
    errors = host_errors(inventory.get_host("motoko"))
    assert errors == [
        "motoko: podman_services[1](nextcloud-db).ports[0].host (host data in the inventory): "
        "Input should be greater than or equal to 1, got 0",
        "motoko: podman_services[2](litellm) (host data in the inventory): Value error, image "
        "'litellm' must start with its registry (docker.io/library/..., quay.io/...): systemd "
        "cannot answer a short-name prompt",
    ]


def test_the_last_removed_service_of_a_network_removes_it():
    services = [
        {"name": "app", "present": False, "network": "web"},
        {"name": "db", "present": False, "network": "web"},
        {"name": "cache", "present": False, "network": "shared"},
        {"name": "api", "image": IMAGE, "network": "shared"},
        {"name": "solo", "present": False},
    ]
    cfg = _services(*services)
    removed = [s for s in cfg.services if not s.present]
    assert network_removers(removed, cfg.services) == {"db"}


def test_the_readme_services_table_lists_exactly_the_models_fields():
    from model.host_data import Service

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Services (", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = [row.split("`")[1] for row in rows]
    assert documented == list(Service.model_fields), documented
