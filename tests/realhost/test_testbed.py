"""The testbed itself: guests answer SSH as the deploys expect, the server has its second disk,
and guests reach the local registry as the docker.io mirror."""

import json

import pytest

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)

ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json,"
    "application/vnd.oci.image.manifest.v1+json"
)


def test_guests_answer_ssh_with_passwordless_sudo(testbed):
    for name, guest in testbed.guests.items():
        result = guest.run("hostname && sudo -n id -u && systemctl is-system-running", check=True)
        assert result.stdout.split() == [name, "0", "running"]


def test_only_servers_have_the_second_disk(testbed):
    for name, guest in testbed.guests.items():
        size = guest.run("cat /sys/block/vdb/size").stdout.strip()
        expected = str(4 * 2**30 // 512) if name.endswith("-server") else ""
        assert size == expected, name


def test_guests_pull_alpine_manifest_from_the_registry(testbed, registry):
    url = f"http://{registry.guest_address}/v2/library/alpine/manifests/latest"
    script = (
        "import urllib.request, sys; "
        f"r = urllib.request.urlopen(urllib.request.Request({url!r}, "
        f"headers={{'Accept': {ACCEPT!r}}})); sys.stdout.write(r.read().decode())"
    )
    for guest in testbed.guests.values():
        manifest = json.loads(guest.run(f'python3 -c "{script}"', check=True).stdout)
        assert manifest["schemaVersion"] == 2 and len(manifest["layers"]) == 1


def test_pyinfra_reaches_every_guest_through_the_inventory(testbed):
    returncode, result, stderr = testbed.pyinfra(deploy=("fact", "server.Hostname"))
    assert returncode == 0, stderr
    assert result == {"server.Hostname": {name: name for name in testbed.guests}}
