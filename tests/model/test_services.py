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
    assert vllm.shm_size == "8g"  # vLLM's docs: --ipc=host or a large --shm-size
    app = next(s for s in cfg.services if s.name == "nextcloud-app")
    assert [(t.on_calendar, t.container_user) for t in app.timers] == [("*:0/5", "www-data")]
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
    assert network_removers(removed, cfg.services) == {"db": ["web"]}


def test_the_readme_services_table_lists_exactly_the_models_fields():
    from model.host_data import Service

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Services (", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = [row.split("`")[1] for row in rows]
    assert documented == list(Service.model_fields), documented


# --- runtime options (issue 18, item 2) -------------------------------------------------------

RUNTIME = {
    "shm_size": "8g",
    "memory": "512m",
    "cpus": 1.5,
    "pids_limit": 512,
    "cap_add": ["net_admin", "CAP_SYS_NICE"],
    "cap_drop": ["all"],
    "container_user": "999",
    "container_group": "postgres",
    "working_dir": "/var/lib/app",
    "hostname": "db.example",
    "stop_timeout": 120,
    "init": True,
    "read_only": True,
    "tmpfs": [{"target": "/run/app", "size": "64m", "mode": "1777"}, {"target": "/cache"}],
    "labels": {"org.example/role": 'the "db" 100%'},
    "ulimits": {"nofile": 65536, "core": "0:-1", "memlock": "-1:-1"},
    "sysctls": {"net.core.somaxconn": "1024", "kernel.shmmax": "68719476736"},
    "healthcheck": {"command": "pg_isready", "timeout": "5s", "retries": 10, "start_period": "1m"},
}


def test_runtime_options_are_accepted_and_normalised():
    svc = _services(_svc(**RUNTIME)).services[0]
    assert svc.cap_add == ["CAP_NET_ADMIN", "CAP_SYS_NICE"] and svc.cap_drop == ["ALL"]
    assert svc.ulimits == {"nofile": "65536:65536", "core": "0:-1", "memlock": "-1:-1"}
    assert [t.spec for t in svc.tmpfs] == ["/run/app:size=64m,mode=1777", "/cache"]
    # 1m start period, then 10 checks of 30s interval + 5s timeout.
    assert svc.healthcheck.budget == 60 + 10 * 35 + 1
    assert _services(_svc(ipc="host", host_network=True)).services[0].ipc == "host"


@pytest.mark.parametrize(
    ("fields", "key", "needle"),
    [
        ({"shm_size": "8G"}, "shm_size", "not a valid size"),
        ({"shm_size": "1t"}, "shm_size", "not a valid size"),
        ({"shm_size": "-1"}, "shm_size", "not a valid size"),
        ({"shm_size": "1g", "ipc": "host"}, "shm_size", "ipc 'host' has no /dev/shm of its own"),
        ({"ipc": "container:db"}, "ipc", "'host', 'private', 'shareable' or 'none'"),
        ({"memory": "4m"}, "memory", "under podman's minimum, 6m"),
        ({"cpus": 0}, "cpus", "greater than 0"),
        ({"pids_limit": 0}, "pids_limit", "-1 is unlimited, 0 is not a limit"),
        ({"pids_limit": -2}, "pids_limit", "greater than or equal to -1"),
        ({"cap_add": ["NET_ADMINN"]}, "cap_add[0]", "not a Linux capability"),
        ({"cap_add": ["NET_ADMIN"], "cap_drop": ["cap_net_admin"]}, "cap_drop", "also in cap_add"),
        ({"cap_add": ["chown", "CAP_CHOWN"]}, "cap_add", "repeated: CAP_CHOWN"),
        ({"container_user": "root; reboot"}, "container_user", "not a valid uid/gid"),
        ({"container_group": "999"}, "container_group", "needs container_user"),
        ({"working_dir": "relative"}, "working_dir", "absolute path"),
        ({"working_dir": "/a b"}, "working_dir", "no space"),
        ({"hostname": "-bad"}, "hostname", "not a valid host name"),
        ({"hostname": "a_b"}, "hostname", "not a valid host name"),
        ({"host_network": True, "network": "front"}, "network", "host_network is set"),
        ({"host_network": True, "ports": [{"host": 80, "container": 80}]}, "ports", "none to"),
        (
            {"host_network": True, "sysctls": {"net.core.somaxconn": "1"}},
            "sysctls.net.core.somaxconn",
            "host_network",
        ),
        (
            {"ipc": "host", "sysctls": {"kernel.shmmax": "1"}},
            "sysctls.kernel.shmmax",
            "ipc is host",
        ),
        ({"stop_timeout": 3601}, "stop_timeout", "less than or equal to 3600"),
        ({"tmpfs": [{"target": "tmp"}]}, "tmpfs[0].target", "absolute path"),
        ({"tmpfs": [{"target": "/t", "mode": "777x"}]}, "tmpfs[0].mode", "octal mode"),
        ({"tmpfs": [{"target": "/t"}, {"target": "/t"}]}, "tmpfs", "repeated: /t"),
        (
            {"tmpfs": [{"target": "/d"}], "volumes": [{"volume": "v", "target": "/d"}]},
            "tmpfs[0].target",
            "a volume's target too",
        ),
        ({"labels": {"-x": "1"}}, "labels.-x.[key]", "not a valid label key"),
        ({"labels": {"a": "line\nbreak"}}, "labels.a", "control characters"),
        ({"ulimits": {"files": 1}}, "ulimits.files.[key]", "not a ulimit podman knows"),
        ({"ulimits": {"nofile": "10:5"}}, "ulimits.nofile", "soft limit is above the hard"),
        ({"ulimits": {"nofile": "-1:5"}}, "ulimits.nofile", "soft limit is above the hard"),
        ({"ulimits": {"nofile": "lots"}}, "ulimits.nofile", "not a ulimit (soft[:hard]"),
        ({"sysctls": {"vm.swappiness": "1"}}, "sysctls.vm.swappiness.[key]", "not namespaced"),
        ({"sysctls": {"kernel.sem": "250 32000 32 128"}}, "sysctls.kernel.sem", "one word"),
        ({"healthcheck": {"command": "true", "timeout": "0s"}}, "healthcheck", "longer than 0"),
        ({"healthcheck": {"command": "true", "interval": "0ms"}}, "healthcheck", "longer"),
        ({"healthcheck": {"command": "true", "start_period": "1d"}}, "healthcheck", "30s"),
        ({"healthcheck": {"command": "true", "retries": 0}}, "healthcheck.retries", ">= 1"),
    ],
)
def test_bad_runtime_options_are_refused_by_host_and_key(fields, key, needle):
    inventory = Inventory(([("motoko", {"podman_services": [_svc("nextcloud-db", **fields)]})], {}))
    State(inventory, Config())
    errors = host_errors(inventory.get_host("motoko"))
    assert len(errors) == 1, errors
    where = "podman_services[0](nextcloud-db)" + (f".{key}" if key else "")
    assert errors[0].startswith(f"motoko: {where} (host data in the inventory): "), errors[0]
    assert needle.replace(">= 1", "greater than or equal to 1") in errors[0], errors[0]
    assert "got None" not in errors[0]


@pytest.mark.parametrize(
    ("fields", "key", "needle"),
    [
        ({"userns": "keep-id"}, "userns", "needs 'user'"),
        ({"userns": "nomap"}, "userns", "needs 'user'"),
        ({"userns": "container:db"}, "userns", "'auto', 'host', 'keep-id' or 'nomap'"),
        ({"log_driver": "syslog"}, "log_driver", "'journald', 'k8s-file', 'none' or"),
        ({"log_driver": "none", "log_opts": {"tag": "x"}}, "log_opts", "keeps no log"),
        ({"log_opts": {"max-size": "ten"}}, "log_opts.max-size", "not a size"),
        ({"log_opts": {"path": "/var/log/x"}}, "log_opts.path", "log_driver k8s-file"),
        (
            {"log_driver": "k8s-file", "log_opts": {"path": "/var/log/a b"}},
            "log_opts.path",
            "not a valid log file path",
        ),
        ({"log_driver": "k8s-file", "log_opts": {"tag": "x"}}, "log_opts.tag", "journald"),
        ({"log_opts": {"compress": "true"}}, "log_opts.compress.[key]", "'max-size', 'path'"),
    ],
)
def test_bad_namespace_and_log_options_are_refused_by_host_and_key(fields, key, needle):
    test_bad_runtime_options_are_refused_by_host_and_key(fields, key, needle)


def test_a_rootless_service_may_keep_its_users_id():
    svc = _services(
        _svc(user="svc-web", userns="keep-id", log_opts={"tag": "{{.Name}}", "max-size": "10mb"}),
        rootless_users=[{"name": "svc-web"}],
    ).services[0]
    assert svc.userns == "keep-id" and svc.log_opts["tag"] == "{{.Name}}"


# --- timers (issue 18, item 4) -----------------------------------------------------------------

CRON = {"name": "cron", "on_calendar": "*:0/5", "command": ["php", "-f", "/var/www/html/cron.php"]}


def test_a_timer_is_accepted_and_its_calendar_normalised():
    svc = _services(_svc(timers=[{**CRON, "on_calendar": " Mon..Fri  *-*-* 03:00 "}])).services[0]
    assert svc.timers[0].on_calendar == "Mon..Fri *-*-* 03:00"
    # Removing one needs no command.
    removed = _services(_svc(timers=[{"name": "cron", "present": False}])).services[0]
    assert removed.timers[0].present is False


@pytest.mark.parametrize(
    ("timer", "key", "needle"),
    [
        ({**CRON, "on_calendar": "daily\nExecStart=/bin/sh"}, "timers[0].on_calendar", "not a"),
        ({**CRON, "on_calendar": "%h"}, "timers[0].on_calendar", "not a calendar spec"),
        ({**CRON, "on_calendar": "$X"}, "timers[0].on_calendar", "not a calendar spec"),
        ({**CRON, "on_calendar": ""}, "timers[0].on_calendar", "not a calendar spec"),
        ({**CRON, "command": []}, "timers[0]", "has an on_calendar and a command"),
        ({"name": "cron", "command": ["true"]}, "timers[0]", "has an on_calendar and a command"),
        ({**CRON, "command": ["true", ";", "reboot"]}, "timers[0]", "lone ';'"),
        ({**CRON, "name": "Cron"}, "timers[0].name", "not a valid name"),
    ],
)
def test_bad_timers_are_refused_by_host_and_key(timer, key, needle):
    test_bad_runtime_options_are_refused_by_host_and_key({"timers": [timer]}, key, needle)


def test_timer_names_are_unique_and_their_units_are_no_services_units():
    test_bad_runtime_options_are_refused_by_host_and_key(
        {"timers": [CRON, CRON]}, "timers", "names repeated: cron"
    )
    with pytest.raises(ValidationError, match="timer cron would be app-cron.service, the unit"):
        _services(_svc("app", timers=[CRON]), _svc("app-cron"))


# --- managed files, reload, networks, quadlet pass-through (issue 18, items 1 and 2) ---------

PG_SECRET = {"POSTGRES_PASSWORD": {"env": "APP_DB_PASSWORD"}}
PGPASS = {"path": "conf/pgpass", "template": "pgpass.j2", "vars": {"user": "app"}, "mode": "0600"}


def test_files_reload_networks_and_quadlet_keys_are_accepted():
    svc = _services(
        _svc(
            secrets=PG_SECRET,
            files=[
                {"path": "conf/app.conf", "content": "a = 1\n", "owner": "999", "group": "999"},
                PGPASS,
                {"path": "old.conf", "present": False},
            ],
            reload={"signal": "HUP"},
            network="front",
            networks=[{"name": "back", "aliases": ["db", "db.internal"]}],
            quadlet_keys={
                "DNS": ["1.1.1.1", "9.9.9.9"],
                "EnvironmentHost": True,
                "Timezone": "UTC",
            },
        )
    ).services[0]
    assert [f.mode for f in svc.files] == ["0644", "0600", "0644"]
    assert svc.files[1].secrets == {"POSTGRES_PASSWORD"} and svc.files[0].secrets == set()
    assert [(n.name, n.spec) for n in svc.attachments] == [
        ("front", "front"),
        ("back", "back:alias=db,alias=db.internal"),
    ]
    assert svc.quadlet_keys == {
        "DNS": ["1.1.1.1", "9.9.9.9"],
        "EnvironmentHost": ["true"],
        "Timezone": ["UTC"],
    }
    assert _services(_svc(reload={"command": ["nginx", "-s", "reload"]})).services[0].reload


def test_motoko_litellm_config_is_a_managed_template_listing_the_embeddings_model():
    from operations.services import render_files

    data = runpy.run_path(str(ROOT / "group_data/motoko.py"))
    cfg = HostData.model_validate(
        {k.removeprefix("podman_"): v for k, v in data.items() if k.startswith("podman_")}
    )
    litellm = next(s for s in cfg.services if s.name == "litellm")
    vllm = next(s for s in cfg.services if s.name == "vllm-embeddings")
    text = render_files(litellm, cfg)["config/config.yaml"][1]
    served = vllm.command[vllm.command.index("--served-model-name") + 1]
    assert text.startswith("# managed by podman-standard")
    assert f'model: "openai/{served}"' in text
    assert 'api_base: "http://vllm-embeddings:8000/v1"' in text
    assert "master_key: os.environ/LITELLM_MASTER_KEY" in text
    # The volume LiteLLM reads it from, and its --config.
    assert "/app/config/config.yaml" in litellm.command
    assert [v.source for v in litellm.volumes] == ["config"]
    app = next(s for s in cfg.services if s.name == "nextcloud-app")
    assert app.env["NEXTCLOUD_ADMIN_USER"] and "NEXTCLOUD_ADMIN_PASSWORD" in app.secrets
    assert {"POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER"} <= set(app.env)
    assert "POSTGRES_PASSWORD" in app.secrets and app.env["NEXTCLOUD_TRUSTED_DOMAINS"]


@pytest.mark.parametrize(
    ("fields", "key", "needle"),
    [
        ({"files": [{"path": "../etc/passwd", "content": "x"}]}, "files[0].path", "no '..'"),
        ({"files": [{"path": "/etc/passwd", "content": "x"}]}, "files[0].path", "relative path"),
        ({"files": [{"path": "a b", "content": "x"}]}, "files[0].path", "relative path"),
        ({"files": [{"path": "secrets.env", "content": "x"}]}, "files[0].path", "secrets file"),
        ({"files": [{"path": "a", "content": "x", "mode": "0o644"}]}, "files[0].mode", "octal"),
        ({"files": [{"path": "a", "content": "x", "mode": "4755"}]}, "files[0].mode", "setuid"),
        ({"files": [{"path": "a", "content": "x", "owner": "a;b"}]}, "files[0].owner", "uid/gid"),
        ({"files": [{"path": "a"}]}, "files[0]", "exactly one of 'content' or 'template'"),
        (
            {"files": [{"path": "a", "content": "x", "template": "pgpass.j2"}]},
            "files[0]",
            "exactly one of",
        ),
        (
            {"files": [{"path": "a", "template": "nginx.conf.j2"}]},
            "files[0].template",
            "'nginx.conf.j2' is not in templates/services/",
        ),
        (
            {"files": [{"path": "a", "template": "../service.container.j2"}]},
            "files[0].template",
            "template file name",
        ),
        ({"files": [PGPASS]}, "files[0].template", "reads secrets.POSTGRES_PASSWORD, which is not"),
        (
            {"files": [{**PGPASS, "mode": "0644"}], "secrets": PG_SECRET},
            "files[0].mode",
            "lets every user of the host read the secrets POSTGRES_PASSWORD",
        ),
        ({"files": [{"path": "a", "content": "x", "vars": {"A": 1}}]}, "files[0].vars", "template"),
        (
            {"files": [{"path": "a", "content": "x"}, {"path": "a", "content": "y"}]},
            "files",
            "paths repeated: a",
        ),
        (
            {"files": [{"path": "a", "content": "x"}, {"path": "a/b", "content": "y"}]},
            "files[1].path",
            "a is a file, not a directory",
        ),
        (
            {
                "files": [{"path": "data", "content": "x"}],
                "volumes": [{"source": "data", "target": "/d"}],
            },
            "files[0].path",
            "a volume's source",
        ),
        ({"reload": {}}, "reload", "exactly one of 'signal'"),
        ({"reload": {"signal": "HUP", "command": ["x"]}}, "reload", "exactly one of 'signal'"),
        ({"reload": {"signal": "KILL"}}, "reload.signal", "'HUP'"),
        ({"reload": {"command": ["a", ";", "b"]}}, "reload", "lone ';'"),
        ({"networks": [{"name": "Bad Net"}]}, "networks[0].name", "not a valid name"),
        ({"networks": [{"name": "b", "aliases": ["a_b"]}]}, "networks[0].aliases[0]", "alias"),
        ({"network": "b", "networks": [{"name": "b"}]}, "networks", "networks repeated: b"),
        ({"networks": [{"name": "b", "aliases": ["x", "x"]}]}, "networks[0].aliases", "repeated"),
        ({"host_network": True, "networks": [{"name": "b"}]}, "networks", "host_network is set"),
        ({"quadlet_keys": {"Foo": "1"}}, "quadlet_keys.Foo", "'Foo' is not passed through"),
        (
            {"quadlet_keys": {"ShmSize": "1g"}},
            "quadlet_keys.ShmSize",
            "a field of its own: shm_size",
        ),
        ({"quadlet_keys": {"DNS": "1.1.1.1 8.8.8.8"}}, "quadlet_keys.DNS", "cannot be written"),
        ({"quadlet_keys": {"DNS": "-x"}}, "quadlet_keys.DNS", "cannot be written"),
        ({"quadlet_keys": {"Mount": "a\nb"}}, "quadlet_keys.Mount", "control characters"),
        ({"quadlet_keys": {"EnvironmentHost": "yes"}}, "quadlet_keys.EnvironmentHost", "true or"),
        ({"quadlet_keys": {"DNS": 1}}, "quadlet_keys.DNS", "takes text"),
    ],
)
def test_bad_files_reload_networks_and_keys_are_refused_by_host_and_key(fields, key, needle):
    inventory = Inventory(([("motoko", {"podman_services": [_svc("litellm", **fields)]})], {}))
    State(inventory, Config())
    errors = host_errors(inventory.get_host("motoko"))
    assert len(errors) == 1, errors
    where = "podman_services[0](litellm)" + (f".{key}" if key else "")
    assert errors[0].startswith(f"motoko: {where} (host data in the inventory): "), errors[0]
    assert needle in errors[0], errors[0]


def test_a_template_reading_secrets_by_a_computed_name_is_refused(monkeypatch):
    import model.host_data as host_data

    monkeypatch.setitem(host_data.SERVICE_TEMPLATES, "loop.j2", "{{ secrets[vars.name] }}")
    with pytest.raises(ValueError, match=r"read by name only .*line 1"):
        host_data.template_secrets("loop.j2")
    monkeypatch.setitem(host_data.SERVICE_TEMPLATES, "all.j2", "{% for k in secrets %}{% endfor %}")
    with pytest.raises(ValueError, match="read by name only"):
        host_data.template_secrets("all.j2")
    monkeypatch.setitem(host_data.SERVICE_TEMPLATES, "two.j2", '{{ secrets.A }}{{ secrets["B"] }}')
    assert host_data.template_secrets("two.j2") == {"A", "B"}


def test_removing_the_last_service_of_each_of_its_networks_removes_them():
    services = [
        _svc("app", present=False, networks=[{"name": "a"}, {"name": "b"}]),
        _svc("web", networks=[{"name": "b", "aliases": ["www"]}]),
    ]
    cfg = _services(*services)
    removed = [s for s in cfg.services if not s.present]
    assert network_removers(removed, cfg.services) == {"app": ["a"]}


def test_a_rendering_error_names_the_file_and_never_a_secret(monkeypatch):
    from pyinfra.api import OperationError

    from model.host_data import Service
    from operations.services import render_files

    # A control character cannot stand in pgpass: refused without quoting the value.
    monkeypatch.setenv("APP_DB_PASSWORD", "first\asecond-secret")
    svc = Service.model_validate(_svc(secrets=PG_SECRET, files=[PGPASS]))
    with pytest.raises(OperationError) as info:
        render_files(svc)
    message = str(info.value)
    assert message == "service app: file conf/pgpass: template pgpass.j2: ValueError"
    assert "secret" not in message
    # A variable the template needs and the entry lacks: jinja2's message names it.
    svc = Service.model_validate(_svc(secrets=PG_SECRET, files=[{**PGPASS, "vars": {}}]))
    monkeypatch.setenv("APP_DB_PASSWORD", "pw")
    with pytest.raises(OperationError, match=r"conf/pgpass: .*UndefinedError: .*'user'"):
        render_files(svc)


def test_bind_mount_selinux_label_private_or_shared():
    from model.host_data import Volume

    assert Volume(source="data", target="/data").spec("/srv/a") == "/srv/a/data:/data:Z"
    shared = Volume(source="data", target="/data", label="shared", read_only=True)
    assert shared.spec("/srv/a") == "/srv/a/data:/data:ro,z"
    with pytest.raises(ValidationError, match="label applies to a bind mount"):
        Volume(volume="pgdata", target="/data", label="private")
    with pytest.raises(ValidationError):
        Volume(source="data", target="/data", label="none")
