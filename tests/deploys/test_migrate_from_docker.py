"""deploys/migrate_from_docker.py against pyinfra's @fake connector answering with real
captured Docker output: nothing to do without an engine, the plan printed and nothing planned
when something cannot be carried over, and the steps in their safe order when all can."""

import logging
from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_config, ctx_inventory, ctx_state
from pyinfra.facts.files import MISSING
from pyinfra_cli.util import load_deploy_file

from model.migration import build_plan, bundle_files
from operations import registries as registries_ops
from operations import services as service_ops
from tests.deploys.test_linux_baseline import _fake, _ops, _plan
from tests.model.test_docker_settings import DERIVED, derived_output
from tests.model.test_migration import _inventory, _without_bind_mounts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "guest-debian12"
DEVHOST = FIXTURES.parent / "devhost-debian12"
DEPLOY = "deploys/migrate_from_docker.py"


def _host(name: str, engine: str, inventory: str | None = None, mounts=None, **host_data):
    """A fake Debian 12 host whose Docker facts answer with the named captured outputs (the
    inventory's command is matched first: it also mentions docker). ``mounts``: the captured
    findmnt answer (PathMount) per path, first match wins; every other path is on the
    development machine's root filesystem."""
    fake, data = _fake(name, **host_data)
    responses = {}
    if inventory:
        responses["docker ps -aq"] = (FIXTURES / inventory).read_text().splitlines()
    for path, fixture in (mounts or {}).items():
        responses[f"p={path} ;"] = (DEVHOST / fixture).read_text().splitlines()
    responses["findmnt --json"] = (DEVHOST / "PathMount.var-lib.txt").read_text().splitlines()
    responses["dpkg-query -W -f="] = (FIXTURES / engine).read_text().splitlines()
    data["fake_responses"] = {**responses, **data["fake_responses"]}
    return fake, data


def _load(state):
    with ctx_state.use(state), ctx_config.use(state.config), ctx_inventory.use(state.inventory):
        load_deploy_file(state, DEPLOY)


def test_no_engine_nothing_to_do(tmp_path, monkeypatch, caplog):
    state, hosts = _plan(
        tmp_path,
        monkeypatch,
        f"linux_servers = [{_host('h', 'DockerEngine.nothing-installed.txt')!r}]\n",
    )
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert _ops(state, hosts["@fake/h"]) == []
    assert "no Docker engine: nothing to migrate" in caplog.text


def _with_bind_source(host, fixture: str):
    """``host`` whose DataDir fact of web's bind mount source (/srv/web) answers with a
    captured output (DataDir prints no path: the capture's directory was another)."""
    fake, data = host
    answer = (DEVHOST / fixture).read_text().splitlines()
    data["fake_responses"] = {"du -sb /srv/web": answer, **data["fake_responses"]}
    return fake, data


def test_what_cannot_be_carried_over_stops_before_any_change(tmp_path, monkeypatch, caplog):
    host = _host("h", "DockerEngine.docker-io-running.txt", "DockerInventory.two-containers.txt")
    host = _with_bind_source(host, "DataDir.missing-directory.txt")
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"), pytest.raises(DeployError) as info:
        _load(state)
    assert "the migration cannot run here without loss; nothing changed" in str(info.value)
    assert "bind mount /srv/web of web: not a directory on this host" in str(info.value)
    # The plan was printed first, and no operation was planned.
    assert "container web [running] -> re-create as a podman service" in caplog.text
    assert _ops(state, hosts["@fake/h"]) == []
    assert not state.is_executing


def test_bind_mount_directory_is_copied_into_the_service(tmp_path, monkeypatch, caplog):
    host = _host("h", "DockerEngine.docker-io-running.txt", "DockerInventory.two-containers.txt")
    host = _with_bind_source(host, "DataDir.owners-beyond-65536.txt")
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert (
        "bind mount /srv/web of web (12312 bytes) -> binds/web-0.tar (tar + sha256), then "
        "copied to /srv/containers/apps/web/host/srv/web (the original stays)" in caplog.text
    )
    # The bind mount's copy counts on the service root's filesystem too.
    assert "the services' copies of bind mounts /srv/containers/apps" in caplog.text
    names = [sorted(n)[0].rsplit(" | ", 1)[-1] for n in _ops(state, hosts["@fake/h"])]
    assert "Re-create web as a podman service" in names


def test_daemon_down_stops_before_any_change(tmp_path, monkeypatch):
    host = _host(
        "h", "DockerEngine.docker-io-stopped-disabled.txt", "DockerInventory.daemon-stopped.txt"
    )
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with pytest.raises(DeployError) as info:
        _load(state)
    assert "its daemon does not answer" in str(info.value)
    assert _ops(state, hosts["@fake/h"]) == []


# --- deploys/rollback_to_docker.py ---------------------------------------------------------

ROLLBACK = "deploys/rollback_to_docker.py"
BUNDLE = "/var/lib/podman-standard/docker-migration"


def _bundle_host(state_line: str | None):
    """A fake host after a migration of the captured Docker host: the bundle's state file
    says ``state_line``, its manifest is the plan of that host (web's bind mount taken out),
    and ``docker`` is this package's wrapper (captured on a Debian 13 guest)."""

    fake, data = _fake("h")
    manifest = bundle_files(build_plan(_without_bind_mounts(_inventory()), BUNDLE))
    engine = FIXTURES.parent / "guest-debian13" / "DockerEngine.wrapper-over-podman-docker.txt"
    state_file, manifest_file = f"{BUNDLE}/state", f"{BUNDLE}/manifest.json"
    responses = {
        # pyinfra's FileContents prints its missing flag when there is no such file.
        state_file: [state_line] if state_line else [f"{MISSING}{state_file}"],
        manifest_file: manifest["manifest.json"].splitlines(),
        "dpkg-query -W -f=": engine.read_text().splitlines(),
    }
    data["fake_responses"] = {**responses, **data["fake_responses"]}
    return fake, data


def _load_rollback(state):
    with ctx_state.use(state), ctx_config.use(state.config), ctx_inventory.use(state.inventory):
        load_deploy_file(state, ROLLBACK)


def test_rollback_after_the_point_of_no_return(tmp_path, monkeypatch):
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{_bundle_host('retired')!r}]\n")
    _load_rollback(state)
    names = [sorted(n)[0].rsplit(" | ", 1)[-1] for n in _ops(state, hosts["@fake/h"])]
    assert names == [
        # Before anything changes: a bundle that does not verify stops the rollback here.
        f"Check the bundle {BUNDLE} against its SHA256SUMS",
        "Remove podman service web",
        "Remove the compatibility wrapper /usr/local/bin/docker",
        "Remove the compatibility wrapper /usr/local/bin/docker-compose",
        "Reinstall the Docker engine",
        f"Restore Docker from {BUNDLE} (volumes from podman)",
    ]


def test_rollback_from_the_bundle_on_request(tmp_path, monkeypatch):
    fake, data = _bundle_host("retired")
    data["podman_migration_rollback_from"] = "bundle"
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    _load_rollback(state)
    names = [sorted(n)[0].rsplit(" | ", 1)[-1] for n in _ops(state, hosts["@fake/h"])]
    assert names[-1] == f"Restore Docker from {BUNDLE} (volumes from bundle)"


@pytest.mark.parametrize("line", ["docker-running", "moved", "verified"])
def test_no_rollback_before_the_point_of_no_return(tmp_path, monkeypatch, line):
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{_bundle_host(line)!r}]\n")
    with pytest.raises(DeployError) as info:
        _load_rollback(state)
    assert "Docker was never removed, there is nothing to roll back" in str(info.value)
    assert _ops(state, hosts["@fake/h"]) == []


def test_rolled_back_bundle_changes_nothing(tmp_path, monkeypatch, caplog):
    host = _bundle_host("rolled-back")
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load_rollback(state)
    assert _ops(state, hosts["@fake/h"]) == []
    assert "already rolled back to Docker" in caplog.text


def test_no_bundle_no_rollback(tmp_path, monkeypatch):
    state, _ = _plan(tmp_path, monkeypatch, f"linux_servers = [{_bundle_host(None)!r}]\n")
    with pytest.raises(DeployError) as info:
        _load_rollback(state)
    assert f"no migration bundle in {BUNDLE}" in str(info.value)


def test_engine_beside_a_podman_shim_stops_before_any_change(tmp_path, monkeypatch):
    # Captured on a Debian 13 guest with podman-docker's /usr/bin/docker, plus one line in
    # dpkg's format for an installed docker.io (both at once was not captured): `docker` on
    # the PATH is then podman's, not Docker's.
    engine = FIXTURES.parent / "guest-debian13" / "DockerEngine.podman-docker.txt"
    lines = engine.read_text().splitlines()
    at = lines.index("@@packages") + 1
    lines.insert(at, "docker.io\tinstalled\t20.10.24+dfsg1-1+deb12u1+b6")
    fake, data = _fake("h")
    data["fake_responses"] = {"dpkg-query -W -f=": lines, **data["fake_responses"]}
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    with pytest.raises(DeployError) as info:
        _load(state)
    assert "not Docker's CLI" in str(info.value)
    assert _ops(state, hosts["@fake/h"]) == []


def test_steps_in_their_safe_order(tmp_path, monkeypatch, caplog):
    host = _host(
        "h", "DockerEngine.docker-io-running.txt", "DockerInventory.migration-two-services.txt"
    )
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert "volume appdata (50343971 bytes) -> volumes/appdata.tar" in caplog.text
    # Bundle and root's store on the same filesystem: their needs add up.
    assert "space on / (/dev/vda): needs 175739289 bytes, 83989827584 free" in caplog.text
    assert "image localhost/local/web:1 (" in caplog.text
    names = [sorted(n)[0].rsplit(" | ", 1)[-1] for n in _ops(state, hosts["@fake/h"])]
    migration = [n for n in names if not n.startswith(("Install", "Configure"))]
    assert names.index("Install podman, podman-compose, buildah, skopeo (beside Docker)") == 0
    assert migration == [
        "Export Docker's containers, volumes and images to "
        "/var/lib/podman-standard/docker-migration",
        "Move images and volumes into podman",
        "Re-create web as a podman service",
        "Re-create worker as a podman service",
        "Verify the podman services run",
        # The point of no return, only after the services were verified.
        "Stop, disable and remove the Docker engine",
        "Docker CLI compatibility",
        "docker ps shows the podman containers",
    ]


def test_after_the_migration_nothing_to_do(tmp_path, monkeypatch, caplog):
    # Captured on the migrated guest: engine packages removed, `docker` is the wrapper (whose
    # inventory would list podman's containers: the engine check comes first).
    host = _host("h", "DockerEngine.after-migration.txt", "DockerInventory.two-containers.txt")
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert _ops(state, hosts["@fake/h"]) == []
    assert "no Docker engine: nothing to migrate" in caplog.text


def test_no_room_for_the_bundle_stops_before_any_change(tmp_path, monkeypatch):
    host = _host(
        "h",
        "DockerEngine.docker-io-running.txt",
        "DockerInventory.migration-two-services.txt",
        mounts={"/tmp/cap/tiny/docker-migration": "PathMount.tiny-tmpfs.txt"},
        podman_migration_bundle="/tmp/cap/tiny/docker-migration",
    )
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with pytest.raises(DeployError) as info:
        _load(state)
    assert (
        "not enough free space on /tmp/cap/tiny (tmpfs) for the bundle "
        "/tmp/cap/tiny/docker-migration: needs 119438477 bytes (113.9 MiB) (52329613 bytes"
    ) in str(info.value)
    assert "13774848 bytes (13.1 MiB) free" in str(info.value)
    assert _ops(state, hosts["@fake/h"]) == []


def test_rootless_worker_sharing_web_volume_stops_before_any_change(tmp_path, monkeypatch):
    host = _host(
        "h",
        "DockerEngine.docker-io-running.txt",
        "DockerInventory.migration-two-services.txt",
        podman_rootless_users=[{"name": "vagrant"}],
        podman_migration_rootless={"worker": "vagrant"},
    )
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with pytest.raises(DeployError) as info:
        _load(state)
    assert "volume appdata is used by containers of different owners" in str(info.value)
    assert _ops(state, hosts["@fake/h"]) == []


def test_rootless_owner_beyond_the_users_mapping_stops_before_any_change(tmp_path, monkeypatch):
    # Every container to vagrant (so appdata, shared by both, is vagrant's); vagrant's account,
    # ranges and linger as captured on a converged host; appdata's owners answered by a
    # captured DataDir with a file owned by uid 70000 (beyond vagrant's 65536).
    fake, data = _host(
        "h",
        "DockerEngine.docker-io-running.txt",
        "DockerInventory.migration-two-services.txt",
        podman_rootless_users=[{"name": "vagrant"}],
        podman_migration_rootless={"*": "vagrant"},
    )
    rootless = FIXTURES.parent / "nspawn-debian12" / "RootlessUser.vagrant-lingering.txt"
    owners = DEVHOST / "DataDir.owners-beyond-65536.txt"
    data["fake_responses"] = {
        "getent passwd vagrant": rootless.read_text().splitlines(),
        "du -sb /var/lib/docker/volumes/appdata/_data |": owners.read_text().splitlines(),
        **data["fake_responses"],
    }
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    with pytest.raises(DeployError) as info:
        _load(state)
    assert (
        "volume appdata: uid 70000 cannot be mapped into vagrant's rootless podman, which maps "
        "uids 0-65536 (0 is vagrant, 1-65536 its subordinate ids)"
    ) in str(info.value)
    assert "gid" not in str(info.value)  # gid 100 and the rest fit
    assert _ops(state, hosts["@fake/h"]) == []


def test_rootless_worker_and_bind_mount_plan(tmp_path, monkeypatch, caplog):
    # The real-host test's Docker host (captured): worker to vagrant (account, ranges, linger
    # as captured on a converged host), workdata's owners as captured there; /srv/static
    # answered by the development machine's DataDir capture (only its size is read: web is
    # root's).
    fake, data = _host(
        "h",
        "DockerEngine.docker-io-running.txt",
        "DockerInventory.migration-rootless-bind.txt",
        podman_rootless_users=[{"name": "vagrant"}],
        podman_migration_rootless={"worker": "vagrant"},
    )
    rootless = FIXTURES.parent / "nspawn-debian12" / "RootlessUser.vagrant-lingering.txt"
    data["fake_responses"] = {
        "getent passwd vagrant": rootless.read_text().splitlines(),
        "du -sb /var/lib/docker/volumes/workdata/_data |": (
            (FIXTURES / "DataDir.workdata.txt").read_text().splitlines()
        ),
        "du -sb /srv/static |": (
            (DEVHOST / "DataDir.owners-beyond-65536.txt").read_text().splitlines()
        ),
        **data["fake_responses"],
    }
    # pyinfra's own Users fact (what services.service reads for a rootless user's home) has
    # no capture here: its lookup is covered by the services.service cases.
    monkeypatch.setattr(
        service_ops,
        "_scope",
        lambda name, user: (
            service_ops._Scope(user, user, user, f"/home/{user}")
            if user
            else service_ops._Scope(None, "root", "root", "/root")
        ),
    )
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert (
        "container worker [running] -> re-create as a podman service (rootless, vagrant's "
        "systemd)" in caplog.text
    )
    assert "volume workdata (1056792 bytes) -> volumes/workdata.tar (tar + sha256), then " in (
        caplog.text
    )
    assert "bind mount /srv/static of web (12312 bytes)" in caplog.text
    names = [sorted(n)[0].rsplit(" | ", 1)[-1] for n in _ops(state, hosts["@fake/h"])]
    migration = [n for n in names if not n.startswith(("Install", "Configure"))]
    assert migration == [
        # Subordinate ids and linger before anything of vagrant's podman runs.
        "Rootless podman for vagrant",
        "Export Docker's containers, volumes and images to "
        "/var/lib/podman-standard/docker-migration",
        "Move images and volumes into podman",
        "Re-create web as a podman service",
        "Re-create worker as a podman service",
        "Verify the podman services run",
        "Stop, disable and remove the Docker engine",
        "Docker CLI compatibility",
        "docker ps shows the podman containers",
    ]


def test_carried_settings_reach_the_service(tmp_path, monkeypatch):
    """worker of the captured two-service host given --device /dev/fuse, --gpus all and a
    healthcheck (the DERIVED cases) on a host whose CDI spec names the GPUs (the composed
    GPU-host capture): the deploy hands them to services.service."""
    fake, data = _host("h", "DockerEngine.docker-io-running.txt")
    case = {**DERIVED["cases"]["device-fuse"]}
    case["HostConfig"] = {**case["HostConfig"], **DERIVED["cases"]["gpus-all"]["HostConfig"]}
    case["Config"] = DERIVED["cases"]["healthcheck"]["Config"]
    output = derived_output(case, "DockerInventory.migration-two-services.txt")
    gpu_host = FIXTURES.parent / "upstream" / "NvidiaPresence.gpu-host.COMPOSED.txt"
    data["fake_responses"] = {
        "docker ps -aq": output,
        "nvidia-ctk cdi list": gpu_host.read_text().splitlines(),
        **data["fake_responses"],
    }
    calls = {}
    monkeypatch.setattr(
        service_ops, "service", lambda **kw: calls.setdefault(kw["service"].name, kw["service"])
    )
    state, _ = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    _load(state)
    assert calls["worker"].devices == ["/dev/fuse", "nvidia.com/gpu=all"]
    health = calls["worker"].healthcheck
    assert (health.command, health.interval) == (
        "wget -q -O /dev/null http://localhost/ || exit 1",
        "10s",
    )
    assert (calls["web"].devices, calls["web"].healthcheck) == ([], None)


@pytest.mark.parametrize("apply", [False, True])
def test_daemon_json_registries_applied_only_when_the_data_says_so(tmp_path, monkeypatch, apply):
    daemon_json = FIXTURES.parent / "upstream" / "DockerDaemonConfig.mirror-and-cidr.COMPOSED.txt"
    own = {"prefix": "quay.io", "location": "mirror.example.org/quay"}
    fake, data = _host(
        "h",
        "DockerEngine.docker-io-running.txt",
        "DockerInventory.migration-two-services.txt",
        podman_registries={"registries": [own]},
        podman_migration_registries=apply,
    )
    data["fake_responses"] = {
        "cat /etc/docker/daemon.json": daemon_json.read_text().splitlines(),
        **data["fake_responses"],
    }
    calls = []
    monkeypatch.setattr(registries_ops, "configure", lambda **kw: calls.append(kw))
    state, _ = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    _load(state)
    [call] = calls
    prefixes = [r["prefix"] for r in call["registries"]]
    proposed = ["docker.io", "docker-registry.default.svc:5000"]
    assert prefixes == ["quay.io"] + (proposed if apply else [])


# --- a run that lost its connection ----------------------------------------------------------


def _interrupted_host(state_line: str, export_state: str):
    """A fake host whose Docker daemon no longer answers the audit the way it did (its
    containers stopped by the export), and whose bundle records a migration under way:
    ``state_line`` in its state file, the plan of the captured host as its manifest, the
    export's transient unit ``export_state`` (systemctl show's Id/ActiveState lines, in the
    form of the captured DockerEngine output)."""
    fake, data = _host(
        "h", "DockerEngine.docker-io-running.txt", "DockerInventory.daemon-stopped.txt"
    )
    manifest = bundle_files(build_plan(_without_bind_mounts(_inventory()), BUNDLE))
    units = []
    for step in ("export", "move", "rollback"):
        active = export_state if step == "export" else "inactive"
        units += [f"Id=podman-standard-migration-{step}.service", f"ActiveState={active}", ""]
    answer = ["@@state", state_line, "@@manifest", *manifest["manifest.json"].splitlines()]
    data["fake_responses"] = {
        "podman-standard-migration-export.service": [*answer, "@@units", *units],
        **data["fake_responses"],
    }
    return fake, data


def test_a_migration_under_way_is_resumed_from_its_bundle(tmp_path, monkeypatch, caplog):
    """The plan comes from the bundle, not from a new audit (which would see Docker's
    containers stopped, and here cannot even reach the daemon); the steps are planned again,
    and the script waits for the export still running instead of starting it twice."""
    host = _interrupted_host("docker-stopped", "active")
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert (
        f"resuming the migration recorded in {BUNDLE} (state docker-stopped; step export "
        "still running): its plan, not a new audit"
    ) in caplog.text
    assert "container web [running] -> re-create as a podman service" in caplog.text
    names = [sorted(n)[0].rsplit(" | ", 1)[-1] for n in _ops(state, hosts["@fake/h"])]
    assert f"Export Docker's containers, volumes and images to {BUNDLE}" in names
    assert "Move images and volumes into podman" in names
    assert "Re-create web as a podman service" in names


def test_a_finished_or_failed_migration_is_not_resumed(tmp_path, monkeypatch):
    """Put back after a failure (docker-running): a new migration audits Docker again (here
    its daemon does not answer, so it stops before any change)."""
    host = _interrupted_host("docker-running", "inactive")
    state, hosts = _plan(tmp_path, monkeypatch, f"linux_servers = [{host!r}]\n")
    with pytest.raises(DeployError) as info:
        _load(state)
    assert "its daemon does not answer" in str(info.value)
    assert _ops(state, hosts["@fake/h"]) == []


@pytest.mark.parametrize("on_host", [True, False])
def test_a_compose_v1_stack_takes_its_order_from_its_file_on_the_host(
    tmp_path, monkeypatch, caplog, on_host
):
    """The captured compose 1.x stack (no depends_on label): the deploy reads the project's
    file (its relative config_files label made absolute) and hands app's service the
    requires on db; without the file the plan says the order is unknown. Every re-created
    service is given all of them as ``declared`` (their state read in one command)."""
    fake, data = _host(
        "h", "DockerEngine.docker-io-running.txt", "DockerInventory.migration-compose-v1.txt"
    )
    path = "/srv/stack/docker-compose.yml"
    text = (FIXTURES / "compose-v1-stack.docker-compose.yml").read_text().splitlines()
    answer = text if on_host else [f"{MISSING}{path}"]
    data["fake_responses"] = {f"test -e {path}": answer, **data["fake_responses"]}
    calls = {}
    monkeypatch.setattr(
        service_ops, "service", lambda **kw: calls.setdefault(kw["service"].name, kw)
    )
    state, _ = _plan(tmp_path, monkeypatch, f"linux_servers = [{(fake, data)!r}]\n")
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        _load(state)
    assert calls["stack_app_1"]["service"].requires == (["stack_db_1"] if on_host else [])
    order = f"depends_on of {path}" if on_host else "unknown: compose 1.x labels no depends_on"
    assert f"    start order: {order}" in caplog.text
    # In the plan's order: a dependency first; without one, by name.
    stack = ["stack_db_1", "stack_app_1"]
    names = ["fused", "hostnet", *(stack if on_host else sorted(stack))]
    assert list(calls) == names
    assert all([s.name for s in kw["declared"]] == names for kw in calls.values())
