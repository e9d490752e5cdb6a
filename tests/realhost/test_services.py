"""Services (standard §3.1, §7.2) on converged guests booted from the converge snapshot:
a three-service stack with dependencies, as plain units on Debian 12 (podman 4.3) and as
quadlet files on Debian 13 (podman 5), comes up, survives a reboot, is left alone by a
no-change run, is restarted when its definition changes and goes away with ``present: false``;
a compose project (the workstation pattern) comes up with podman-compose, a re-run changes
nothing, and ``docker compose`` / ``docker-compose`` work through the wrapper."""

import base64
import json
import time

import pytest

from tests.realhost.tier import on_each

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)

PLAIN = "bookworm-server"  # podman 4.3: generated plain units
QUADLET = "trixie-workstation"  # podman 5: quadlet
GUESTS = (PLAIN, QUADLET)
ROOT = "/srv/containers/apps"
STACK = ("stack-db", "stack-cache", "stack-app")
APP_PORT = 8089
COMPOSE_PORT = 8088
SERVICES = "deploys/services.py"
COMPOSE = "deploys/compose.py"


def stack(marker: str = "one", present: bool = True) -> list[dict]:
    """db and cache on a shared network; app requires both and publishes a port. ``marker``
    changes only the cache's definition."""
    if not present:
        return [
            {"name": name, "present": False, "remove_data": True, "network": "stack"}
            for name in reversed(STACK)
        ]
    return [
        {
            "name": "stack-db",
            "image": "docker.io/library/busybox:latest",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/data"],
            "volumes": [{"source": "data", "target": "/data"}],
            "network": "stack",
        },
        {
            "name": "stack-cache",
            "image": "docker.io/library/alpine:latest",
            "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            "env": {"MARKER": marker},
            "network": "stack",
        },
        {
            "name": "stack-app",
            "image": "docker.io/library/nginx:alpine",
            "requires": ["stack-db", "stack-cache"],
            "ports": [{"host": APP_PORT, "container": 80, "host_ip": "127.0.0.1"}],
            "network": "stack",
        },
    ]


def project(greeting: str = "hello", present: bool = True) -> list[dict]:
    return [
        {
            "name": "devstack",
            "template": "web-stack.yaml.j2",
            "user": "vagrant",
            "present": present,
            "vars": {
                "web_image": "docker.io/library/nginx:alpine",
                "worker_image": "docker.io/library/alpine:latest",
                "port": COMPOSE_PORT,
                "greeting": greeting,
            },
        }
    ]


@pytest.fixture(scope="module")
def bed(converged_testbed):
    testbed = converged_testbed("services")
    try:
        yield testbed
    finally:
        testbed.down()


def deploy(bed, deploy_file, **data):
    """Run ``deploy_file`` with ``data`` (podman_* keys without the prefix) on both guests;
    return (operation name, hosts it changed) of every operation that changed something."""
    data = {"service_root": ROOT, **data}  # the server's motoko group data says /space/...
    for name in GUESTS:
        bed.data_overrides[name] = {f"podman_{k}": v for k, v in data.items()}
    bed.write_state()
    returncode, result, stderr = bed.pyinfra("--no-wait", deploy=deploy_file)
    assert returncode == 0, stderr[-6000:]
    assert result["results"]["totals"]["error"] == 0, stderr[-6000:]
    # pyinfra's JSON: "Deploy | Operation" names, "success" lists the hosts it changed.
    return [
        (op["name"].rsplit(" | ", 1)[-1], len(op["success"]))
        for op in result["results"]["operations"]
        if op["success"]
    ]


def units(guest, names=STACK) -> dict[str, dict[str, str]]:
    """systemctl show of each unit: its state, invocation id and start time."""
    props = "ActiveState,InvocationID,ActiveEnterTimestampMonotonic,UnitFileState,SourcePath"
    out = {}
    for name in names:
        result = guest.run(f"systemctl show -p {props} {name}.service", check=True)
        out[name] = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return out


def http_get(guest, port: int) -> str:
    """The page served on the guest's loopback ``port`` (python3 is in every testbed image)."""
    script = (
        "import urllib.request; "
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=10).status)"
    )
    result = guest.run(f"python3 -c {json.dumps(script)}")
    return result.stdout.strip() or result.stderr.strip()[-300:]


def wait_active(guest, names=STACK, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        state = units(guest, names)
        if all(u["ActiveState"] == "active" for u in state.values()):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{guest.name}: not all active after {timeout}s: {state}")
        time.sleep(5)


def test_stack_comes_up_in_both_renderings(bed):
    changed = deploy(bed, SERVICES, services=stack())
    assert changed, "the first run must create the services"

    def check(name):
        guest = bed.guests[name]
        state = wait_active(guest)
        if name == QUADLET:
            assert state["stack-app"]["SourcePath"] == "/etc/containers/systemd/stack-app.container"
            assert guest.run("test -e /etc/systemd/system/stack-app.service").returncode == 1
        else:
            assert state["stack-app"]["UnitFileState"] == "enabled"
            assert state["stack-app"]["SourcePath"] == ""
        # Dependencies order the start: app after db and cache.
        started = {n: int(u["ActiveEnterTimestampMonotonic"]) for n, u in state.items()}
        assert started["stack-app"] >= max(started["stack-db"], started["stack-cache"]), started
        assert http_get(guest, APP_PORT) == "200"
        mode = guest.run(f"sudo stat -c '%a %U' {ROOT}/stack-db/data", check=True).stdout
        assert mode.split() == ["750", "root"]

    on_each(GUESTS, check)


def test_no_change_run_restarts_nothing(bed):
    before = on_each(GUESTS, lambda name: units(bed.guests[name]))
    assert deploy(bed, SERVICES, services=stack()) == []
    after = on_each(GUESTS, lambda name: units(bed.guests[name]))
    for name in GUESTS:
        for unit in STACK:
            assert after[name][unit]["InvocationID"] == before[name][unit]["InvocationID"], (
                name,
                unit,
            )


def test_stack_survives_a_reboot(bed):
    def check(name):
        guest = bed.guests[name]
        guest.reboot(timeout=600)
        state = wait_active(guest)
        started = {n: int(u["ActiveEnterTimestampMonotonic"]) for n, u in state.items()}
        assert started["stack-app"] >= max(started["stack-db"], started["stack-cache"]), started
        assert http_get(guest, APP_PORT) == "200"
        running = guest.run("sudo podman ps --format '{{.Names}}'", check=True).stdout.split()
        assert sorted(running) == sorted(STACK)

    on_each(GUESTS, check)


def test_changed_definition_restarts_what_changed(bed):
    before = on_each(GUESTS, lambda name: units(bed.guests[name]))
    changed = deploy(bed, SERVICES, services=stack(marker="two"))
    assert changed == [("Service stack-cache", len(GUESTS))], changed

    def check(name):
        guest = bed.guests[name]
        after = wait_active(guest)
        assert after["stack-cache"]["InvocationID"] != before[name]["stack-cache"]["InvocationID"]
        # The db does not depend on the cache: untouched. (The app requires the cache, so
        # systemd restarts it with it: Requires= propagates restarts.)
        assert after["stack-db"]["InvocationID"] == before[name]["stack-db"]["InvocationID"]
        inspect = json.loads(guest.run("sudo podman inspect stack-cache", check=True).stdout)
        assert "MARKER=two" in inspect[0]["Config"]["Env"]
        assert http_get(guest, APP_PORT) == "200"

    on_each(GUESTS, check)


def test_present_false_removes_the_stack(bed):
    deploy(bed, SERVICES, services=stack(present=False))

    def check(name):
        guest = bed.guests[name]
        state = units(guest)
        assert all(u["ActiveState"] == "inactive" for u in state.values()), state
        leftovers = guest.run(
            "sudo ls /etc/containers/systemd /etc/systemd/system 2>/dev/null | grep stack-;"
            f" sudo ls {ROOT}; sudo podman ps -a --format '{{{{.Names}}}}'",
        ).stdout.split()
        assert [item for item in leftovers if item.startswith("stack-")] == []
        # The network went with the last service that used it (file and podman network).
        networks = guest.run("sudo podman network ls --format '{{.Name}}'", check=True).stdout
        assert "stack" not in networks.split()
        assert guest.run("test -e /etc/containers/systemd/stack.network").returncode == 1

    on_each(GUESTS, check)
    assert deploy(bed, SERVICES, services=stack(present=False)) == []


def test_compose_project_comes_up_and_rerun_changes_nothing(bed):
    changed = deploy(bed, COMPOSE, compose_projects=project())
    assert changed == [("Compose project devstack", len(GUESTS))], changed

    def came_up(name):
        guest = bed.guests[name]
        # Rootless, as vagrant: the containers are the user's.
        every = guest.run("podman ps -a --format '{{.Names}}'", check=True).stdout.split()
        running = guest.run(
            "podman ps --filter status=running --format '{{.Names}}'", check=True
        ).stdout.split()
        assert len(every) == 2 and sorted(running) == sorted(every), (every, running)
        assert http_get(guest, COMPOSE_PORT) == "200"
        return guest.run("podman ps -q --no-trunc", check=True).stdout.split()

    ids = on_each(GUESTS, came_up)
    assert deploy(bed, COMPOSE, compose_projects=project()) == []
    for name in GUESTS:
        assert bed.guests[name].run("podman ps -q --no-trunc").stdout.split() == ids[name]
    # A changed compose file re-creates the services it changed (web's GREETING) and those
    # linked to them: worker depends on web, and podman-compose >= 1.1 (Debian 13) creates it
    # with --requires on web's container, so podman would not remove web alone
    # (templates/podman-standard-compose.py). Nothing is left of the old containers.
    changed = deploy(bed, COMPOSE, compose_projects=project(greeting="changed"))
    assert changed == [("Compose project devstack", len(GUESTS))], changed

    def recreated(name):
        guest = bed.guests[name]
        new_ids = guest.run("podman ps -q --no-trunc", check=True).stdout.split()
        assert len(new_ids) == 2 and not set(new_ids) & set(ids[name]), (name, new_ids, ids[name])
        # podman-compose labels each container with its service (1.0.3 and 1.3.0 alike).
        inspect = json.loads(
            guest.run(
                "podman inspect $(podman ps -q --filter label=com.docker.compose.service=web)",
                check=True,
            ).stdout
        )
        assert "GREETING=changed" in inspect[0]["Config"]["Env"]
        assert http_get(guest, COMPOSE_PORT) == "200"

    on_each(GUESTS, recreated)
    assert deploy(bed, COMPOSE, compose_projects=project(greeting="changed")) == []


def test_docker_compose_commands_run_podman_compose(bed):
    compose = (
        "services:\n  hello:\n    image: docker.io/library/alpine:latest\n"
        "    command: [sh, -c, \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\n"
    )

    def check(name):
        guest = bed.guests[name]
        encoded = base64.b64encode(compose.encode()).decode()
        guest.run(
            f"mkdir -p ~/dc && echo {encoded} | base64 -d > ~/dc/docker-compose.yml", check=True
        )
        for up, down in (
            ("docker compose up -d", "docker compose down"),
            ("docker-compose up -d", "docker-compose down"),
        ):
            result = guest.run(f"cd ~/dc && {up}", timeout=600)
            assert result.returncode == 0, (name, up, result.stderr[-2000:])
            ps = guest.run("podman ps --format '{{.Names}}'", check=True).stdout.split()
            assert any(n.startswith("dc_hello") or n.startswith("dc-hello") for n in ps), ps
            # `docker ps` is podman too: it lists the same container.
            assert guest.run("docker ps --format '{{.Names}}'").stdout.split() == ps
            assert guest.run(f"cd ~/dc && {down}", timeout=600).returncode == 0
            ps = guest.run("podman ps --format '{{.Names}}'", check=True).stdout.split()
            assert not any(n.startswith(("dc_hello", "dc-hello")) for n in ps), ps

    on_each(GUESTS, check)


def test_compose_project_removed(bed):
    changed = deploy(bed, COMPOSE, compose_projects=project(present=False))
    assert changed == [("Remove compose project devstack", len(GUESTS))], changed
    for name in GUESTS:
        guest = bed.guests[name]
        assert guest.run("podman ps -aq").stdout.split() == []
        assert (
            guest.run("sudo test -e /srv/containers/compose/devstack/compose.yaml").returncode == 1
        )
    assert deploy(bed, COMPOSE, compose_projects=project(present=False)) == []
