"""The baseline converges fresh Debian 12 and 13 guests, they meet the standard's QA
criteria (§7.3, §8.1, §8.2), a second run changes nothing, and bad data touches nothing. Then
`--dry --diff` after a change of one registry mirror, one storage setting and one service's env
and secret shows exactly those diffs (the secret's only as changing) and changes nothing; a run
applies them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

from tests.realhost.tier import on_each

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)
MINUTES = 12.1  # a full tier run, 2026-12-02: 726 s (tier.py balances the lanes)

SERVER = "bookworm-server"
WORKSTATION = "trixie-workstation"
ALPINE = "docker.io/library/alpine:latest"


@pytest.fixture(scope="module")
def hosts(testbed, converged, ssh_config):
    """testinfra hosts over SSH (the guests' forwarded loopback ports), by guest name."""
    return {
        name: testinfra.get_host(f"ssh://{name}", ssh_config=str(ssh_config), sudo=True)
        for name in testbed.guests
    }


def test_first_run_converges(converged):
    results = converged["results"]
    assert results["failed_hosts"] == []
    assert results["totals"]["error"] == 0
    assert results["totals"]["success"] > 0


@pytest.mark.parametrize("name", [SERVER, WORKSTATION])
def test_podman_and_docker_cli(hosts, name):
    host = hosts[name]
    version = host.check_output("podman --version")
    assert version.startswith("podman version ")
    # §8.2: `docker --version` shows podman, `docker ps` works through the compatibility layer.
    assert host.check_output("docker --version") == version
    assert host.run("docker ps").rc == 0
    wrapper = host.file("/usr/local/bin/docker")
    assert (wrapper.user, wrapper.group, wrapper.mode) == ("root", "root", 0o755)


def test_docker_run_pulls_through_the_registry_mirror(hosts):
    # docker.io is unreachable here: the pull can only succeed through the mirror row of
    # the registries drop-in, which points docker.io at the testbed's local registry.
    def check(name):
        host = hosts[name]
        assert host.check_output(f"docker run --rm {ALPINE} echo ok") == "ok", name
        assert "podman-compose" in host.check_output("docker compose version"), name

    on_each((SERVER, WORKSTATION), check)


@pytest.mark.parametrize("name", [SERVER, WORKSTATION])
def test_no_docker_daemon(hosts, name):
    assert hosts[name].run("systemctl is-active docker.service").rc != 0
    assert not hosts[name].exists("dockerd")


@pytest.mark.parametrize("name", [SERVER, WORKSTATION])
def test_registries_configured(hosts, name):
    info = json.loads(hosts[name].check_output("podman info --format json"))
    search = info["registries"]["search"]
    assert search == ["docker.io", "quay.io", "ghcr.io"]


def test_server_graphroot_on_the_second_disk(hosts):
    host = hosts[SERVER]
    info = json.loads(host.check_output("podman info --format json"))
    assert info["store"]["graphRoot"] == "/space/containers/engine/podman"
    assert info["store"]["configFile"] == "/etc/containers/storage.conf"
    assert host.mount_point("/space").device == "/dev/vdb"
    assert host.mount_point("/space").filesystem == "ext4"


def test_workstation_keeps_the_default_graphroot(hosts):
    info = json.loads(hosts[WORKSTATION].check_output("podman info --format json"))
    assert info["store"]["graphRoot"] == "/var/lib/containers/storage"


PING = (
    'python3 -c "import socket; s=socket.socket(socket.AF_UNIX); '
    "s.connect('/run/podman/podman.sock'); "
    "s.sendall(b'GET /_ping HTTP/1.0\\r\\nHost: d\\r\\n\\r\\n'); "
    "print(s.recv(4096).decode().split('\\r\\n\\r\\n')[-1])\""
)


def test_server_api_socket_answers_ping(hosts):
    host = hosts[SERVER]
    assert host.service("podman.socket").is_enabled
    assert host.check_output(PING) == "OK"


def test_rootless_user_runs_a_container(testbed, converged):
    def check(name):
        guest = testbed.guests[name]
        # As vagrant, without sudo: user namespace from the subuid range, linger on.
        result = guest.run(f"podman run --rm {ALPINE} id -u", timeout=900)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.strip() == "0", name
        assert guest.run("test -e /var/lib/systemd/linger/vagrant").returncode == 0, name

    on_each((SERVER, WORKSTATION), check)


def test_second_run_changes_nothing(testbed, converged, hosts):
    returncode, result, stderr = testbed.pyinfra()
    assert returncode == 0, stderr[-4000:]
    changed = [
        (op["name"], op["success"]) for op in result["results"]["operations"] if op["success"]
    ]
    assert changed == []
    assert result["results"]["totals"]["success"] == 0
    assert result["results"]["totals"]["error"] == 0


def test_bad_data_touches_no_host(testbed, converged):
    guest = testbed.guests[SERVER]
    # Every command pyinfra sends here runs through sudo, which logs it with COMMAND=.
    sudo_log = "sudo journalctl -q --no-pager _COMM=sudo | grep COMMAND= | grep -vc journalctl"
    before = guest.run(sudo_log).stdout
    returncode, result, stderr = testbed.pyinfra("--data", "podman_graphroot=relative/path")
    assert returncode != 0
    assert "Invalid host data, nothing was run on any host" in stderr
    assert "podman_graphroot (--data override)" in stderr
    assert guest.run(sudo_log).stdout == before


# --- what --dry --diff shows, and that a run then applies exactly that -----------------------

DIFF_SERVICE = "diffdemo"
TOKEN_ENV = "PODMAN_STANDARD_DIFF_TOKEN"
TOKENS = ("tok-first-4f1c", "tok-second-9a7e")  # the secret before and after; never printed
GRAPHROOT = "/var/lib/containers/storage-diff"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _service(greeting: str, present: bool = True) -> list[dict]:
    if not present:
        return [{"name": DIFF_SERVICE, "present": False, "remove_data": True}]
    return [
        {
            "name": DIFF_SERVICE,
            "image": ALPINE,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            "env": {"GREETING": greeting},
            "secrets": {"TOKEN": {"env": TOKEN_ENV}},
        }
    ]


def _pyinfra_text(testbed, *args, token: str, deploy: str = "deploys/linux_baseline.py"):
    """pyinfra as an operator runs it (no --json, and without -y for --dry: pyinfra then
    plans every operation before it prints the changes), output without colour codes."""
    command = [sys.executable, "-m", "pyinfra", *args, str(testbed.inventory_path), deploy]
    with testbed.timings.stage(f"pyinfra {' '.join(args)}"):
        result = subprocess.run(
            command,
            cwd=Path(__file__).resolve().parents[2],
            env={**testbed.pyinfra_env(), TOKEN_ENV: token},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=1200,
        )
    return result.returncode, ANSI.sub("", result.stdout + result.stderr)


def _diff(output: str) -> tuple[list[str], list[str]]:
    """("[host] Will …" lines, the diffs' "- "/"+ " lines with their whitespace folded)."""
    # pyinfra pads each "[host]" prefix to the longest host name.
    lines = [" ".join(line.split()) for line in output.splitlines()]
    will = [line for line in lines if re.match(r"\[[\w-]+\] Will ", line)]
    changes = [line for line in lines if line.startswith(("- ", "+ "))]
    return will, changes


def _snapshot(testbed, paths: dict[str, list[str]]) -> dict:
    """Checksums of the files, and the service's container (id and GREETING), per guest."""
    state = {}
    for name, files in paths.items():
        guest = testbed.guests[name]
        sums = guest.run(f"sudo sha256sum {' '.join(files)}", check=True).stdout
        state[name] = sums
    state["container"] = (
        testbed.guests[SERVER]
        .run(
            f"sudo podman inspect --format '{{{{.Id}}}} {{{{.Config.Env}}}}' {DIFF_SERVICE}",
            check=True,
        )
        .stdout
    )
    return state


def test_dry_diff_shows_exactly_the_change_then_a_run_applies_it(testbed, converged):
    registry = testbed.registry.guest_address
    server, workstation = testbed.guests[SERVER], testbed.guests[WORKSTATION]
    root = "/space/containers/apps"  # the server is in motoko's group
    unit = f"/etc/systemd/system/{DIFF_SERVICE}.service"  # Debian 12: podman 4.3, plain unit
    secrets = f"{root}/{DIFF_SERVICE}/secrets.env"
    dropin = "/etc/containers/registries.conf.d/50-podman-standard.conf"
    storage = "/etc/containers/storage.conf"
    original = workstation.run(f"sudo cat {storage}", check=True).stdout

    # A service to change: created first, with its secret.
    testbed.data_overrides[SERVER] = {"podman_services": _service("one")}
    testbed.write_state()
    rc, out = _pyinfra_text(
        testbed, "-y", "--limit", SERVER, token=TOKENS[0], deploy="deploys/services.py"
    )
    assert rc == 0, out[-4000:]

    # One registry mirror (a second, after the working one), one storage setting, one env.
    mirrors = [{"location": registry, "insecure": True}, {"location": "10.0.2.2:1"}]
    registries = {
        "search": ["docker.io", "quay.io", "ghcr.io"],
        "short_name_mode": "enforcing",
        "registries": [{"prefix": "docker.io", "location": "docker.io", "mirrors": mirrors}],
    }
    testbed.data_overrides[SERVER] = {
        "podman_services": _service("two"),
        "podman_registries": registries,
    }
    # The old store keeps the images the tests above pulled (podman_existing_store: leave).
    testbed.data_overrides[WORKSTATION] = {
        "podman_graphroot": GRAPHROOT,
        "podman_existing_store": "leave",
    }
    testbed.write_state()
    paths = {SERVER: [dropin, unit, secrets], WORKSTATION: [storage]}
    before = _snapshot(testbed, paths)

    rc, out = _pyinfra_text(testbed, "--dry", "--diff", token=TOKENS[1])
    assert rc == 0, out[-4000:]
    will, changes = _diff(out)
    assert sorted(will) == sorted(
        [
            f"[{SERVER}] Will modify {dropin}",
            f"[{SERVER}] Will modify {unit}",
            f"[{SERVER}] Will modify {secrets} (holds secrets: content not shown)",
            f"[{WORKSTATION}] Will modify {storage}",
        ]
    ), out[-6000:]
    assert sorted(changes) == sorted(
        [
            '+ { location = "10.0.2.2:1" },',
            '- --env "GREETING=one" \\',
            '+ --env "GREETING=two" \\',
            '- graphroot = "/var/lib/containers/storage"',
            f'+ graphroot = "{GRAPHROOT}"',
        ]
    ), out[-6000:]
    assert not any(token in out for token in TOKENS)
    assert _snapshot(testbed, paths) == before, "--dry changed the guests"

    # The real run applies exactly that, and shows it again as it goes.
    rc, out = _pyinfra_text(testbed, "-y", "--diff", "--no-wait", token=TOKENS[1])
    assert rc == 0, out[-4000:]
    assert sorted(_diff(out)[1]) == sorted(changes)
    assert not any(token in out for token in TOKENS)
    assert "10.0.2.2:1" in server.run(f"cat {dropin}", check=True).stdout
    assert f'graphroot = "{GRAPHROOT}"' in workstation.run(f"cat {storage}", check=True).stdout
    env = server.run(f"sudo podman exec {DIFF_SERVICE} env", check=True).stdout.split()
    assert "GREETING=two" in env and f"TOKEN={TOKENS[1]}" in env

    # Back to the module's data (the verify module uses these guests next).
    testbed.data_overrides[SERVER] = {"podman_services": _service("", present=False)}
    testbed.data_overrides.pop(WORKSTATION)
    testbed.write_state()
    rc, out = _pyinfra_text(testbed, "-y", "--no-wait", token="")
    assert rc == 0, out[-4000:]
    testbed.data_overrides.pop(SERVER)
    testbed.write_state()
    assert workstation.run(f"sudo cat {storage}", check=True).stdout == original
    assert server.run(f"test -e {unit}").returncode != 0
