"""The Vagrant path users take before touching their fleet, run for real: the repository's
Vagrantfile brings up its Debian VM through python-vagrant (libvirt, software emulation, a box
built from the testbed's Debian 12 image with the Podman toolset pre-installed, inside a network
namespace this test creates; the install itself is proven by the converge module),
``pyinfra inventories/vagrant.py deploys/linux_baseline.py`` converges it, the QA suite
passes on it, a second run changes nothing, and ``destroy`` leaves no VM behind."""

import ipaddress
import json
import os
import sys
from pathlib import Path

import pytest

from inventories._vagrant import parse_ssh_config
from testbed import hostdata
from testbed.vagrant import Lab, isolated, write_json
from testbed.vagrant_box import build_box
from tests.realhost.conftest import _TIMINGS, qa_suite

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one VM: runs beside another one-guest module (tests/realhost/tier.py)
MINUTES = 4.9  # a full tier run, 2026-12-02: 295 s (tier.py balances the lanes)

MACHINE = "debian"  # the Vagrantfile's Debian VM: server pattern, blank /space disk
BOX_ENV = "PODMAN_STANDARD_BOX_DEBIAN"
BASELINE = ("inventories/vagrant.py", "deploys/linux_baseline.py")


@pytest.fixture(scope="module")
def lab(registry, tmp_path_factory, request, no_shared_guests):
    if request.config.getoption("--testbed") == "vagrant":
        # One libvirtd per machine: the session's Vagrant testbed already holds it.
        pytest.skip("--testbed=vagrant: the whole tier already runs on Vagrant VMs")
    workdir = tmp_path_factory.mktemp("vagrant")
    env = {"PYINFRA_PROGRESS": "off"}
    box = None
    if os.environ.get(BOX_ENV):  # a workstation's public box, e.g. debian/bookworm64
        env[BOX_ENV] = os.environ[BOX_ENV]
    else:
        with _TIMINGS.stage("vagrant: box build or cache (bookworm-podman)"):
            box = build_box("bookworm", variant="podman")
        env[BOX_ENV] = box.name
    if isolated():
        env["PODMAN_STANDARD_LIBVIRT_DRIVER"] = os.environ.get(
            "PODMAN_STANDARD_LIBVIRT_DRIVER",
            "qemu",  # KVM hangs on these machines
        )
        # docker.io is unreachable here: the VM pulls through the testbed's registry, which
        # it reaches as 10.0.2.2 through the namespace's slirp4netns, as qemu guests do.
        registries = hostdata.testbed_host_data("server", registry.guest_address)[
            "podman_registries"
        ]
        data = write_json(workdir / "extra-data.json", {"all": {"podman_registries": registries}})
        env["PODMAN_STANDARD_VAGRANT_DATA"] = str(data)
    bed = Lab(workdir, env)
    try:
        with _TIMINGS.stage("vagrant: netns + slirp4netns + virtlogd/libvirtd start"):
            bed.start()
        if box:
            with _TIMINGS.stage("vagrant: box add"):
                bed.add_box(box.name, box.path)
        with _TIMINGS.stage(f"vagrant: up {MACHINE} (python-vagrant, {bed.provider})"):
            bed.up(MACHINE)
        yield bed
    finally:
        with _TIMINGS.stage("vagrant: destroy + libvirtd stop + netns removal"):
            bed.close()


@pytest.fixture(scope="module")
def ssh_config(lab):
    text = lab.ssh_config(MACHINE)
    path = lab.workdir / "ssh-config"
    path.write_text(text)
    return path


def _pyinfra(lab, *args: str):
    result = lab.run([sys.executable, "-m", "pyinfra", "-y", "--json", *args, *BASELINE])
    try:
        parsed = json.loads(result.stdout)
    except ValueError:
        parsed = None
    return result.returncode, parsed, result.stderr


@pytest.fixture(scope="module")
def converged(lab):
    with _TIMINGS.stage(f"vagrant: baseline converge of {MACHINE}"):
        returncode, result, stderr = _pyinfra(lab)
    assert returncode == 0, stderr[-4000:]
    return result


def test_ssh_config_is_vagrants_own(lab, ssh_config):
    options = parse_ssh_config(ssh_config.read_text())[MACHINE]
    if lab.provider == "libvirt":  # on vagrant-libvirt's management network
        network = ipaddress.ip_network("192.168.121.0/24")
        assert ipaddress.ip_address(options["hostname"]) in network
    assert options["user"] == "vagrant"
    # Vagrant replaced the box's insecure key with one of its own for this machine.
    key = Path(options["identityfile"])
    assert key.is_relative_to(lab.env["VAGRANT_DOTFILE_PATH"]) and key.exists()


def test_baseline_converges_the_vm(converged):
    results = converged["results"]
    assert results["failed_hosts"] == []
    assert results["totals"]["error"] == 0
    assert results["totals"]["success"] > 0
    changed_hosts = {host for op in results["operations"] for host in op["success"]}
    assert changed_hosts == {MACHINE}  # the inventory held the running VM, and only it


def test_qa_suite_passes(lab, converged, ssh_config):
    with _TIMINGS.stage(f"vagrant: QA suite (tests/qa) on {MACHINE}"):
        result = lab.run(qa_suite([MACHINE], "inventories/vagrant.py", ssh_config))
    summary = result.stdout.splitlines()[-1]
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in summary and "failed" not in summary
    # Among what passed, the server pattern's own criteria: graphroot on /space, API socket.
    collected = lab.run(
        qa_suite([MACHINE], "inventories/vagrant.py", None, "--collect-only")
    ).stdout
    assert f"[{MACHINE}-graphroot]" in collected and f"[{MACHINE}-api-socket]" in collected


def test_second_run_changes_nothing(lab, converged):
    with _TIMINGS.stage(f"vagrant: second baseline run on {MACHINE}"):
        returncode, result, stderr = _pyinfra(lab)
    assert returncode == 0, stderr[-4000:]
    changed = [op["name"] for op in result["results"]["operations"] if op["success"]]
    assert changed == []
    assert result["results"]["totals"]["error"] == 0


def test_destroy_leaves_no_vm(lab, converged):
    with _TIMINGS.stage(f"vagrant: destroy {MACHINE}"):
        lab.destroy(MACHINE)
    assert lab.vagrant.status(vm_name=MACHINE)[0].state == "not_created"
    if lab.isolated:  # libvirtd is the test's own: no domain may be left
        assert lab.libvirtd.virsh("list", "--all", "--name").stdout.split() == []
