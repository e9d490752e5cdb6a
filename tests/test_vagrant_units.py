"""Fast tests of the Vagrant path's pure parts: Vagrant's output -> pyinfra inventory, the
machines file both the Vagrantfile and the inventory read, the box recipe and the lab's
qemu.conf edit. Vagrant's outputs are captured from a real run (tests/fixtures/vagrant)."""

import runpy
from pathlib import Path

import pytest

from inventories._vagrant import (
    MACHINES_ENV,
    connection_data,
    groups,
    load_machines,
    parse_ssh_config,
    parse_status,
)
from model.host_data import HostData
from testbed import vagrant_box
from testbed.fleet import parse_guests
from testbed.vagrant import QEMU_CONF_LINES, ensure_qemu_conf, machines_for_specs
from testbed.vagrant_box import Box

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "vagrant"


def _ssh_configs():
    return parse_ssh_config((FIXTURES / "ssh-config.txt").read_text())


def test_ssh_config_is_parsed_per_host():
    options = _ssh_configs()["debian"]
    assert options["hostname"] == "192.168.121.66"
    assert options["user"] == "vagrant"
    assert options["port"] == "22"
    assert options["identityfile"].endswith("/machines/debian/libvirt/private_key")


def test_connection_data_keeps_vagrants_host_key_choice():
    assert connection_data(_ssh_configs()["debian"]) == {
        "ssh_hostname": "192.168.121.66",
        "ssh_port": 22,
        "ssh_user": "vagrant",
        "ssh_key": "/tmp/vsmoke/dot-vagrant/machines/debian/libvirt/private_key",
        "ssh_strict_host_key_checking": "no",
        "ssh_known_hosts_file": "/dev/null",
    }


def test_status_gives_state_and_provider_per_machine():
    status = parse_status((FIXTURES / "status.txt").read_text())
    assert status["debian"] == {"provider-name": "libvirt", "state": "running"}
    assert status["fedora"]["state"] == "not_created"
    assert set(status) == {"fedora", "ubuntu", "debian"}


def test_inventory_holds_running_machines_in_the_fleets_groups():
    status = parse_status((FIXTURES / "status.txt").read_text())
    extra = {"all": {"podman_socket_enabled": False}, "debian": {"podman_graphroot": "/x"}}
    result = groups(load_machines(), status, _ssh_configs(), extra)
    assert set(result) == {"linux_servers", "motoko"}  # ubuntu and fedora are not running
    [(name, data)] = result["motoko"]
    assert name == "debian" and result["linux_servers"] == [(name, data)]
    assert data["ssh_hostname"] == "192.168.121.66"
    assert data["podman_storage_device"]["device"] == "/dev/vdb"  # libvirt: virtio
    assert data["podman_socket_enabled"] is False  # extra data is applied last
    assert data["podman_graphroot"] == "/x"


def test_virtualbox_vms_get_their_sata_disk():
    status = {"fedora": {"state": "running", "provider-name": "virtualbox"}}
    configs = {"fedora": _ssh_configs()["debian"]}
    [(_, data)] = groups(load_machines(), status, configs)["linux_servers"]
    assert data["podman_storage_device"]["device"] == "/dev/sdb"


def _group_data(group: str) -> dict:
    path = ROOT / "group_data" / f"{group}.py"
    names = runpy.run_path(str(path))
    return {k: v for k, v in names.items() if k.startswith("podman_")}


@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_every_machine_has_valid_host_data(provider):
    machines = load_machines()
    assert set(machines) == {"fedora", "ubuntu", "debian"}
    status = {name: {"state": "running", "provider-name": provider} for name in machines}
    configs = {name: _ssh_configs()["debian"] for name in machines}
    seen = {}
    for group, hosts in groups(machines, status, configs).items():
        for name, data in hosts:
            seen.setdefault(name, {}).update(_group_data(group))
            seen[name].update({k: v for k, v in data.items() if k.startswith("podman_")})
    for name, data in seen.items():
        model = HostData.model_validate({k.removeprefix("podman_"): v for k, v in data.items()})
        if machines[name]["space_disk_gib"]:
            assert model.host_class == "server" and model.storage_device.mount_point == "/space"
            assert model.services == []  # motoko's need secrets, public images and a GPU
        else:
            assert model.host_class == "workstation" and model.storage_device is None


def test_machines_file_can_be_replaced(tmp_path, monkeypatch):
    (tmp_path / "m.json").write_text('{"x": {"groups": ["linux_workstations"]}}')
    monkeypatch.setenv(MACHINES_ENV, str(tmp_path / "m.json"))
    assert load_machines() == {"x": {"groups": ["linux_workstations"]}}


def test_machines_for_specs_mirror_the_qemu_testbed():
    boxes = {r: Box(r, f"podman-standard/{r}-hash", Path("/b")) for r in ("bookworm", "trixie")}
    machines = machines_for_specs(parse_guests("bookworm:server,trixie:workstation"), boxes)
    assert machines["bookworm-server"]["box"] == "podman-standard/bookworm-hash"
    assert machines["bookworm-server"]["groups"] == ["linux_servers", "motoko"]
    assert machines["bookworm-server"]["space_disk_gib"] == 4
    assert machines["trixie-workstation"]["groups"] == ["linux_workstations"]
    assert machines["trixie-workstation"]["space_disk_gib"] == 0


def test_debugfs_script_sets_exact_modes_and_owners():
    files = {"/home/vagrant/.ssh/authorized_keys": ("key\n", 0o600, 1000, 1000)}
    script = vagrant_box.debugfs_script(files, {"/home/vagrant/.ssh/authorized_keys": "/t/f0"})
    assert script.splitlines() == [
        "rm /home/vagrant/.ssh/authorized_keys",
        "write /t/f0 /home/vagrant/.ssh/authorized_keys",
        "sif /home/vagrant/.ssh/authorized_keys mode 0100600",
        "sif /home/vagrant/.ssh/authorized_keys uid 1000",
        "sif /home/vagrant/.ssh/authorized_keys gid 1000",
    ]


def test_box_key_follows_the_recipe():
    assert vagrant_box.box_key("bookworm", "a") == vagrant_box.box_key("bookworm", "a")
    assert vagrant_box.box_key("bookworm", "a") != vagrant_box.box_key("bookworm", "b")
    assert vagrant_box.box_key("bookworm", "a") != vagrant_box.box_key("trixie", "a")


def test_qemu_conf_lines_are_added_once(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "libvirt-qemu"\n')
    assert ensure_qemu_conf(conf) is True
    assert ensure_qemu_conf(conf) is False
    lines = conf.read_text().splitlines()
    assert lines[0] == '#user = "libvirt-qemu"'
    assert [line for line in lines if line in QEMU_CONF_LINES] == list(QEMU_CONF_LINES)
