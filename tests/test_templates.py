"""Rendered files: headers, real behaviour of the wrapper scripts, TOML and systemd units that
parse back."""

import configparser
import os
import shlex
import stat
import subprocess
import tomllib

import pytest

from model.host_data import Service
from operations._common import MANAGED_BY, render_template, render_toml, systemd_word
from operations.registries import registries_toml
from operations.services import QUADLET_KEYS, render_network, render_secrets, render_unit

# The podman of Debian 12 (plain units) and of Debian 13 (quadlet).
PODMAN = {"plain": (4, 3, 1), "quadlet": (5, 4, 2)}


@pytest.fixture
def fake_tools(tmp_path):
    """podman and podman-compose stand-ins that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("podman", "podman-compose"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\nprintf "{tool}"\nfor a in "$@"; do printf " [%s]" "$a"; done\necho\n'
        )
        script.chmod(0o755)
    return bin_dir


def _install(tmp_path, template, name):
    path = tmp_path / name
    path.write_text(render_template(template, source="test").getvalue())
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ps", "-a"], "podman [ps] [-a]"),
        (["run", "--rm", "alpine", "echo", "a b"], "podman [run] [--rm] [alpine] [echo] [a b]"),
        (["compose", "up", "-d"], "podman-compose [up] [-d]"),
        (["compose"], "podman-compose"),
        ([], "podman"),
        (["--version"], "podman [--version]"),
    ],
)
def test_docker_wrapper_maps_to_podman(tmp_path, fake_tools, argv, expected):
    wrapper = _install(tmp_path, "docker-wrapper.sh.j2", "docker")
    env = {**os.environ, "PATH": f"{fake_tools}:/usr/bin:/bin"}
    out = subprocess.run([str(wrapper), *argv], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_docker_compose_wrapper_maps_to_podman_compose(tmp_path, fake_tools):
    wrapper = _install(tmp_path, "docker-compose-wrapper.sh.j2", "docker-compose")
    env = {**os.environ, "PATH": f"{fake_tools}:/usr/bin:/bin"}
    out = subprocess.run(
        [str(wrapper), "-f", "x.yml", "up", "-d"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "podman-compose [-f] [x.yml] [up] [-d]"


@pytest.mark.parametrize(
    "template", ["docker-wrapper.sh.j2", "docker-compose-wrapper.sh.j2", "nodocker.j2"]
)
def test_every_template_carries_the_managed_by_header(template):
    head = render_template(template, source="operations/x.py").getvalue().splitlines()[:2]
    assert any(line.startswith(f"# {MANAGED_BY} (operations/x.py)") for line in head)


def test_wrapper_is_posix_sh():
    text = render_template("docker-wrapper.sh.j2", source="t").getvalue()
    assert text.startswith("#!/bin/sh\n")
    result = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_registries_toml_round_trips_hostile_values():
    # Values with quotes or newlines must be escaped by the serializer, not break the file.
    doc = registries_toml(
        ["docker.io", "quay.io"],
        "permissive",
        [
            {
                "prefix": 'weird"\nprefix',
                "mirrors": [{"location": "m.example:5000", "insecure": True}],
            }
        ],
    )
    text = render_toml(doc, "t").getvalue()
    parsed = tomllib.loads(text)
    assert parsed["registry"][0]["prefix"] == 'weird"\nprefix'
    assert parsed["registry"][0]["location"] == 'weird"\nprefix'
    assert parsed["registry"][0]["mirror"] == [{"location": "m.example:5000", "insecure": True}]
    assert parsed["unqualified-search-registries"] == ["docker.io", "quay.io"]
    assert text.startswith(f"# {MANAGED_BY} (t)")


def test_template_files_are_not_executable_in_repo():
    from operations._common import TEMPLATES

    for path in TEMPLATES.rglob("*"):
        assert path.is_dir() or not path.stat().st_mode & stat.S_IXUSR, path


# --- services: systemd unit syntax -------------------------------------------------------

HOSTILE = [
    "plain",
    "two  spaces",
    " lead and trail ",
    'double "quotes"',
    "single 'quotes'",
    "back\\slash and \\n literal",
    "100% %h %n %%",
    "$HOME ${HOME} $$ $",
    "",
    '\'"mixed\\" $%',
]


def _systemd_words(line: str) -> list[str]:
    """What systemd makes of a command line we wrote: our words are double-quoted with only
    \\\\ and \\" escaped (shlex's POSIX rules inside double quotes), then %% and $$."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)]


@pytest.mark.parametrize("value", HOSTILE)
def test_systemd_word_round_trips(value):
    assert _systemd_words(systemd_word(value)) == [value]
    assert _systemd_words(f"{systemd_word(value)} {systemd_word('next')}") == [value, "next"]


@pytest.mark.parametrize("value", ["line\nbreak", "carriage\rreturn", "nul\0", "tab\t", "\x7f"])
def test_systemd_word_rejects_what_one_line_cannot_hold(value):
    with pytest.raises(ValueError, match="control characters"):
        systemd_word(value)


def test_systemd_word_rejects_a_lone_semicolon():
    # systemd splits command lines on a lone ";" even when it is quoted.
    with pytest.raises(ValueError, match="lone ';'"):
        systemd_word(";")
    assert _systemd_words(systemd_word("a;b")) == ["a;b"]


class _MultiDict(dict):
    """configparser section storage that keeps every value of a repeated key."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def _parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    parser = configparser.RawConfigParser(
        strict=False, dict_type=_MultiDict, empty_lines_in_values=False, interpolation=None
    )
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return {
        section: {key: value.split("\n") for key, value in parser.items(section)}
        for section in parser.sections()
    }


def _hostile_service(**extra) -> Service:
    return Service.model_validate(
        {
            "name": "web",
            "image": "docker.io/library/nginx:1.27.3",
            "command": ["sh", "-c", 'echo "$HOME" 100% \\ done', "a b"],
            "env": {f"V{i}": value for i, value in enumerate(HOSTILE)},
            "secrets": {"DB_PASSWORD": {"env": "WEB_DB_PASSWORD"}},
            "ports": [
                {"host": 8080, "container": 80, "host_ip": "127.0.0.1"},
                {"host": 5353, "container": 53, "protocol": "udp", "host_ip": "::1"},
            ],
            "volumes": [
                {"source": "html", "target": "/usr/share/nginx/html", "read_only": True},
                {"volume": "webdata", "target": "/data"},
            ],
            "devices": ["nvidia.com/gpu=all"],
            "requires": ["db"],
            "network": "frontend",
            "healthcheck": {"command": 'curl -fsS "http://localhost/" || exit 1', "interval": "1m"},
            **extra,
        }
    )


def test_quadlet_container_parses_back():
    text = render_unit(
        _hostile_service(), "quadlet", "/srv/containers/apps/web", False, podman=PODMAN["quadlet"]
    )
    assert text.startswith(f"# {MANAGED_BY} (operations/services.py)")
    unit = _parse_unit(text)
    assert unit["Unit"]["Requires"] == ["db.service"] and unit["Unit"]["After"] == ["db.service"]
    container = unit["Container"]
    assert container["ContainerName"] == ["web"]
    assert container["Image"] == ["docker.io/library/nginx:1.27.3"]
    assert container["Network"] == ["frontend.network"]
    assert container["PublishPort"] == ["127.0.0.1:8080:80/tcp", "[::1]:5353:53/udp"]
    assert container["Volume"] == [
        "/srv/containers/apps/web/html:/usr/share/nginx/html:ro,Z",
        "webdata:/data",
    ]
    env = [_systemd_words(line) for line in container["Environment"]]
    assert env == [[f"V{i}={value}"] for i, value in enumerate(HOSTILE)]
    assert container["EnvironmentFile"] == ["/srv/containers/apps/web/secrets.env"]
    assert container["AddDevice"] == ["nvidia.com/gpu=all"]
    assert _systemd_words(container["PodmanArgs"][0]) == [
        "--health-cmd",
        'curl -fsS "http://localhost/" || exit 1',
    ]
    assert container["HealthInterval"] == ["1m"]
    assert _systemd_words(container["Exec"][0]) == ["sh", "-c", 'echo "$HOME" 100% \\ done', "a b"]
    assert unit["Service"]["Restart"] == ["always"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_plain_unit_parses_back_to_the_exact_podman_command():
    text = render_unit(
        _hostile_service(), "plain", "/srv/containers/apps/web", False, podman=PODMAN["plain"]
    )
    assert text.startswith(f"# {MANAGED_BY} (operations/services.py)")
    unit = _parse_unit(text)
    assert unit["Unit"]["Requires"] == ["db.service"]
    assert "db.service" in unit["Unit"]["After"]
    service = unit["Service"]
    assert service["Type"] == ["notify"] and service["Restart"] == ["always"]
    assert _systemd_words(service["ExecStartPre"][1]) == [
        "/bin/sh",
        "-c",
        "/usr/bin/podman network exists frontend || /usr/bin/podman network create frontend",
    ]
    # configparser keeps the continuation lines; systemd joins them at the backslashes.
    argv = _systemd_words(" ".join(v.removesuffix("\\") for v in service["ExecStart"]))
    image = argv.index("docker.io/library/nginx:1.27.3")
    assert argv[image + 1 :] == ["sh", "-c", 'echo "$HOME" 100% \\ done', "a b"]
    options = argv[:image]
    assert options[:2] == ["/usr/bin/podman", "run"]

    def values(flag):
        return [options[i + 1] for i, option in enumerate(options) if option == flag]

    assert values("--env") == [f"V{i}={value}" for i, value in enumerate(HOSTILE)]
    assert values("--name") == ["web"] and values("--network") == ["frontend"]
    assert values("--env-file") == ["/srv/containers/apps/web/secrets.env"]
    assert values("--device") == ["nvidia.com/gpu=all"]
    assert values("--health-cmd") == ['curl -fsS "http://localhost/" || exit 1']
    assert values("--publish") == ["127.0.0.1:8080:80/tcp", "[::1]:5353:53/udp"]
    assert values("--volume") == [
        "/srv/containers/apps/web/html:/usr/share/nginx/html:ro,Z",
        "webdata:/data",
    ]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_rootless_units_start_with_the_users_manager():
    svc = _hostile_service(user="svc-web", requires=[])
    assert _parse_unit(render_unit(svc, "quadlet", "/srv/a/web", True, podman=PODMAN["quadlet"]))[
        "Install"
    ] == {"WantedBy": ["default.target"]}
    plain = _parse_unit(render_unit(svc, "plain", "/srv/a/web", True, podman=PODMAN["plain"]))
    assert plain["Install"] == {"WantedBy": ["default.target"]}
    # A user manager cannot order itself after the system's network-online.target.
    assert "Wants" not in plain["Unit"]


def test_network_file_parses_back():
    text = render_network("frontend")
    assert text.startswith(f"# {MANAGED_BY} (operations/services.py)")
    assert _parse_unit(text) == {"Network": {"NetworkName": ["frontend"]}}


def test_secrets_env_file_holds_values_literally():
    svc = _hostile_service()
    text = render_secrets(svc, {"DB_PASSWORD": "p\"a ss $x %h \\ 'q'"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    # podman reads KEY=VALUE to the end of the line, nothing unquoted or expanded.
    assert lines == ["DB_PASSWORD=p\"a ss $x %h \\ 'q'"]


# --- runtime options (issue 18, item 2): both renderings, quadlet's keys by podman version ---

RUNTIME = {
    "name": "db",
    "image": "docker.io/library/postgres:16.6",
    "shm_size": "1g",
    "memory": "512m",
    "cpus": 1.5,
    "pids_limit": 256,
    "cap_add": ["NET_ADMIN"],
    "cap_drop": ["MKNOD"],
    "container_user": "999",
    "container_group": "999",
    "working_dir": "/var/lib/postgresql",
    "hostname": "db",
    "stop_timeout": 120,
    "init": True,
    "read_only": True,
    "tmpfs": [{"target": "/run/postgresql", "size": "16m", "mode": "2775"}],
    "labels": {"org.example/role": 'the "db" 100% $x'},
    "ulimits": {"nofile": "1024:4096"},
    "sysctls": {"net.core.somaxconn": "1024"},
    "healthcheck": {"command": "pg_isready", "timeout": "5s", "retries": 10, "start_period": "1m"},
}
GATED_BASE = {"name": "db", "image": "docker.io/library/postgres:16.6"}
RUNTIME_ARGS = [
    "--shm-size=1g",
    "--memory=512m",
    "--cpus=1.5",
    "--pids-limit=256",
    "--cap-add=CAP_NET_ADMIN",
    "--cap-drop=CAP_MKNOD",
    "--user=999:999",
    "--workdir=/var/lib/postgresql",
    "--hostname=db",
    "--stop-timeout=120",
    "--init",
    "--read-only",
    "--tmpfs=/run/postgresql:size=16m,mode=2775",
    '--label=org.example/role=the "db" 100% $x',
    "--ulimit=nofile=1024:4096",
    "--sysctl=net.core.somaxconn=1024",
    "--health-timeout=5s",
    "--health-retries=10",
    "--health-start-period=1m",
]


def _plain_argv(text: str) -> list[str]:
    service = _parse_unit(text)["Service"]
    return _systemd_words(" ".join(v.removesuffix("\\") for v in service["ExecStart"]))


def test_plain_unit_runs_podman_with_every_runtime_option():
    svc = Service.model_validate(RUNTIME)
    text = render_unit(svc, "plain", "/srv/a/db", False, podman=PODMAN["plain"])
    argv = _plain_argv(text)
    options = argv[: argv.index("docker.io/library/postgres:16.6")]
    start = options.index(RUNTIME_ARGS[0])
    assert options[start : start + len(RUNTIME_ARGS)] == RUNTIME_ARGS
    service = _parse_unit(text)["Service"]
    # podman's stop waits stop_timeout, systemd's a minute more.
    assert service["ExecStop"] == ["/usr/bin/podman stop --ignore -t 120 --cidfile=%t/%n.ctr-id"]
    assert service["TimeoutStopSec"] == ["180"]


def test_userns_and_logging_in_both_renderings():
    svc = Service.model_validate(
        {
            **GATED_BASE,
            "user": "svc-db",
            "userns": "keep-id",
            "log_driver": "journald",
            "log_opts": {"tag": 'db {{.Name}} "x" 100%'},
        }
    )
    argv = _plain_argv(render_unit(svc, "plain", "/srv/a/db", True, podman=PODMAN["plain"]))
    assert ["--userns=keep-id", "--log-driver=journald", '--log-opt=tag=db {{.Name}} "x" 100%'] == [
        a for a in argv if a.startswith(("--userns", "--log-"))
    ]
    unit = render_unit(svc, "quadlet", "/srv/a/db", True, podman=(5, 5, 0))
    container = _parse_unit(unit)["Container"]
    assert container["UserNS"] == ["keep-id"] and container["LogDriver"] == ["journald"]
    assert [_systemd_words(v) for v in container["PodmanArgs"]] == [
        ['--log-opt=tag=db {{.Name}} "x" 100%']
    ]


def test_plain_unit_with_ipc_and_host_network():
    svc = Service.model_validate({**RUNTIME, "shm_size": None, "ipc": "host", "sysctls": {}})
    svc = svc.model_copy(update={"host_network": True})
    argv = _plain_argv(render_unit(svc, "plain", "/srv/a/db", False, podman=PODMAN["plain"]))
    assert "--network=host" in argv and "--ipc=host" in argv
    assert not [a for a in argv if a.startswith("--shm-size")]


def test_quadlet_uses_its_own_keys_where_the_podman_version_has_them():
    svc = Service.model_validate({**RUNTIME, "memory": "1g"})
    container = _parse_unit(render_unit(svc, "quadlet", "/srv/a/db", False, podman=(5, 5, 0)))
    container = container["Container"]
    assert container["ShmSize"] == ["1g"] and container["Memory"] == ["1g"]
    assert container["PidsLimit"] == ["256"]
    assert container["AddCapability"] == ["CAP_NET_ADMIN"]
    assert container["DropCapability"] == ["CAP_MKNOD"]
    assert container["User"] == ["999"] and container["Group"] == ["999"]
    assert container["WorkingDir"] == ["/var/lib/postgresql"]
    assert container["HostName"] == ["db"] and container["StopTimeout"] == ["120"]
    assert container["RunInit"] == ["true"] and container["ReadOnly"] == ["true"]
    assert container["Tmpfs"] == ["/run/postgresql:size=16m,mode=2775"]
    assert [_systemd_words(v) for v in container["Label"]] == [
        ['org.example/role=the "db" 100% $x']
    ]
    assert container["Ulimit"] == ["nofile=1024:4096"]
    assert container["Sysctl"] == ["net.core.somaxconn=1024"]
    assert container["HealthTimeout"] == ["5s"] and container["HealthRetries"] == ["10"]
    assert container["HealthStartPeriod"] == ["1m"]
    # --cpus has no quadlet key in any release.
    assert [_systemd_words(v) for v in container["PodmanArgs"]][1:] == [["--cpus=1.5"]]


@pytest.mark.parametrize(
    ("podman", "through_podman_args"),
    [
        ((5, 4, 2), ["--memory=512m", "--cpus=1.5"]),  # Debian 13: Memory= came with 5.5
        ((4, 9, 3), ["--memory=512m", "--cpus=1.5", "--stop-timeout=120"]),
        (
            (4, 4, 0),
            [
                "--shm-size=1g",
                "--memory=512m",
                "--cpus=1.5",
                "--pids-limit=256",
                "--workdir=/var/lib/postgresql",
                "--hostname=db",
                "--stop-timeout=120",
                "--tmpfs=/run/postgresql:size=16m,mode=2775",
                "--ulimit=nofile=1024:4096",
                "--sysctl=net.core.somaxconn=1024",
                "--health-timeout=5s",
                "--health-retries=10",
                "--health-start-period=1m",
            ],
        ),
    ],
)
def test_quadlet_older_than_a_key_gets_the_option_through_podman_args(podman, through_podman_args):
    svc = Service.model_validate(RUNTIME)
    container = _parse_unit(render_unit(svc, "quadlet", "/srv/a/db", False, podman=podman))
    args = [_systemd_words(v) for v in container["Container"]["PodmanArgs"]]
    assert args[0][0] == "--health-cmd"
    assert [a for (a,) in args[1:]] == through_podman_args
    # ... and never also as its key.
    for arg in through_podman_args:
        key = QUADLET_KEYS.get(arg.split("=")[0], ("none",))[0]
        assert key not in container["Container"], key


# --- health-gated start (issue 18, item 3) ----------------------------------------------------

GATED = {
    "name": "db",
    "image": "docker.io/library/postgres:16.6",
    "healthcheck": {"command": "pg_isready", "interval": "2s", "timeout": "3s", "retries": 4},
}


def _gate_line(text: str) -> list[list[str]]:
    return [_systemd_words(v) for v in _parse_unit(text)["Service"].get("ExecStartPost", [])]


@pytest.mark.parametrize(
    ("rendering", "podman", "native"),
    [("plain", (4, 3, 1), False), ("quadlet", (4, 9, 3), False), ("quadlet", (5, 0, 0), True)],
)
def test_a_service_with_a_health_check_is_started_once_healthy(rendering, podman, native):
    from operations.services import HEALTH_GATE

    svc = Service.model_validate(GATED)
    budget = 4 * (2 + 3) + 1
    assert svc.healthcheck.budget == budget
    unit = render_unit(svc, rendering, "/srv/a/db", False, podman=podman)
    parsed = _parse_unit(unit)
    if native:
        # podman >= 5.0: quadlet's Notify=healthy (podman run --sdnotify=healthy).
        assert parsed["Container"]["Notify"] == ["healthy"]
        assert _gate_line(unit) == []
    else:
        assert "Notify" not in parsed.get("Container", {})
        assert _gate_line(unit) == [
            ["/bin/sh", "-c", HEALTH_GATE, "health-gate", "db", str(budget)]
        ]
    # Bounded either way: systemd fails the start after the budget, one more check (3 s timeout)
    # and a minute.
    assert parsed["Service"]["TimeoutStartSec"] == [str(budget + 3 + 60)]


def test_a_service_without_a_health_check_has_no_gate():
    svc = Service.model_validate({**GATED, "healthcheck": None})
    for rendering, podman in (("plain", (4, 3, 1)), ("quadlet", (5, 4, 2))):
        unit = render_unit(svc, rendering, "/srv/a/db", False, podman=podman)
        assert _gate_line(unit) == [] and "Notify=" not in unit
        assert _parse_unit(unit)["Service"]["TimeoutStartSec"] == ["900"]
