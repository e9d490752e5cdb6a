"""Fast tests of the real-host testbed's pure helpers (no VM, no root)."""

import gzip
import io
import json
import runpy
import shlex
import shutil
import tarfile
import urllib.request
from pathlib import Path

import pytest

from testbed import hostdata, images, registry
from testbed.fleet import GuestSpec, parse_guests
from testbed.registry import MANIFEST_TYPE, Registry, busybox_rootfs, digest, image, layer

INVENTORY = Path(__file__).resolve().parents[1] / "inventories" / "testbed.py"


def test_digest_is_sha256_of_the_bytes():
    assert digest(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_layers_are_byte_identical_across_builds():
    entries = busybox_rootfs(b"\x7fELF fake", ["bin/sh", "usr/bin/wget", "bin/busybox"])
    assert layer(entries) == layer(entries)


def test_rootfs_links_every_applet_to_busybox():
    tar_bytes, blob = layer(busybox_rootfs(b"binary", ["bin/sh", "usr/sbin/httpd"]))
    assert gzip.decompress(blob) == tar_bytes
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].mode == 0o755
    assert members["usr/sbin/httpd"].issym()
    assert members["usr/sbin/httpd"].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777


def test_manifest_describes_config_and_layers_by_digest_and_size():
    layers = [layer([("a", "file", b"x", 0o644)]), layer([("b", "file", b"y", 0o644)])]
    img = image(layers, {"Cmd": ["sh"]})
    manifest = json.loads(img.manifest)
    config = json.loads(img.config)
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["config"] == {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": len(img.config),
        "digest": digest(img.config),
    }
    assert [entry["digest"] for entry in manifest["layers"]] == [digest(b) for b in img.layers]
    assert config["rootfs"]["diff_ids"] == [digest(tar) for tar, _ in layers]
    assert (config["os"], config["architecture"], config["config"]) == (
        "linux",
        "amd64",
        {"Cmd": ["sh"]},
    )
    # A layer packed elsewhere (testbed/app_images.py) comes with its tar's digest instead.
    tar, blob = layers[0]
    assert (
        image([(digest(tar), blob)], {"Cmd": ["sh"]}).config
        == image([(tar, blob)], {"Cmd": ["sh"]}).config
    )


@pytest.mark.skipif(
    not (shutil.which("docker-registry") and Path("/bin/busybox").exists()),
    reason="needs Debian's docker-registry and busybox-static",
)
def test_pushed_images_are_served_by_the_registry():
    with Registry() as server:
        server.push_testbed_images()
        server.push_testbed_images()  # blobs already there: pushing again is harmless
        request = urllib.request.Request(
            f"http://{server.address}/v2/library/nginx/manifests/alpine",
            headers={"Accept": MANIFEST_TYPE},
        )
        with urllib.request.urlopen(request) as response:
            served = response.read()
    assert served == registry.testbed_images()["library/nginx:alpine"].manifest


def test_parse_guests():
    assert parse_guests("bookworm:server, trixie:workstation") == [
        GuestSpec("bookworm", "server"),
        GuestSpec("trixie", "workstation"),
    ]
    assert parse_guests("trixie:server")[0].name == "trixie-server"
    assert parse_guests("bookworm:server:docker") == [GuestSpec("bookworm", "server", "docker")]
    for bad in (
        "",
        "bookworm",
        "bookworm:desktop",
        "trixie:server,trixie:server",
        "bookworm:server:fedora",
    ):
        with pytest.raises(ValueError):
            parse_guests(bad)


def test_host_data_per_role():
    common = {"podman_registries", "podman_nvidia_enabled", "podman_rootless_users", "_sudo"}
    server = hostdata.testbed_host_data("server", "10.0.2.2:5000")
    assert set(hostdata.testbed_host_data("workstation", "r:1")) == common
    assert set(server) == common | {
        "podman_storage_device",
        "podman_socket_enabled",
        "podman_services",
    }
    # The server is in the motoko group: motoko's services (public images, a GPU) stay off it.
    assert server["podman_services"] == []
    mirror = server["podman_registries"]["registries"][0]["mirrors"][0]
    assert mirror == {"location": "10.0.2.2:5000", "insecure": True}


def test_guests_get_updates_and_security_suites():
    assert images.apt_sources("trixie").splitlines() == [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main",
    ]


def test_recipe_key_changes_with_the_recipe(monkeypatch):
    key = images.recipe_key("bookworm")
    assert key.startswith("bookworm-") and key == images.recipe_key("bookworm")
    monkeypatch.setattr(images, "PACKAGES", (*images.PACKAGES, "vim"))
    assert images.recipe_key("bookworm") != key
    monkeypatch.undo()
    monkeypatch.setattr(images, "SCRIPT", images.SCRIPT + "\ntrue\n")
    assert images.recipe_key("bookworm") != key


def test_variants_install_the_package_tables_toolset_on_their_base(monkeypatch):
    # One definition: the podman variant is what operations.packages.install installs on
    # the Debian family, and docker adds Docker's engine and Debian's docker-compose to it.
    from operations.packages import PODMAN_PACKAGES

    assert images.VARIANTS["podman"] == ("bare", tuple(PODMAN_PACKAGES["debian"]))
    assert images.VARIANTS["docker"] == ("podman", ("docker.io", "apparmor", "docker-compose"))
    podman = images.recipe("bookworm", "podman")
    assert podman["base"] == images.recipe_key("bookworm")
    assert podman["packages"] == PODMAN_PACKAGES["debian"]
    keys = {images.recipe_key("bookworm", v) for v in images.VARIANTS}
    assert len(keys) == len(images.VARIANTS) == 4
    assert images.recipe_key("bookworm", "docker").startswith("bookworm-docker-")
    # The selinux variant's labelling step and kernel arguments are part of its recipe only.
    selinux = images.recipe("trixie", "selinux")
    assert selinux["finish"] == images.VARIANT_FINISH["selinux"] and "setfiles" in selinux["finish"]
    assert selinux["kernel_args"] == "security=selinux selinux=1"
    assert "finish" not in podman and "kernel_args" not in podman
    # A change to the bare recipe is a new base, so every variant above it is rebuilt.
    before = images.recipe_key("bookworm", "docker")
    monkeypatch.setattr(images, "PACKAGES", (*images.PACKAGES, "vim"))
    assert images.recipe_key("bookworm", "docker") != before
    monkeypatch.undo()
    monkeypatch.setattr(images, "VARIANTS", {**images.VARIANTS, "podman": ("bare", ("podman",))})
    assert images.recipe_key("bookworm", "docker") != before
    with pytest.raises(ValueError, match="unknown image variant 'fedora'"):
        images.recipe_key("bookworm", "fedora")


def test_inventory_groups_hosts_from_the_state_file(tmp_path, monkeypatch):
    host = {"ssh_host": "127.0.0.1", "ssh_user": "vagrant", "ssh_key": "/k"}
    state = {
        "registry": "10.0.2.2:1",
        "hosts": [
            {
                **host,
                "name": "bookworm-server",
                "release": "bookworm",
                "ssh_port": 2201,
                "groups": ["linux_servers", "motoko"],
                "data": {"_sudo": True},
            },
            {
                **host,
                "name": "trixie-workstation",
                "release": "trixie",
                "ssh_port": 2202,
                "groups": ["linux_workstations"],
                "data": {},
            },
        ],
    }
    (tmp_path / "hosts.json").write_text(json.dumps(state))
    monkeypatch.setenv("PODMAN_STANDARD_TESTBED", str(tmp_path / "hosts.json"))
    groups = {k: v for k, v in runpy.run_path(str(INVENTORY)).items() if not k.startswith("_")}
    assert sorted(groups) == ["linux_servers", "linux_workstations", "motoko"]
    name, data = groups["motoko"][0]
    assert name == "bookworm-server"
    assert data == {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": 2201,
        "ssh_user": "vagrant",
        "ssh_key": "/k",
        "ssh_known_hosts_file": "/dev/null",
        "ssh_strict_host_key_checking": "no",
        "_sudo": True,
    }


def test_inventory_without_state_says_how_to_start_the_testbed(tmp_path, monkeypatch):
    monkeypatch.setenv("PODMAN_STANDARD_TESTBED", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="python -m testbed up --detach"):
        runpy.run_path(str(INVENTORY))


def test_a_stage_inside_another_is_recorded_as_its_detail():
    from testbed.fleet import Timings

    timings = Timings()
    with timings.stage("migration (first run)"):
        with timings.stage("pyinfra deploys/migrate_from_docker.py"):
            pass
    with timings.stage("reboot"):
        pass
    assert [name for name, _ in timings.stages] == [
        "  pyinfra deploys/migrate_from_docker.py",
        "migration (first run)",
        "reboot",
    ]


# Lines of a real migration run's output (tests/realhost/test_migration.py, 2026-12-01) and of
# a real services run's (test_services_real.py), and a converge's install (test_converge.py,
# 2026-12-03: pyinfra pads the shorter host name's prefix), as pyinfra printed them.
INSTALL = "install 12 package(s): podman podman-compose buildah skopeo uidmap passt slirp4netns"
INSTALL += " nftables aardvark-dns dbus-user-session catatonit ca-certificates"
EXPORT = "migration export: stop Docker's containers, archive volumes and images"
PYINFRA_STDERR = f"""\
--> Starting operation: Migrate from Docker | Migrate bookworm-server to Podman
    [bookworm-server] {EXPORT}: started
    [bookworm-server] {EXPORT}: done in 1 min 18 s
    [bookworm-server] migration move: load images, restore volumes into podman: started
    [bookworm-server] pull docker.io/library/debian-servers:bookworm: done in 2.3 s
    [trixie-server] pull docker.io/library/debian-servers:bookworm: done in 0.8 s
    [bookworm-server]    {INSTALL}: done in 5 min 10 s
"""


def test_the_long_steps_of_a_pyinfra_run_become_details_of_its_stage(tmp_path, monkeypatch):
    from testbed import fleet

    assert fleet.step_durations(PYINFRA_STDERR) == [
        (f"bookworm-server: {EXPORT}", 78),
        ("bookworm-server: pull docker.io/library/debian-servers:bookworm", 2.3),
        ("trixie-server: pull docker.io/library/debian-servers:bookworm", 0.8),
        (f"bookworm-server: {INSTALL}", 310),
    ]

    class Done:
        returncode, stdout, stderr = 0, "{}", PYINFRA_STDERR

    monkeypatch.setattr(fleet.subprocess, "run", lambda *a, **k: Done)
    bed = fleet.Testbed([], tmp_path, tmp_path / "hosts.json", registry=object())
    with bed.timings.stage("migration (first run)"):
        bed.pyinfra(deploy="deploys/migrate_from_docker.py")
    names = [name for name, _ in bed.timings.stages]
    assert names == [
        f"    bookworm-server: {EXPORT}",
        "    bookworm-server: pull docker.io/library/debian-servers:bookworm",
        "    trixie-server: pull docker.io/library/debian-servers:bookworm",
        f"    bookworm-server: {INSTALL}",
        "  pyinfra deploys/migrate_from_docker.py",
        "migration (first run)",
    ]
    # Each run's output is kept in the workdir, numbered.
    log = (tmp_path / "pyinfra-01.stderr").read_text()
    assert log.startswith("$ pyinfra deploys/migrate_from_docker.py\n--> Starting operation")


def test_a_cache_entry_is_built_once_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    from testbed.images import cached

    monkeypatch.setenv("PODMAN_STANDARD_CACHE", str(tmp_path))
    builds = []

    def build(work):
        builds.append(work.name)
        work.mkdir()
        (work / "done").write_text("yes")

    def ready(entry):
        return (entry / "done").exists()

    entry = cached("things", "k1", ready, build, log=lambda _: None)
    assert entry == tmp_path / "things" / "k1" and (entry / "done").read_text() == "yes"
    assert cached("things", "k1", ready, build, log=lambda _: None) == entry
    assert len(builds) == 1 and builds[0].startswith("k1.tmp-")

    def broken(work):
        work.mkdir()
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        cached("things", "k2", ready, broken, log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "things").iterdir()) == ["k1", "k1.lock", "k2.lock"]


def _counting_guest(monkeypatch, tmp_path, failures: int, message: str):
    """A Guest whose ssh is a local script: it fails ``failures`` times as ssh does (exit
    255, ``message`` on stderr), then runs; the tries are counted in a file."""
    from testbed import guests

    count = tmp_path / "tries"
    script = (
        f'n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > {count}; '
        f'if [ "$n" -le {failures} ]; then echo {shlex.quote(message)} >&2; exit 255; fi; '
        "echo ran"
    )
    monkeypatch.setattr(guests.Guest, "ssh_command", lambda self, command: ["sh", "-c", script])
    monkeypatch.setattr(guests.time, "sleep", lambda s: None)
    guest = object.__new__(guests.Guest)
    guest.name = "g"
    return guest, count


@pytest.mark.parametrize(
    "message",
    [
        "Connection timed out during banner exchange",  # seen after a reboot under load
        "ssh: connect to host 127.0.0.1 port 2222: Connection refused",
        "kex_exchange_identification: read: Connection reset by peer",
        "mux_client_request_session: read from master failed: Broken pipe",
    ],
)
def test_a_connection_ssh_could_not_set_up_is_tried_again(monkeypatch, tmp_path, message):
    guest, count = _counting_guest(monkeypatch, tmp_path, 2, message)
    result = guest.run("true", check=True)
    assert (result.stdout, count.read_text()) == ("ran\n", "3\n")


def test_a_command_that_failed_or_a_poll_is_not_run_again(monkeypatch, tmp_path):
    # A command's own exit 255 (it ran) is not retried; the polls that wait for SSH ask once.
    guest, count = _counting_guest(
        monkeypatch, tmp_path, 1, "Connection to x closed by remote host."
    )
    assert guest.run("true").returncode == 255 and count.read_text() == "1\n"
    guest, count = _counting_guest(
        monkeypatch, tmp_path, 1, "Connection timed out during banner exchange"
    )
    count.unlink()
    assert guest.run("true", reconnect=False).returncode == 255 and count.read_text() == "1\n"


def test_an_image_s_kernel_arguments_reach_the_guest_s_command_line(tmp_path):
    from testbed.guests import Guest

    entry = tmp_path / "trixie-selinux-0123"
    entry.mkdir()
    plain = images._paths("trixie", entry)
    (entry / "cmdline").write_text("security=selinux selinux=1\n")
    labelled = images._paths("trixie", entry)
    assert (plain.kernel_args, labelled.kernel_args) == ("", "security=selinux selinux=1")

    def append(image):
        command = Guest("g", image, tmp_path)._qemu_command("tcg")
        return command[command.index("-append") + 1]

    masked = "systemd.mask=podman-auto-update.service systemd.mask=podman-auto-update.timer"
    assert append(plain) == f"root=/dev/vda rw console=ttyS0 systemd.hostname=g {masked}"
    assert append(labelled) == (
        f"root=/dev/vda rw console=ttyS0 systemd.hostname=g {masked} security=selinux selinux=1"
    )


def test_emulated_guests_get_the_baseline_cpu_and_kvm_the_host_s(tmp_path):
    from testbed.guests import Guest

    entry = tmp_path / "trixie-0123"
    entry.mkdir()
    guest = Guest("g", images._paths("trixie", entry), tmp_path)

    def cpu(accel):
        command = guest._qemu_command(accel)
        return command[command.index("-cpu") + 1]

    assert (cpu("tcg"), cpu("kvm")) == ("qemu64", "max")


def test_each_guest_shares_one_ssh_connection_of_its_own(tmp_path):
    from testbed import guests

    first, second = (object.__new__(guests.Guest) for _ in range(2))
    for guest, port in ((first, 2201), (second, 2202)):
        guest.ssh_user, guest.ssh_host, guest.ssh_port = "vagrant", "127.0.0.1", port
        guest.ssh_key = tmp_path / "key"
    commands = [g.ssh_command("true") for g in (first, second)]
    paths = [next(o for o in c if o.startswith("ControlPath=")) for c in commands]
    assert paths[0] != paths[1]
    assert all(len(p.removeprefix("ControlPath=")) < 100 for p in paths)  # sun_path: 108
    assert commands[0] == first.ssh_command("other")[:-1] + ["true"]  # the same one each time
    assert "ControlMaster=auto" in commands[0] and commands[0][-1] == "true"
    folder = Path(paths[0].removeprefix("ControlPath=")).parent
    assert folder.is_dir()
    guests.close_mux(first)  # no master running: nothing to end, the folder goes
    assert not folder.exists()
    guests.close_mux(first)  # idempotent
    guests.close_mux(second)
