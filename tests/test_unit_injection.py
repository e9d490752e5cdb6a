"""Hostile values against the service units (issue 20, class 1). What validation refuses is
refused by name; what it accepts reaches systemd as exactly the intended lines, read back by
systemd's own parser (``systemd-analyze verify``, whose debug log dumps the loaded unit); and
a seeded fuzz puts random printable and control text through every unit field."""

import os
import random
import re
import shutil
import subprocess

import pytest
from pydantic import ValidationError
from pyinfra.api import Config, Inventory, State

from model.host_data import HealthCheck, Port, Service, Volume
from model.validate import host_errors
from operations.services import render_unit

# The podman of Debian 12 (plain units) and of Debian 13 (quadlet).
PODMAN = {"plain": (4, 3, 1), "quadlet": (5, 4, 2)}

SERVICE_DIR = "/srv/containers/apps/web"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# What the hostile cases put into every field that accepts free text.
HOSTILE_TEXT = [
    "two  spaces",
    ' "quoted" ',
    "back\\slash \\n",
    "100% %h %n %%",
    "$HOME ${HOME} $$ $",
    "-x --privileged",
    "a;b ; c",
    "[Service]",
    "ExecStartPre=/bin/sh -c reboot",
]


def _base(**fields) -> dict:
    return {
        "name": "web",
        "image": "docker.io/library/nginx:1.27.3",
        "ports": [{"host": 8080, "container": 80, "host_ip": "fe80::1"}],
        "volumes": [
            {"source": "html", "target": "/usr/share/nginx/html", "read_only": True},
            {"volume": "webdata", "target": "/var/lib/web@2+x"},
        ],
        "devices": ["nvidia.com/gpu=all"],
        "requires": ["db"],
        "network": "frontend",
        **fields,
    }


def _hostile() -> Service:
    return Service.model_validate(
        _base(
            command=HOSTILE_TEXT,
            env={f"V{i}": v for i, v in enumerate(HOSTILE_TEXT)},
            secrets={"PW": {"env": "WEB_PW"}},
            healthcheck={"command": " ".join(HOSTILE_TEXT), "interval": "1m"},
        )
    )


# --- validation: what cannot stand in a unit is refused, by host, key and expectation -------


def _errors(service: dict) -> list[str]:
    inventory = Inventory(([("motoko", {"podman_services": [service]})], {}))
    State(inventory, Config())
    return host_errors(inventory.get_host("motoko"))


PAYLOAD = "\rExecStartPre=\rExecStartPre=/bin/touch /root/pwned"
ZONE_PAYLOAD = "::1%n\rExecStartPre=\rExecStartPre=touch pwned"


@pytest.mark.parametrize(
    ("fields", "key", "needle"),
    [
        (
            # The payload (Python refuses a '/' there, so the command has none).
            {"ports": [{"host": 8080, "container": 80, "host_ip": ZONE_PAYLOAD}]},
            "podman_services[0](web).ports[0].host_ip",
            "an IPv6 zone id (%...) cannot be published",
        ),
        (
            {"ports": [{"host": 8080, "container": 80, "host_ip": "fe80::1%eth0"}]},
            "podman_services[0](web).ports[0].host_ip",
            "zone id",
        ),
        *(
            (
                {"volumes": [{"volume": "data", "target": target}]},
                "podman_services[0](web).volumes[0].target",
                "no space, ':', ',', '%', '$' or control character",
            )
            for target in ["/data" + PAYLOAD, "/my data", "/data%h", "/data/${HOME}", "/a\tb"]
        ),
        (
            {"image": "--privileged.example/x:1"},
            "podman_services[0](web)",
            "not a valid image reference",
        ),
        ({"env": {"A": "x" + PAYLOAD}}, "podman_services[0](web).env.A", "control characters"),
        ({"command": ["x\x85y"]}, "podman_services[0](web).command[0]", "control characters"),
    ],
)
def test_what_a_unit_cannot_hold_is_refused_by_name(fields, key, needle):
    errors = _errors(_base(**fields))
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"motoko: {key} (host data in the inventory): ")
    assert needle in errors[0]
    # The control characters are shown escaped, never raw.
    assert "\r" not in errors[0]


# --- the renderer refuses on its own what validation would have (data that skipped it) -------


@pytest.mark.parametrize(
    "fields",
    [
        {"image": "-v/:/host docker.io/x:1"},
        {"ports": [Port.model_construct(host=1, container=2, protocol="tcp\rX=1", host_ip=None)]},
        {"volumes": [Volume.model_construct(source=None, volume="v", target="/a b", read_only=0)]},
        {"devices": ["nvidia.com/gpu=all\rExecStartPre=/bin/true"]},
        {"network": "a%h"},
        {"healthcheck": HealthCheck.model_construct(command="true", interval="1s\r[Service]")},
        {"env": {"A": "line\nbreak"}},
    ],
)
@pytest.mark.parametrize("rendering", ["plain", "quadlet"])
def test_the_one_quoting_function_refuses_unvalidated_values(fields, rendering):
    svc = Service.model_validate(_base()).model_copy(update=fields)
    with pytest.raises(ValueError, match="unit"):
        render_unit(svc, rendering, SERVICE_DIR, False, podman=PODMAN[rendering])


def test_every_value_in_the_service_templates_goes_through_the_quoting_function():
    from operations._common import TEMPLATES

    names = sorted(p.name for p in TEMPLATES.glob("service.*.j2"))
    assert len(names) == 5, names  # the container, network, plain unit, timer and its job
    for name in names:
        for expr in re.findall(r"\{\{(.*?)\}\}", (TEMPLATES / name).read_text()):
            expr = expr.strip()
            if expr in ("managed_by", "source"):  # the header: the package's own constants
                continue
            assert re.search(r'\|\s*unit(_word)?\s*$|map\("unit_word"\)', expr), (name, expr)


# --- systemd's own reading of what was rendered ---------------------------------------------


@pytest.fixture
def systemd_analyze():
    if SYSTEMD_ANALYZE is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: .ci/setup installs the systemd package")
        pytest.skip("systemd-analyze not installed (the systemd package; .ci/setup installs it)")
    return SYSTEMD_ANALYZE


def _systemd_reads(tool, tmp_path, text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(systemd's complaints about the unit's lines, its dump of the loaded unit as
    ``{key: [values]}``) for ``text`` loaded as ``web.service``."""
    path = tmp_path / "web.service"
    path.write_text(text)
    # What it requires must exist for systemd to load it (and dump it).
    (tmp_path / "db.service").write_text("[Service]\nExecStart=/bin/true\n")
    run = subprocess.run(
        [tool, "verify", "--man=no", str(path)],
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_COLORS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in run.stderr.splitlines() if line.startswith(f"{path}:")]
    complaints = [line.removeprefix(f"{path}:") for line in complaints]
    dump: dict[str, list[str]] = {}
    key = None
    inside = False
    for line in run.stdout.splitlines():
        if line.startswith("\t-> Unit "):
            inside = line == "\t-> Unit web.service:"
            continue
        if not inside:
            continue
        if line.startswith("\t\t-> "):  # an Exec* list, its command lines follow
            key = line.strip().removeprefix("-> ").removesuffix(":")
            dump.setdefault(key, [])
        elif line.startswith("\t\t\tCommand Line: ") and key:
            dump[key].append(line.split("Command Line: ", 1)[1])
        elif line.startswith("\t\t") and ": " in line:
            name, value = line[2:].split(": ", 1)
            dump.setdefault(name, []).append(value)
    assert dump, run.stderr[-2000:]
    return complaints, dump


_WORD_RE = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|((?:[^\s"\'\\]|\\.)+)')


def _argv(command_line: str) -> list[str]:
    """The argv systemd prints shell-quoted (inside double quotes \\ escapes " \\ $ `), with
    "$$" read as "$", as systemd does when it runs the command."""
    words = []
    for quoted, single, bare in _WORD_RE.findall(command_line):
        word = single if single else re.sub(r"\\(.)", r"\1", quoted or bare)
        words.append(word.replace("$$", "$"))
    return words


def test_plain_unit_is_read_by_systemd_as_exactly_the_intended_command(systemd_analyze, tmp_path):
    svc = _hostile()
    complaints, dump = _systemd_reads(
        systemd_analyze,
        tmp_path,
        render_unit(svc, "plain", SERVICE_DIR, False, podman=PODMAN["plain"]),
    )
    assert complaints == []
    network = "/usr/bin/podman network exists frontend || /usr/bin/podman network create frontend"
    assert [_argv(c) for c in dump["ExecStartPre"]] == [
        ["/bin/rm", "-f", "/run/web.service.ctr-id"],
        ["/bin/sh", "-c", network],
    ]
    assert len(dump["ExecStart"]) == 1 and len(dump["ExecStop"]) == 1
    assert len(dump["ExecStopPost"]) == 1 and "ExecReload" not in dump
    argv = _argv(dump["ExecStart"][0])
    image = argv.index("docker.io/library/nginx:1.27.3")
    assert argv[image + 1 :] == HOSTILE_TEXT
    assert argv[:2] == ["/usr/bin/podman", "run"]

    def values(flag):
        return [argv[i + 1] for i, option in enumerate(argv[:image]) if option == flag]

    assert values("--env") == [f"V{i}={v}" for i, v in enumerate(HOSTILE_TEXT)]
    assert values("--health-cmd") == [" ".join(HOSTILE_TEXT)]
    assert values("--publish") == ["[fe80::1]:8080:80/tcp"]
    assert values("--name") == ["web"] and values("--network") == ["frontend"]
    assert values("--volume") == [
        f"{SERVICE_DIR}/html:/usr/share/nginx/html:ro,Z",
        "webdata:/var/lib/web@2+x",
    ]
    assert dump["Environment"] == ["PODMAN_SYSTEMD_UNIT=web.service"]
    assert "db.service (origin-file)" in dump["Requires"]


def test_quadlet_file_is_read_by_systemd_as_exactly_the_intended_lines(systemd_analyze, tmp_path):
    """systemd ignores a [Container] section whole; read as [Service] keys, each of its lines
    is either parsed (Environment=, EnvironmentFile=: the same syntax as quadlet's) or named
    as an unknown key with its line number: together, every line systemd's parser sees."""
    text = render_unit(_hostile(), "quadlet", SERVICE_DIR, False, podman=PODMAN["quadlet"])
    as_service = text.replace("\n[Container]\n", "\n[Service]\n")
    as_service += "[Service]\nExecStart=/bin/true\n"
    complaints, dump = _systemd_reads(systemd_analyze, tmp_path, as_service)
    lines = text.split("\n")
    unknown = [
        re.fullmatch(r"(\d+): Unknown key '(\w+)' in section \[Service\], ignoring\.", c)
        for c in complaints
    ]
    assert all(unknown), complaints
    seen = [(int(m[1]), m[2]) for m in unknown]
    assert [key for _, key in seen] == [
        "ContainerName",
        "Image",
        "Network",
        "PublishPort",
        "Volume",
        "Volume",
        "AddDevice",
        "PodmanArgs",
        "HealthInterval",
        "Notify",
        "Exec",
    ]
    # Each on the line we wrote it on: no value started a line of its own.
    assert all(lines[n - 1].startswith(f"{key}=") for n, key in seen)
    # quadlet hands these to podman run in ExecStart, where "$$" is read as "$".
    assert [v.replace("$$", "$") for v in dump["Environment"]] == [
        f"V{i}={v}" for i, v in enumerate(HOSTILE_TEXT)
    ]
    assert dump["EnvironmentFile"] == [f"{SERVICE_DIR}/secrets.env"]
    assert [_argv(c) for c in dump["ExecStart"]] == [["/bin/true"]]
    assert "ExecStartPre" not in dump
    assert dump["Restart"] == ["always"]


# --- fuzz: random printable and control text through every unit field ----------------------

# Each field a value can reach a unit through, as a function of the value (and the value that
# gives the baseline: the lines every accepted value must render to).
FIELDS = {
    "name": lambda v: {"name": v},
    "image": lambda v: {"image": f"docker.io/library/{v}:1"},
    "image_tag": lambda v: {"image": f"docker.io/library/nginx:{v}"},
    "command": lambda v: {"command": ["run", v]},
    "env": lambda v: {"env": {"A": v}},
    "healthcheck": lambda v: {"healthcheck": {"command": v}},
    "interval": lambda v: {"healthcheck": {"command": "true", "interval": v}},
    "host_ip": lambda v: {"ports": [{"host": 1, "container": 2, "host_ip": v}]},
    "source": lambda v: {"volumes": [{"source": v, "target": "/d"}]},
    "volume": lambda v: {"volumes": [{"volume": v, "target": "/d"}]},
    "target": lambda v: {"volumes": [{"volume": "data", "target": "/" + v}]},
    "device": lambda v: {"devices": [v]},
    "device_cdi": lambda v: {"devices": [f"nvidia.com/gpu={v}"]},
    "network": lambda v: {"network": v},
    "requires": lambda v: {"requires": [v]},
    "shm_size": lambda v: {"shm_size": v},
    "container_user": lambda v: {"container_user": v},
    "working_dir": lambda v: {"working_dir": "/" + v},
    "hostname": lambda v: {"hostname": v},
    "tmpfs": lambda v: {"tmpfs": [{"target": "/" + v, "size": "1m"}]},
    "label_key": lambda v: {"labels": {v: "x"}},
    "label": lambda v: {"labels": {"a": v}},
    "ulimit": lambda v: {"ulimits": {"nofile": v}},
    "sysctl": lambda v: {"sysctls": {"net.core.somaxconn": v}},
    "cap_add": lambda v: {"cap_add": [v]},
    "log_tag": lambda v: {"log_opts": {"tag": v}},
}
BENIGN = {
    "interval": "1s",
    "host_ip": "::1",
    "target": "d",
    "device": "/dev/null",
    "shm_size": "1m",
    "tmpfs": "t",
    "working_dir": "w",
    "ulimit": "1",
    "sysctl": "1",
    "cap_add": "chown",
}
ALPHABET = [chr(c) for c in range(0x20, 0x7F)] + list("\r\n\t\0\x0b\x0c\x1b\x7f\x85\u2028é")


def _lines(text: str) -> list[tuple[str, str]]:
    """(section, key) of every setting, read as systemd reads a unit: a line ends at LF, CR
    or NUL, a trailing backslash continues it, '#' and ';' start comments."""
    keys, section, pending = [], None, ""
    for raw in re.split(r"\r\n|[\n\r\0]", text):
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        keys.append((section, line.split("=", 1)[0]))
    return keys


def _service_or_none(fields: dict) -> Service | None:
    base = _base(**{"requires": [], **fields})
    if "requires" in fields:
        base["network"] = None
    try:
        return Service.model_validate(base)
    except ValidationError:
        return None


def test_fuzz_every_unit_field_is_refused_or_rendered_as_the_intended_lines():
    rng = random.Random(20)
    accepted = refused = 0
    for field, make in FIELDS.items():
        baseline = _service_or_none(make(BENIGN.get(field, "ok1")))
        assert baseline is not None, field
        wanted = {
            r: _lines(render_unit(baseline, r, SERVICE_DIR, False, podman=PODMAN[r]))
            for r in ("plain", "quadlet")
        }
        for _ in range(150):
            value = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12)))
            svc = _service_or_none(make(value))
            if svc is None:
                refused += 1
                continue
            accepted += 1
            for rendering, keys in wanted.items():
                text = render_unit(svc, rendering, SERVICE_DIR, False, podman=PODMAN[rendering])
                assert _lines(text) == keys, (field, value, rendering)
    # Both outcomes occur: the fuzz reaches the renderer, not only the validation.
    assert accepted > 200 and refused > 1000, (accepted, refused)


def test_runtime_options_reach_podman_as_exactly_the_intended_words(systemd_analyze, tmp_path):
    from tests.test_templates import RUNTIME, RUNTIME_ARGS

    svc = Service.model_validate({**_base(), **RUNTIME, "name": "web"})
    text = render_unit(svc, "plain", SERVICE_DIR, False, podman=PODMAN["plain"])
    complaints, dump = _systemd_reads(systemd_analyze, tmp_path, text)
    assert complaints == []
    argv = _argv(dump["ExecStart"][0])
    start = argv.index(RUNTIME_ARGS[0])
    assert argv[start : start + len(RUNTIME_ARGS)] == RUNTIME_ARGS
    assert dump["TimeoutStopSec"] == ["3min"]


def test_the_health_gate_reaches_sh_as_exactly_the_script(systemd_analyze, tmp_path):
    from operations.services import HEALTH_GATE

    svc = Service.model_validate(
        _base(healthcheck={"command": "pg_isready", "interval": "2s", "retries": 2})
    )
    text = render_unit(svc, "plain", SERVICE_DIR, False, podman=PODMAN["plain"])
    complaints, dump = _systemd_reads(systemd_analyze, tmp_path, text)
    assert complaints == []
    assert [_argv(c) for c in dump["ExecStartPost"]] == [
        ["/bin/sh", "-c", HEALTH_GATE, "health-gate", "web", str(2 * (2 + 30) + 1)]
    ]
    assert dump["TimeoutStartSec"] == ["2min 35s"]  # 65 s budget, a 30 s check, a minute


@pytest.mark.parametrize("calendar", ["*:0/5", "daily", "Mon..Fri *-*-* 03:00", "*-*-1 04:30 UTC"])
def test_a_timer_and_its_job_are_read_by_systemd_as_intended(systemd_analyze, tmp_path, calendar):
    from operations.services import render_timer

    svc = Service.model_validate(
        {
            "name": "web",
            "image": "docker.io/library/nginx:1.27.3",
            "timers": [
                {
                    "name": "cron",
                    "on_calendar": calendar,
                    "command": HOSTILE_TEXT,
                    "container_user": "www-data",
                }
            ],
        }
    )
    timer, job = render_timer(svc, svc.timers[0])
    (tmp_path / "web-cron.timer").write_text(timer)
    complaints, dump = _systemd_reads(systemd_analyze, tmp_path, job)
    assert complaints == []
    assert [_argv(c) for c in dump["ExecStart"]] == [
        ["/usr/bin/podman", "exec", "--user=www-data", "web", *HOSTILE_TEXT]
    ]
    assert "db.service (origin-file)" not in dump.get("Requires", [])
    # systemd's own reading of the calendar spec written into OnCalendar=.
    on_calendar = [line for line in timer.splitlines() if line.startswith("OnCalendar=")]
    assert on_calendar == [f"OnCalendar={calendar}"]
    run = subprocess.run(
        [systemd_analyze, "calendar", calendar], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
