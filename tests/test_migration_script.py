"""The bundle's migrate.sh (templates/migration/migrate.sh) run here, as root, against stub
``docker``, ``podman``, ``systemctl`` and ``runuser`` commands that keep volumes as plain
directories: the plumbing of each step (which owner's store a volume goes to, what is copied
back on rollback, what a failure puts back), not the engines. The id shift of a rootless
owner (``podman unshare``) needs a real podman: the real-host tier checks it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from facts.migration import DETACHED_STEPS, UNIT_PREFIX
from model.migration import build_plan, bundle_files
from operations.migration import SCRIPT_TEXT, with_unit_files
from tests.model.test_migration import (
    BUNDLE,
    _inventory,
    _two_services,
    _with_mounts,
    _without_bind_mounts,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("tar"), reason="needs root (tar --same-owner)"
)

# Volumes are directories: $STUB/docker/NAME and $STUB/podman/OWNER/NAME (+ NAME.label).
# Every call is logged to $STUB/log as "OWNER: ARGS".
DOCKER = r"""#!/bin/bash
set -e
echo "root: docker $*" >>"$STUB/log"
# A slow stop, while $STUB/block-stop exists (a step in the middle of its work).
while [ "$1" = stop ] && [ -e "$STUB/block-stop" ]; do sleep 0.05; done
case "$1 $2" in
"ps --format") cat "$STUB/docker-running" ;;
"ps --quiet") echo "0123abcd" ;;
"volume inspect")
    [ "$3" = --format ] && { [ -d "$STUB/docker/$5" ] && echo "$STUB/docker/$5" || exit 1; } ||
        [ -d "$STUB/docker/$3" ] ;;
"volume create") mkdir -p "$STUB/docker/$3" ;;
"save --output") echo "image $*" >"$3" ;;
"save "*) echo "image $*" ;;
"stop "* | "start "*) ;;
"container inspect" | "network inspect") ;; # /var/lib/docker kept them
"load --quiet") ;;
"--version ") echo "Docker version 20.10.24" ;;
*) echo "docker stub: $*" >&2; exit 1 ;;
esac
"""
PODMAN = r"""#!/bin/bash
set -e
owner=${STUB_OWNER:-root}
echo "$owner: podman $*" >>"$STUB/log"
store="$STUB/podman/$owner"
mkdir -p "$store"
case "$1 $2" in
"unshare "*) shift; exec "$@" ;;
"load --quiet") cat >/dev/null ;;
"tag "*) ;;
"volume exists") [ -d "$store/$3" ] ;;
"volume create") mkdir "$store/$5"; echo "$4" >"$store/$5.label" ;;
"volume rm") rm -rf "${store:?}/$4" "$store/$4.label" ;;
"volume inspect")
    case "$4" in
    *Labels*) cut -d= -f2 "$store/$5.label" ;;
    *) echo "$store/$5" ;;
    esac ;;
"container inspect") echo true ;;
"--version ") echo "podman version 4.3.1" ;;
"ps --format") cat "$STUB/podman-running-$owner" 2>/dev/null || true ;;
*) echo "podman stub: $*" >&2; exit 1 ;;
esac
"""
RUNUSER = r"""#!/bin/bash
# runuser -u USER -- env VAR=... CMD...
user=$2
shift 3
export STUB_OWNER=$user
echo "$user: runuser $*" >>"$STUB/log"
exec "$@"
"""
SYSTEMCTL = r"""#!/bin/bash
echo "root: systemctl $*" >>"$STUB/log"
# A detached step's transient unit is active while the systemd-run stub's process runs.
if [ "$1 $2" = "is-active --quiet" ] && [[ $3 == podman-standard-migration-* ]]; then
    [ -e "$STUB/units/$3" ]
fi
"""
# systemd-run --unit=U ... --setenv=K=V --property=StandardOutput=append:LOG ... -- CMD...:
# CMD in the background, apart from the caller (its own session, no inherited descriptors),
# its output appended to LOG; $STUB/units/U exists while it runs and holds its (main) pid.
SYSTEMD_RUN = r"""#!/bin/bash
echo "root: systemd-run $*" >>"$STUB/log"
unit= log=/dev/null
vars=()
while [ "$1" != -- ]; do
    case "$1" in
    --unit=*) unit=${1#--unit=} ;;
    --setenv=*=*) vars+=("${1#--setenv=}") ;;
    --setenv=*) name=${1#--setenv=} && vars+=("$name=${!name}") ;; # the caller's value
    --property=StandardOutput=append:*) log=${1#--property=StandardOutput=append:} ;;
    esac
    shift
done
shift
mkdir -p "$STUB/units"
setsid bash -c 'env "$@" & echo $! >"$0"; wait $!; rm -f "$0"' "$STUB/units/$unit" \
    "${vars[@]}" "$@" >>"$log" 2>&1 </dev/null &
while [ ! -s "$STUB/units/$unit" ]; do sleep 0.01; done
"""
GETENT = r"""#!/bin/bash
echo "$2:x:1000:1000::$STUB/home/$2:/bin/bash"
"""
ID = r"""#!/bin/bash
echo 1000
"""
STUBS = {
    "docker": DOCKER,
    "podman": PODMAN,
    "runuser": RUNUSER,
    "systemctl": SYSTEMCTL,
    "systemd-run": SYSTEMD_RUN,
    "getent": GETENT,
    "id": ID,
}


class Host:
    """A bundle directory and stubbed engines under ``tmp_path``."""

    def __init__(self, tmp_path: Path, plan: dict):
        self.stub = tmp_path / "stub"
        self.bundle = tmp_path / "bundle"
        bin_dir = self.stub / "bin"
        bin_dir.mkdir(parents=True)
        for name, text in STUBS.items():
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.bundle.mkdir()
        for path, text in bundle_files(with_unit_files(plan)).items():
            (self.bundle / path).write_text(text)
        (self.bundle / "migrate.sh").write_text(SCRIPT_TEXT)
        running = [c["name"] for c in plan["containers"] if c["recreate"]]
        (self.stub / "docker-running").write_text("".join(f"{n}\n" for n in running))
        self.env = dict(os.environ, STUB=str(self.stub), PATH=f"{bin_dir}:{os.environ['PATH']}")
        for volume in plan["volumes"]:
            self.fill(self.stub / "docker" / volume["name"], volume["name"])

    @staticmethod
    def fill(path: Path, name: str) -> None:
        (path / "keep").mkdir(parents=True)
        (path / "keep" / "known.txt").write_text(f"{name} at the migration\n")
        os.chown(path / "keep" / "known.txt", 1234, 2345)
        (path / "keep").chmod(0o2750)
        (path / "link").symlink_to("keep/known.txt")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(self.bundle / "migrate.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
        )

    def digest(self, path: Path) -> str:
        return self.run("digest", str(path)).stdout.strip()

    def log(self) -> list[str]:
        log = self.stub / "log"
        return log.read_text().splitlines() if log.exists() else []

    def state(self) -> str:
        return (self.bundle / "state").read_text().strip()


@pytest.fixture
def host(tmp_path):
    plan = build_plan(_two_services("workdata"), BUNDLE, {"worker": "vagrant"})
    return Host(tmp_path, plan)


def test_export_then_move_into_each_owners_store(host):
    before = {v: host.digest(host.stub / "docker" / v) for v in ("appdata", "workdata")}
    result = host.run("export")
    assert result.returncode == 0, result.stderr
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=host.bundle, check=True)
    sums = (host.bundle / "SHA256SUMS").read_text()
    assert "migrate.sh" in sums and "volumes/workdata.tar" in sums
    result = host.run("move")
    assert result.returncode == 0, result.stderr
    assert host.state() == "moved"
    # appdata is root's, workdata vagrant's (through runuser and podman unshare).
    assert host.digest(host.stub / "podman" / "root" / "appdata") == before["appdata"]
    assert host.digest(host.stub / "podman" / "vagrant" / "workdata") == before["workdata"]
    log = host.log()
    assert "vagrant: podman unshare tar --extract --file - --numeric-owner --same-owner " in (
        "\n".join(log)
    )
    assert any(line.startswith("vagrant: podman load") for line in log)  # busybox: worker's
    assert not any(
        line.startswith("root: podman volume create --label") and "workdata" in line for line in log
    )


def test_failed_move_starts_dockers_containers_again(host):
    assert host.run("export").returncode == 0
    # A podman volume of that name that this migration did not create.
    (host.stub / "podman" / "root" / "appdata").mkdir(parents=True)
    (host.stub / "podman" / "root" / "appdata.label").write_text("other\n")
    result = host.run("move")
    assert result.returncode != 0
    assert "FAILED at step 'restore volume appdata into root's podman'" in result.stderr
    assert host.state() == "docker-running"
    assert "root: docker start web" in host.log() and "root: docker start worker" in host.log()


def test_verify_and_docker_ps_ask_each_owner(host):
    assert host.run("export").returncode == 0 and host.run("move").returncode == 0
    assert host.run("verify").returncode == 0
    assert "root: systemctl --user --machine=vagrant@.host is-active --quiet worker.service" in (
        host.log()
    )
    # `docker` is the compatibility layer by then: podman, as whoever runs it.
    (host.stub / "bin" / "docker").write_text('#!/bin/bash\nexec podman "$@"\n')
    (host.stub / "podman-running-root").write_text("web\n")
    result = host.run("docker-ps")
    assert result.returncode != 0
    assert "docker ps (vagrant) does not list worker" in result.stderr
    (host.stub / "podman-running-vagrant").write_text("worker\n")
    result = host.run("docker-ps")
    assert result.returncode == 0, result.stderr
    assert "docker ps (vagrant) lists worker" in result.stderr
    assert "vagrant: runuser env XDG_RUNTIME_DIR=/run/user/1000 docker ps --format {{.Names}}" in (
        host.log()
    )


def _migrated(host):
    for step in ("export", "move", "verify"):
        assert host.run(step).returncode == 0
    (host.bundle / "state").write_text("retired\n")


def test_rollback_brings_podmans_data_back_into_docker(host):
    _migrated(host)
    for owner, name in (("root", "appdata"), ("vagrant", "workdata")):
        (host.stub / "podman" / owner / name / "written-under-podman.txt").write_text("new\n")
    shutil.rmtree(host.stub / "docker" / "workdata")  # /var/lib/docker lost this one
    want = {
        "appdata": host.digest(host.stub / "podman" / "root" / "appdata"),
        "workdata": host.digest(host.stub / "podman" / "vagrant" / "workdata"),
    }
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    for name in ("appdata", "workdata"):
        assert host.digest(host.stub / "docker" / name) == want[name]
        assert (host.stub / "docker" / name / "written-under-podman.txt").exists()
    assert host.state() == "rolled-back"
    assert "volume workdata restored from vagrant's podman volume as it is now" in result.stderr
    # What came up with the daemon is stopped before the data is replaced, and what ran
    # before the migration is started after.
    log = host.log()
    after = log[log.index("root: docker stop 0123abcd") :]
    first = after.index("root: podman volume exists appdata")
    assert first < after.index("root: docker start web")


def test_rollback_from_the_bundle_restores_the_migration_state(host):
    _migrated(host)
    at_migration = json.loads((host.bundle / "manifest.json").read_text())["volumes"]
    (host.stub / "podman" / "root" / "appdata" / "written-under-podman.txt").write_text("new\n")
    (host.stub / "docker" / "appdata" / "stale.txt").write_text("stale\n")
    result = host.run("rollback", "bundle")
    assert result.returncode == 0, result.stderr
    for volume in at_migration:
        want = (host.bundle / volume["content_digest"]).read_text().strip()
        assert host.digest(host.stub / "docker" / volume["name"]) == want
    assert not (host.stub / "docker" / "appdata" / "written-under-podman.txt").exists()
    assert not (host.stub / "docker" / "appdata" / "stale.txt").exists()


def test_rollback_keeps_docker_volume_that_podman_lost(host):
    _migrated(host)
    shutil.rmtree(host.stub / "podman" / "vagrant" / "workdata")
    (host.stub / "docker" / "workdata" / "kept.txt").write_text("kept\n")
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert (host.stub / "docker" / "workdata" / "kept.txt").exists()
    assert "vagrant's podman has no such volume; Docker's copy left as the migration" in (
        result.stderr
    )


def test_rollback_from_the_bundle_when_neither_engine_has_the_volume(host):
    _migrated(host)
    shutil.rmtree(host.stub / "podman" / "vagrant" / "workdata")
    shutil.rmtree(host.stub / "docker" / "workdata")
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    want = (host.bundle / "volumes" / "workdata.content-sha256").read_text().strip()
    assert host.digest(host.stub / "docker" / "workdata") == want
    assert "volume workdata restored from the bundle (as at the migration)" in result.stderr


def test_rollback_refuses_a_bundle_that_does_not_verify(host):
    _migrated(host)
    with open(host.bundle / "volumes" / "appdata.tar", "ab") as archive:
        archive.write(b"\0")
    before = host.log()
    result = host.run("rollback")
    assert result.returncode != 0
    assert "FAILED at step 'check the bundle's checksums'" in result.stderr
    assert host.log() == before  # neither engine was called
    assert host.state() == "retired"


@pytest.fixture(params=[None, "nobody"], ids=["root", "rootless"])
def bind_host(tmp_path, request):
    """The captured host whose web bind-mounts a host directory (here under tmp_path), web
    root's or (rootless) an existing user's."""
    source = tmp_path / "srv" / "web"
    inventory = _with_mounts(_inventory(), web=[("bind", str(source), "/www")])
    rootless = {"web": request.param} if request.param else {}
    plan = build_plan(inventory, BUNDLE, rootless, service_root=str(tmp_path / "apps"))
    assert plan["problems"] == []
    host = Host(tmp_path, plan)
    Host.fill(source, "web's files")
    host.owner = request.param or "root"
    host.source = source
    host.copy = tmp_path / "apps" / "web" / "host" / str(source).lstrip("/")
    return host


def test_bind_mount_copied_into_the_service_directory(bind_host):
    host = bind_host
    want = host.digest(host.source)
    for step in ("export", "move"):
        result = host.run(step)
        assert result.returncode == 0, result.stderr
    assert host.digest(host.copy) == want
    assert host.digest(host.source) == want  # the original stays
    service_dir = host.stub.parent / "apps" / "web"
    assert service_dir.name == "web" and oct(service_dir.stat().st_mode & 0o777) == "0o750"
    assert service_dir.owner() == host.owner
    assert f"bind mount {host.source} copied to {host.copy} ({host.owner}'s)" in result.stderr
    # A second move keeps the copy of the same data; other data there is refused.
    assert host.run("move").returncode == 0
    (host.copy / "stray").write_text("x")
    result = host.run("move")
    assert result.returncode != 0 and "holds other data than" in result.stderr


def test_rollback_copies_the_services_data_back_to_the_host_directory(bind_host):
    host = bind_host
    _migrated(host)
    (host.copy / "written-under-podman.txt").write_text("new\n")
    want = host.digest(host.copy)
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert host.digest(host.source) == want
    result = host.run("rollback", "bundle")
    assert result.returncode == 0, result.stderr
    assert not (host.source / "written-under-podman.txt").exists()
    digest = (host.bundle / "binds" / "web-0.content-sha256").read_text().strip()
    assert host.digest(host.source) == digest


def test_export_stops_a_paused_container_it_carries(tmp_path):
    # `docker ps` lists a paused container (Docker's stop unpauses it after the signal).
    inventory = _inventory("DockerInventory.migration-worker-paused.DERIVED.txt")
    host = Host(tmp_path, build_plan(_without_bind_mounts(inventory), BUNDLE))
    (host.stub / "docker-running").write_text("web\nworker\n")
    result = host.run("export")
    assert result.returncode == 0, result.stderr
    assert "root: docker stop worker" in host.log()


def test_rollback_restores_a_host_directory_holding_its_own_copy(tmp_path):
    # What the plan now refuses (-v /srv:/srv with the service root under /srv), forced
    # through: the restore must not delete the source (and the copy inside it) before the
    # copy is read and verified.
    source = tmp_path / "srv"
    inventory = _with_mounts(_inventory(), web=[("bind", str(source), "/www")])
    plan = build_plan(inventory, BUNDLE, service_root=str(source / "apps"))
    assert [p for p in plan["problems"] if "holds the service root" in p]
    plan["problems"] = []
    host = Host(tmp_path, plan)
    Host.fill(source, "web's files")
    _migrated(host)
    copy = source / "apps" / "web" / "host" / str(source).lstrip("/")
    (copy / "written-under-podman.txt").write_text("new\n")
    want = host.digest(copy)
    result = host.run("rollback")
    assert result.returncode == 0, result.stderr
    assert host.digest(source) == want
    assert (source / "written-under-podman.txt").read_text() == "new\n"


def test_rollback_leaves_the_host_directory_when_the_copy_does_not_verify(bind_host):
    host = bind_host
    _migrated(host)
    (host.source / "kept.txt").write_text("the host's data\n")
    before = host.digest(host.source)
    # The bundle's archive no longer holds what its digest says (SHA256SUMS made to match).
    other = host.stub.parent / "other"
    Host.fill(other, "other data")
    archive = host.bundle / "binds" / "web-0.tar"
    subprocess.run(["tar", "--create", "--file", str(archive), "-C", str(other), "."], check=True)
    sums = subprocess.run(
        ["sha256sum", "binds/web-0.tar"], cwd=host.bundle, capture_output=True, text=True
    ).stdout
    lines = (host.bundle / "SHA256SUMS").read_text().splitlines()
    (host.bundle / "SHA256SUMS").write_text(
        "".join(sums if line.endswith(" binds/web-0.tar") else line + "\n" for line in lines)
    )
    result = host.run("rollback", "bundle")
    assert result.returncode != 0
    assert f"bind mount {host.source}: the copy to restore does not verify" in result.stderr
    assert f"{host.source} left as it was" in result.stderr
    assert host.digest(host.source) == before
    assert [p.name for p in host.source.iterdir() if p.name.startswith(".podman")] == []


def _wait_for(what: str, check, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)


def _detached(host: Host, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", str(host.bundle / "migrate.sh"), "detached", *args],
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_detached_step_outlives_its_session_and_is_not_started_twice(host):
    """The export as a transient unit: the session that started it is killed (a lost SSH
    connection) while Docker's containers are being stopped; the step goes on; a second
    session waits for it instead of starting another, and ends as it ended; a third one
    finds it finished."""
    unit = host.stub / "units" / "podman-standard-migration-export.service"
    (host.stub / "block-stop").touch()
    first = _detached(host, "export")
    _wait_for("the export to stop a container", lambda: "root: docker stop web" in host.log())
    first.kill()
    first.wait(timeout=10)
    assert unit.exists()  # still running, without its session
    second = _detached(host, "export")
    _wait_for("the second session to wait", lambda: host.log().count("root: docker stop web") == 1)
    (host.stub / "block-stop").unlink()
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "step export is running already (unit podman-standard-migration-export.service" in err
    assert "migration: bundle " in err  # the step's own log, shown to the waiting session
    assert sum("systemd-run" in line for line in host.log()) == 1
    assert host.log().count("root: docker stop web") == 1
    assert host.state() == "exported"
    assert (host.bundle / "logs" / "export.exit").read_text() == "0\n"
    third = host.run("detached", "export")
    assert third.returncode == 0
    assert "step export finished earlier (state exported): not run again" in third.stderr
    assert sum("systemd-run" in line for line in host.log()) == 1


def test_a_detached_step_that_fails_ends_its_session_with_its_code(host):
    (host.stub / "docker-running").write_text("web\n")  # worker stopped since the audit
    result = host.run("detached", "export")
    assert result.returncode == 1
    assert "Docker's running containers changed since the audit (web now, web worker then)" in (
        result.stderr
    )
    assert (host.bundle / "logs" / "export.exit").read_text() == "1\n"


def test_a_detached_step_killed_half_way_is_reported_as_such(host):
    """A step killed outright (nothing of it could record how it ended): the waiting session
    says so, naming the log, instead of taking it for a success."""
    (host.stub / "block-stop").touch()
    session = _detached(host, "export")
    unit = host.stub / "units" / "podman-standard-migration-export.service"
    _wait_for("the export to stop a container", lambda: "root: docker stop web" in host.log())
    os.kill(int(unit.read_text()), signal.SIGKILL)  # the step's main process
    (host.stub / "block-stop").unlink()
    _, err = session.communicate(timeout=60)
    assert session.returncode == 1
    assert (
        "step export ended without recording how (unit podman-standard-migration-export.service "
        "stopped or killed); see " + str(host.bundle / "logs" / "export.log")
    ) in err
    assert host.state() == "docker-stopped"  # where it stands: the next run resumes the export


def test_the_script_names_the_units_the_fact_reads():
    assert f"UNIT_PREFIX={UNIT_PREFIX}\n" in SCRIPT_TEXT
    assert all(f"{s})" in SCRIPT_TEXT or f"{s} |" in SCRIPT_TEXT for s in DETACHED_STEPS)


def test_export_keeps_a_compose_projects_own_file(tmp_path):
    """The compose file named by the containers' config_files label goes into the bundle
    (and its SHA256SUMS) when it is on the host; one that is not is said, not fatal."""
    plan = build_plan(_without_bind_mounts(_inventory()), BUNDLE)
    compose = tmp_path / "srv" / "stack" / "compose.yaml"
    compose.parent.mkdir(parents=True)
    compose.write_text("services:\n  web:\n    image: busybox\n")
    plan["compose_projects"] = [
        {
            "name": "stack",
            "containers": ["web"],
            "working_dir": str(compose.parent),
            "files": [
                {"path": str(compose), "archive": "compose/stack/0-compose.yaml"},
                {"path": str(tmp_path / "gone.yaml"), "archive": "compose/stack/1-gone.yaml"},
            ],
        }
    ]
    host = Host(tmp_path / "h", plan)
    result = host.run("export")
    assert result.returncode == 0, result.stderr
    kept = host.bundle / "compose" / "stack" / "0-compose.yaml"
    assert kept.read_text() == compose.read_text()
    assert "  compose/stack/0-compose.yaml\n" in (host.bundle / "SHA256SUMS").read_text()
    assert f"compose file {tmp_path / 'gone.yaml'} is not on this host: not kept" in result.stderr
