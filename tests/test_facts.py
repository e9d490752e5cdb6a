"""Fact tests.

The case files (tests/facts/<module>.<Fact>/*.json, run by pyinfra-testing) feed real command
output to each fact's parser and compare the value. The tests below check what the case format
cannot: that every case's output is the captured fixture it names (tests/fixtures/facts/README.md
says where each came from), what pyinfra itself does when a fact's tool is missing, that every
command runs under a real ``sh`` here, and the derived properties that operations read.
"""

import json
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State, StringCommand
from pyinfra.api.facts import get_fact
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra_testing.facts import make_fact_tests

from facts import (
    compose,
    desktop,
    docker,
    files,
    gpu,
    migration,
    podman,
    registries,
    rootless,
    selinux,
    services,
    storage,
)

TESTS_BASE = Path(__file__).parent / "facts"
FIXTURES = Path(__file__).parent / "fixtures" / "facts"


@pytest.fixture(autouse=True)
def _auth_script_by_name(request, monkeypatch):
    # The AuthFile cases show facts/auth_json.py by name (its whole source is the command's
    # bulk); the commands below still run the real script.
    if "::registries.AuthFile::" in request.node.nodeid:
        monkeypatch.setattr(registries, "AUTH_SCRIPT", "AUTH_SCRIPT")


for _p in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_p] = make_fact_tests("facts", _p, TESTS_BASE / _p)

CASES = sorted(TESTS_BASE.glob("*/*.json"))

# Every fact, with the arguments its command takes.
FACTS = [
    (docker.DockerEngine, []),
    (docker.DockerInventory, []),
    (docker.DataDir, ["/var/lib/docker/volumes/a b/_data"]),
    (docker.DockerDaemonConfig, []),
    (migration.MigrationBundle, ["/var/lib/podman-standard/docker-migration"]),
    (migration.MigrationBundle, ["/srv/my bundle"]),
    (podman.PodmanInfo, []),
    (gpu.NvidiaGpus, []),
    (gpu.NvidiaPresence, []),
    (
        gpu.PackageSources,
        ["https://nvidia.github.io/libnvidia-container", "/etc/apt/keyrings/a b.asc"],
    ),
    (selinux.SELinux, [["/space/containers/engine/podman", "/srv/a b"]]),
    (storage.StorageConf, []),
    (storage.PathMount, ["/var/lib/containers/storage"]),
    (storage.BlockDevice, ["/dev/vda"]),
    (storage.StorageDevice, ["/dev/vdb", "/srv/my data"]),
    (storage.StoreContents, ["/var/lib/containers/storage"]),
    (rootless.SubIds, []),
    (files.ManagedFiles, [["/usr/local/bin/docker", "/etc/a b.conf"]]),
    (rootless.LingerUsers, []),
    (rootless.RootlessUser, ["vagrant"]),
    (rootless.RootlessUser, ["a b"]),
    (rootless.UserAccount, ["root"]),
    (rootless.UserAccount, ["it's"]),
    (services.Quadlet, []),
    (services.SystemdUnit, ["nextcloud-app.service"]),
    (services.SystemdUnit, ["app.service", "svc-litellm"]),
    (services.PodmanVolumes, []),
    (services.PodmanVolumes, ["svc-litellm"]),
    (services.PodmanNetworks, []),
    (services.PodmanNetworks, ["vagrant"]),
    (
        services.ServicesState,
        [
            ["/etc/systemd/system/web.service", "/srv/a b/it's"],
            ["/srv/containers/apps", "/no such dir"],
            ["/srv/containers/apps/web/image-record", "/etc/hostname"],
            ["web.service", "web-cron.timer"],
            {"vagrant": ["uweb.service"]},
        ],
    ),
    (compose.ComposeProject, ["devstack", "/srv/containers/compose/devstack"]),
    (compose.ComposeProject, ["devstack", "/srv/containers/compose/devstack", "vagrant"]),
    (registries.AuthFile, [None]),
    (registries.AuthFile, ["nobody"]),
    (desktop.FlatpakRemotes, []),
    (desktop.PodmanMachines, []),
    (desktop.WingetPackage, ["RedHat.Podman-Desktop"]),
]


def _case(name: str) -> dict:
    return json.loads((TESTS_BASE / name).read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_case_output_is_its_fixture(case):
    data = json.loads(case.read_text())
    assert "fixture" in data, "every case names the captured output it replays"
    assert data["output"] == (FIXTURES / data["fixture"]).read_text().splitlines()


def test_every_fact_has_cases():
    covered = {case.parent.name for case in CASES}
    for fact, _args in FACTS:
        name = f"{fact.__module__.removeprefix('facts.')}.{fact.__name__}"
        assert name in covered


def _host_answering(line: str):
    inventory = Inventory((["somehost"], {}))
    state = State(inventory, Config())
    state.current_stage = StateStage.Prepare
    host = inventory.get_host("somehost")
    host.connected = True
    host.run_shell_command = lambda command, **kwargs: (
        True,
        CommandOutput([OutputLine("stdout", line)]),
    )
    return state, host


@pytest.mark.parametrize(
    "fact,args", [(f, a) for f, a in FACTS if f().requires_command(*a)], ids=lambda f: str(f)
)
def test_missing_tool_gives_default(fact, args):
    # pyinfra wraps the command in `if command -v TOOL ...; else echo SENTINEL; fi`.
    state, host = _host_answering("##PYINFRA_NOCMD##")
    assert get_fact(state, host, fact, args=args) == fact().default()


@pytest.mark.parametrize("fact,args", FACTS, ids=lambda f: str(f))
def test_command_runs_under_sh(fact, args):
    """Each command is valid shell and exits 0 on this machine (Debian, tools or not)."""
    instance = fact()
    raw = StringCommand(instance.command(*args)).get_raw_value()
    tool = instance.requires_command(*args)
    if tool:
        raw = f"if command -v {tool} >/dev/null 2>&1; then ( {raw} ); else echo NOCMD; fi"
    # An empty stdin (a pipe, not /dev/null: a fact may read its stdin, AuthFile does).
    result = subprocess.run(
        ["sh", "-c", raw], input="", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if lines and lines != ["NOCMD"]:
        instance.process(lines)


def _processed(name: str):
    data = _case(name)
    module, fact_name = Path(name).parent.name.rsplit(".", 1)
    fact = getattr({"docker": docker, "gpu": gpu}[module], fact_name)()
    return fact.process(data["output"])


def test_engine_present():
    assert _processed("docker.DockerEngine/docker_io_running.json").engine_present
    assert not _processed("docker.DockerEngine/nothing_installed.json").engine_present
    assert not _processed("docker.DockerEngine/podman_docker_installed.json").engine_present
    # Debian's containerd and runc stay behind when docker.io is purged: no engine.
    purged = _processed("docker.DockerEngine/podman_docker_after_docker_io_purge.json")
    assert "containerd" in purged.packages and not purged.engine_present
    # Installed but stopped and disabled still counts: the package must go (§6.1 step 4).
    assert _processed("docker.DockerEngine/docker_io_stopped_disabled.json").engine_present
    # rpm hosts (public Fedora/EL outputs): Fedora's moby-engine is an engine, podman-docker is
    # not, and rpm's "package runc is not installed" line (on stdout) lists nothing.
    assert _processed("docker.DockerEngine/fedora33_moby_engine_running.json").engine_present
    assert not _processed("docker.DockerEngine/cs10_podman_docker.json").engine_present
    assert _processed("docker.DockerEngine/rpm_not_installed_line_ignored.json").packages == {}


def test_rpm_lines_derived_from_public_fedora_outputs():
    # DockerEngine's rpm format is NAME<TAB>installed<TAB>VERSION-RELEASE. Fedora 34's
    # `dnf info podman-docker` names the three fields (the epoch, 3, is printed by neither).
    info = {}
    for line in (
        (FIXTURES / "upstream/dnf-info.podman-docker.fedora34.txt").read_text().splitlines()
    ):
        key, sep, value = line.partition(" : ")
        if sep and key.strip():
            info[key.strip()] = value
    derived = (FIXTURES / "upstream/rpm-q-qf.podman-docker.fedora34.DERIVED.txt").read_text()
    assert derived == f"{info['Name']}\tinstalled\t{info['Version']}-{info['Release']}\n"
    # Fedora 33's `rpm -q` NAME-VERSION-RELEASE.ARCH lines, split at the last two dashes.
    nevra = (FIXTURES / "upstream/rpm-q.podman-moby-engine.fedora33.txt").read_text().splitlines()
    rebuilt = []
    for line in nevra:
        name, version, release_arch = line.rsplit("-", 2)
        rebuilt.append(f"{name}\tinstalled\t{version}-{release_arch.rsplit('.', 1)[0]}")
    qf = (FIXTURES / "upstream/rpm-q-qf.podman-moby-engine.fedora33.DERIVED.txt").read_text()
    assert qf.splitlines() == rebuilt
    state = docker.DockerEngine().process(["@@packages", *derived.splitlines(), *rebuilt])
    assert state.packages == {
        "podman-docker": "3.3.1-1.fc34",
        "podman": "3.1.2-1.fc33",
        "moby-engine": "19.03.13-1.ce.git4484c46.fc33",
    }


def test_has_gpu():
    assert _processed("gpu.NvidiaPresence/gpu_host_with_cdi.json").has_gpu
    assert not _processed("gpu.NvidiaPresence/qemu_vga_is_not_nvidia.json").has_gpu


def test_fstab_entries_match_the_mount_point_field_only():
    fstab = [
        "# UUID=old /space ext4 defaults 0 2",
        "/dev/vda / ext4 defaults,errors=remount-ro 0 1",
        "UUID=a /space ext4 defaults,nofail 0 2",
        "UUID=b /space2 ext4 defaults 0 2",
        "",
        "UUID=c\t/space\txfs defaults 0 0",
    ]
    assert storage.fstab_entries(fstab, "/space") == [fstab[2], fstab[5]]
    assert storage.fstab_entries(fstab, "/srv") == []


def test_secret_stdin_reaches_the_command_and_never_pyinfra_s_logs():
    """pyinfra logs a fact's arguments, ``_stdin`` included, with ``str()`` ("Loaded fact …
    (_stdin=…)" under --debug); the wanted auth values must reach only the command's stdin."""
    import io

    from pyinfra.api.util import get_kwargs_str
    from pyinfra.connectors.util import write_stdin

    secret = registries.SecretStdin('{"10.0.2.2:5001": "cHVsbC1ib3Q6aHVudGVyMg=="}')
    assert "cHVsbC1ib3Q6" not in get_kwargs_str({"_stdin": secret, "user": None})
    assert "cHVsbC1ib3Q6" not in f"{secret!r} {secret}"
    buffer = io.BytesIO()
    buffer.close = lambda: None
    write_stdin(secret, buffer)
    assert buffer.getvalue() == b'{"10.0.2.2:5001": "cHVsbC1ib3Q6aHVudGVyMg=="}\n'


def test_fcontext_local_listings_from_public_sources():
    # RHEL 8's "Considerations in adopting RHEL 8" (SELinux policy changes): an equivalence.
    rhel8 = (FIXTURES / "upstream/semanage-fcontext-l-C.rhel8-equivalence.txt").read_text()
    assert selinux.parse_fcontext_local(rhel8.splitlines()) == ({"/my/apps": "/"}, [])
    # A type rule as `semanage fcontext -lC` prints it (columns narrower than semanage's own).
    blog = (FIXTURES / "upstream/semanage-fcontext-lC.type-rule-blog.txt").read_text()
    assert selinux.parse_fcontext_local(blog.splitlines()) == (
        {},
        [
            selinux.FileContextRule(
                "/var/test_www(/.*)?", "all files", "system_u:object_r:httpd_sys_content_t:s0"
            )
        ],
    )


def test_label_differs_by_type_only():
    varlib = "system_u:object_r:container_var_lib_t:s0"
    assert selinux.label_differs("system_u:object_r:default_t:s0", varlib)
    assert not selinux.label_differs("unconfined_u:object_r:container_var_lib_t:s0", varlib)
    assert not selinux.label_differs(None, varlib) and not selinux.label_differs(varlib, None)
