"""The workstation pattern (standard §2.3, §3.2) on Debian 12 (podman 4.3, podman-compose 1.0.3)
and Debian 13 (podman 5.4, podman-compose 1.3.0) workstation guests booted from the ``podman``
image variant, both at once:

- a rootless project (vagrant) from the user's own compose file and .env already on the host
  (left in place) and a root project from a compose file and .env on the controller (copied)
  come up with their boot units enabled and active; vagrant's podman.socket answers Docker API
  requests and a login shell of vagrant has DOCKER_HOST pointing at it;
- a second run changes nothing; a guest reboot with no pyinfra run brings both projects back
  (no restart policy in the files: the units do it);
- a changed .env (the host's own and the controller's) re-creates only the service that reads
  the variable;
- a project whose container exits (and, on podman-compose 1.3.0, hangs ``up -d`` in
  ``podman wait --condition=running`` for it) fails the run within its timeout, naming the
  container and printing its log;
- removal leaves no unit (system or user) and keeps the user's own files.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from testbed.fleet import GuestSpec, Testbed
from tests.realhost.conftest import _TIMINGS
from tests.realhost.tier import on_each

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both releases at once: runs alone (tests/realhost/tier.py)
MINUTES = 15.9  # a full tier run, 2026-12-02: 954 s (tier.py balances the lanes)

SPECS = [
    GuestSpec("bookworm", "workstation", "podman"),
    GuestSpec("trixie", "workstation", "podman"),
]
NAMES = [spec.name for spec in SPECS]
DEPLOYS = ("deploys/podman_standard.py", "deploys/compose.py")
USER_DIR = "/home/vagrant/userstack"
USER_PORT, ROOT_PORT = 8091, 8092
SOCKET = "/run/user/1000/podman/podman.sock"
BROKEN_TIMEOUT = 30

USER_COMPOSE = f"""\
# The user's own file: no restart policy, so only the boot unit brings it back.
services:
  web:
    image: docker.io/library/nginx:alpine
    ports:
      - "127.0.0.1:{USER_PORT}:80"
    environment:
      GREETING: ${{GREETING}}
  worker:
    image: docker.io/library/alpine:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""
ROOT_COMPOSE = f"""\
services:
  app:
    image: docker.io/library/nginx:alpine
    ports:
      - "127.0.0.1:{ROOT_PORT}:80"
    environment:
      COLOUR: ${{COLOUR}}
  cache:
    image: docker.io/library/alpine:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"""
# `dead` exits at once; `waiter` depends on it: podman-compose 1.3.0's `up -d` waits for `dead`
# to run (podman wait --condition=running), without end.
BROKEN_COMPOSE = """\
services:
  dead:
    image: docker.io/library/alpine:latest
    command: ["sh", "-c", "echo 'dead: exiting now'; exit 3"]
  waiter:
    image: docker.io/library/alpine:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    depends_on:
      - dead
"""
# A raw HTTP/1.1 client of the Docker API over a unix socket (python3 is on every guest).
API_CLIENT = """\
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])
out = {}
for path in ("/_ping", "/v1.41/containers/json"):
    conn = Unix("localhost", timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    out[path] = [response.status, response.read().decode()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def bed(registry, no_shared_guests, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workstation")
    testbed = Testbed(SPECS, workdir, workdir / "hosts.json", registry=registry)
    testbed.timings = _TIMINGS
    testbed.up()
    testbed.controller = workdir / "controller"
    testbed.controller.mkdir()
    try:
        yield testbed
    finally:
        testbed.down()


def write_user_files(bed, greeting: str) -> None:
    """The developer's own compose file and .env in vagrant's home, written on the guests."""
    script = (
        f"mkdir -p {USER_DIR} && printf %s {shlex.quote(USER_COMPOSE)} > "
        f"{USER_DIR}/docker-compose.yml && printf 'GREETING=%s\\n' {greeting} > {USER_DIR}/.env"
    )
    on_each(NAMES, lambda name: bed.guests[name].run(script, check=True))


def projects(bed, colour: str = "red", broken: bool = False, present: bool = True) -> list:
    ctl = bed.controller
    (ctl / "docker-compose.yml").write_text(ROOT_COMPOSE)
    (ctl / ".env").write_text(f"COLOUR={colour}\n")
    (ctl / "broken.yml").write_text(BROKEN_COMPOSE)
    entries = [
        {
            "name": "userstack",
            "user": "vagrant",
            "file": {"host_path": f"{USER_DIR}/docker-compose.yml"},
            "files": {".env": {"host_path": f"{USER_DIR}/.env"}},
            "present": present,
        },
        {
            "name": "rootstack",
            "file": {"src": str(ctl / "docker-compose.yml")},
            "files": {".env": {"src": str(ctl / ".env")}},
            "present": present,
        },
    ]
    if broken or not present:
        entries.append(
            {
                "name": "broken",
                "file": {"src": str(ctl / "broken.yml")},
                "timeout": BROKEN_TIMEOUT,
                "present": present,
            }
        )
    return entries


def deploy(bed, entries: list, stage: str, phases=("services",)):
    """Run the deploys with ``entries``; the first run also configures (registries, rootless
    users), the later ones bring up projects only."""
    for name in NAMES:
        bed.data_overrides[name] = {
            "podman_phases": list(phases),
            "podman_socket_enabled": False,
            "podman_rootless_users": [{"name": "vagrant", "docker_api": True}],
            "podman_compose_projects": entries,
        }
    bed.write_state()
    with _TIMINGS.stage(stage):
        return bed.pyinfra("--no-wait", deploy=DEPLOYS)


def changed(result: dict) -> list[tuple[str, int]]:
    return [
        (op["name"].rsplit(" | ", 1)[-1], len(op["success"]))
        for op in result["results"]["operations"]
        if op["success"]
    ]


def ids(guest, project: str, root: bool = False) -> dict[str, tuple[str, str]]:
    """service -> (container id, state) of ``project``'s containers (podman's JSON: its
    ``{{.State}}`` template word is "Up" on 4.3, "running" on 5)."""
    ps = f"podman ps -a --filter label=io.podman.compose.project={project} --format json"
    out = guest.run(f"sudo {ps}" if root else ps, check=True).stdout
    return {
        c["Labels"]["com.docker.compose.service"]: (c["Id"], c["State"].lower())
        for c in json.loads(out or "[]") or []
    }


def http_get(guest, port: int) -> str:
    script = (
        "import urllib.request; "
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=10).status)"
    )
    result = guest.run(f"python3 -c {shlex.quote(script)}")
    return result.stdout.strip() or result.stderr.strip()[-300:]


def unit(guest, name: str, user: bool) -> dict[str, str]:
    scope = "--user " if user else ""
    result = guest.run(
        f"systemctl {scope}show -p ActiveState,UnitFileState,Result {name}", check=not user
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def wait_up(guest, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        user, root = ids(guest, "userstack"), ids(guest, "rootstack", root=True)
        states = [s for _, s in user.values()] + [s for _, s in root.values()]
        if len(states) == 4 and all(s == "running" for s in states):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{guest.name}: projects not running {timeout}s after boot: {user} {root}")
        time.sleep(5)


@pytest.fixture(scope="module")
def first_run(bed):
    write_user_files(bed, "one")
    returncode, result, stderr = deploy(
        bed, projects(bed), "first run: registries + 2 projects", phases=("config", "services")
    )
    assert returncode == 0, stderr[-6000:]
    return result


def test_both_projects_come_up_with_their_boot_units(bed, first_run):
    names = [op for op, _ in changed(first_run)]
    assert "Compose project userstack" in names and "Compose project rootstack" in names, names

    def check(name):
        guest = bed.guests[name]
        for project, root in (("userstack", False), ("rootstack", True)):
            found = ids(guest, project, root)
            assert sorted(found) == (["web", "worker"] if not root else ["app", "cache"]), found
            assert all(state == "running" for _, state in found.values()), (name, found)
        assert http_get(guest, USER_PORT) == "200" and http_get(guest, ROOT_PORT) == "200"
        user_unit = unit(guest, "podman-compose-userstack.service", user=True)
        root_unit = unit(guest, "podman-compose-rootstack.service", user=False)
        for state in (user_unit, root_unit):
            assert (state["ActiveState"], state["UnitFileState"]) == ("active", "enabled"), state
        # The user's own file stays where it is; the controller's is copied beside its .env.
        mode = guest.run(
            "sudo stat -c '%a %U %n' /srv/containers/compose/rootstack/compose.yaml"
            " /srv/containers/compose/rootstack/.env",
            check=True,
        ).stdout.split("\n")
        assert mode[0].split()[:2] == ["644", "root"] and mode[1].split()[:2] == ["600", "root"]

    on_each(NAMES, check)


def test_the_users_socket_answers_docker_api_requests(bed, first_run):
    def check(name):
        guest = bed.guests[name]
        result = guest.run(f"python3 -c {shlex.quote(API_CLIENT)} {SOCKET}")
        assert result.returncode == 0, (name, result.stderr[-2000:])
        answers = json.loads(result.stdout)
        assert answers["/_ping"] == [200, "OK"], answers["/_ping"]
        status, body = answers["/v1.41/containers/json"]
        assert status == 200
        listed = sorted(n.lstrip("/") for c in json.loads(body) for n in c["Names"])
        user_containers = sorted(
            guest.run("podman ps --format '{{.Names}}'", check=True).stdout.split()
        )
        assert listed == user_containers and len(listed) == 2, (listed, user_containers)
        login = guest.run("bash -lc 'echo $DOCKER_HOST'", check=True).stdout.strip()
        assert login == f"unix://{SOCKET}", login
        state = unit(guest, "podman.socket", user=True)
        assert (state["ActiveState"], state["UnitFileState"]) == ("active", "enabled"), state

    on_each(NAMES, check)


def test_a_second_run_changes_nothing(bed, first_run):
    before = {
        n: (ids(bed.guests[n], "userstack"), ids(bed.guests[n], "rootstack", True)) for n in NAMES
    }
    returncode, result, stderr = deploy(bed, projects(bed), "second run (no change)")
    assert returncode == 0, stderr[-6000:]
    assert changed(result) == []
    for name in NAMES:
        guest = bed.guests[name]
        assert (ids(guest, "userstack"), ids(guest, "rootstack", True)) == before[name]


def test_projects_survive_a_reboot_without_a_run(bed, first_run):
    before = {
        n: (ids(bed.guests[n], "userstack"), ids(bed.guests[n], "rootstack", True)) for n in NAMES
    }

    def reboot(name):
        bed.guests[name].reboot(timeout=600)
        wait_up(bed.guests[name])

    with _TIMINGS.stage("reboot both guests, projects up"):
        on_each(NAMES, reboot)

    def check(name):
        guest = bed.guests[name]
        # The same containers, started again by the units (no re-creation at boot).
        after = (ids(guest, "userstack"), ids(guest, "rootstack", True))
        assert [{s: c for s, (c, _) in p.items()} for p in after] == [
            {s: c for s, (c, _) in p.items()} for p in before[name]
        ]
        assert http_get(guest, USER_PORT) == "200" and http_get(guest, ROOT_PORT) == "200"
        assert unit(guest, "podman-compose-userstack.service", user=True)["ActiveState"] == "active"

    on_each(NAMES, check)


def test_a_changed_env_recreates_only_what_reads_it(bed, first_run):
    before = {
        n: (ids(bed.guests[n], "userstack"), ids(bed.guests[n], "rootstack", True)) for n in NAMES
    }
    write_user_files(bed, "two")
    returncode, result, stderr = deploy(bed, projects(bed, colour="blue"), "changed .env run")
    assert returncode == 0, stderr[-6000:]
    assert sorted(op for op, _ in changed(result)) == [
        "Compose project rootstack",
        "Compose project userstack",
    ], changed(result)

    def check(name):
        guest = bed.guests[name]
        user, root = ids(guest, "userstack"), ids(guest, "rootstack", True)
        old_user, old_root = before[name]
        listing = guest.run("podman ps -a --format '{{.Names}} {{.Status}}'").stdout
        journal = guest.run("sudo journalctl --no-pager -n 40 _UID=1000").stdout
        why = (name, user, old_user, listing, stderr[-3000:], journal[-3000:])
        assert sorted(user) == ["web", "worker"], why
        assert user["worker"][0] == old_user["worker"][0] and user["web"][0] != old_user["web"][0]
        assert root["cache"][0] == old_root["cache"][0] and root["app"][0] != old_root["app"][0]
        env = json.loads(guest.run(f"podman inspect {user['web'][0]}", check=True).stdout)
        assert "GREETING=two" in env[0]["Config"]["Env"]
        env = json.loads(guest.run(f"sudo podman inspect {root['app'][0]}", check=True).stdout)
        assert "COLOUR=blue" in env[0]["Config"]["Env"]

    on_each(NAMES, check)


def test_a_project_whose_container_exits_fails_the_run_in_time(bed, first_run):
    started = time.monotonic()
    returncode, _, stderr = deploy(bed, projects(bed, colour="blue", broken=True), "failing run")
    took = time.monotonic() - started
    assert returncode != 0
    assert "compose project broken: up failed" in stderr, stderr[-4000:]
    assert "dead: exiting now" in stderr, stderr[-4000:]  # the container's own log line
    # Both guests name the exited container (broken_dead_1, or broken-dead-1).
    assert stderr.count("dead_1 (") + stderr.count("dead-1 (") >= 2, stderr[-4000:]
    # podman-compose 1.3.0 (Debian 13) was stopped at the timeout, in its endless wait.
    assert "podman-compose up did not finish within the project's timeout" in stderr, stderr[-4000:]
    assert took < BROKEN_TIMEOUT + 180, took


def test_removal_leaves_no_unit_and_keeps_the_users_files(bed, first_run):
    returncode, result, stderr = deploy(bed, projects(bed, present=False), "removal run")
    assert returncode == 0, stderr[-6000:]

    def check(name):
        guest = bed.guests[name]
        units = guest.run(
            "sudo find /etc/systemd/system /home/vagrant/.config/systemd/user -name"
            " 'podman-compose-*'; systemctl list-units --all --plain 'podman-compose-*';"
            " systemctl --user list-units --all --plain 'podman-compose-*'"
        ).stdout
        assert "podman-compose-" not in units, units
        assert ids(guest, "userstack") == {} and ids(guest, "rootstack", True) == {}
        assert ids(guest, "broken", True) == {}
        assert (
            guest.run(f"test -f {USER_DIR}/docker-compose.yml -a -f {USER_DIR}/.env").returncode
            == 0
        )
        assert (
            guest.run("sudo test -e /srv/containers/compose/rootstack/compose.yaml").returncode == 1
        )

    on_each(NAMES, check)
