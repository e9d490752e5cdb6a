"""The baseline converges fresh Debian 12 and 13 guests, they meet the standard's QA
criteria (§7.3, §8.1, §8.2), a second run changes nothing, and bad data touches nothing."""

import json

import pytest
import testinfra

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)

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


@pytest.mark.parametrize("name", [SERVER, WORKSTATION])
def test_docker_run_pulls_through_the_registry_mirror(hosts, name):
    # docker.io is unreachable here: the pull can only succeed through the mirror row of
    # the registries drop-in, which points docker.io at the testbed's local registry.
    host = hosts[name]
    assert host.check_output(f"docker run --rm {ALPINE} echo ok") == "ok"
    assert "podman-compose" in host.check_output("docker compose version")


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


@pytest.mark.parametrize("name", [SERVER, WORKSTATION])
def test_rootless_user_runs_a_container(testbed, converged, name):
    guest = testbed.guests[name]
    # As vagrant, without sudo: user namespace from the subuid range, linger on.
    result = guest.run(f"podman run --rm {ALPINE} id -u", timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert guest.run("test -e /var/lib/systemd/linger/vagrant").returncode == 0


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
