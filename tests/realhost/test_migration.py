"""Docker -> Podman migration on a real Debian 12 guest running Debian's docker.io (issue 6).

The guest boots the testbed's ``docker`` image variant: Debian's docker.io and the Podman
toolset installed at image build time (natively, in seconds; in a guest under emulation the two
installs took about 15 minutes), so only the migration itself runs under emulation. The install
of the toolset on a bare host is proven by the converge module. Docker is populated: an image
pulled from the local registry, an image that exists only on the guest (``docker build``), two
containers (``web`` with ``--restart always`` on the local-only image, on the named volume
``appdata`` and a read-only bind mount of the host directory /srv/static; ``worker`` on the
pulled one, on the named volume ``workdata``), all holding files of known sha256 with non-root
owners and modes. The guest is then snapshotted; each test path boots its own copy, one at a
time:

- success: the migrate deploy, ``worker`` moved to the rootless user ``vagrant``
  (``podman_migration_rootless``), then identical volume content in podman (``workdata`` as
  vagrant's containers see it, its owners shifted into vagrant's subordinate ids on the host;
  web's copy of /srv/static in its service directory, read-only, the original in place),
  ``web`` running as root's service and ``worker`` as vagrant's, Docker's packages gone,
  ``docker ps`` answered by podman for each, a reboot that brings both back, and a second run
  that changes nothing; a third container, ``tuned`` (root's, created on this copy only), with
  the runtime settings the services carry (TUNED_FLAGS), each shown by ``podman inspect``
  after the migration and kept in the bundle's docker-compose.yml and docker-restore.sh;
  ``fused`` (a device, a healthcheck) and ``hostnet`` (the host's network) likewise; a stack
  Debian's docker-compose 1.x brought up (``stack_db_1`` serving its named volume, ``stack_app_1``
  depending on it and fetching from it by the name ``db``), which comes back as services in
  its order (read from its compose file: compose 1.x labels no depends_on), on its network
  with its names, its volume identical; the first run is killed (pyinfra and its SSH
  connections) while the volume move runs, which goes on as its transient unit, and the next
  run resumes from the bundle and completes; the long steps ran as transient units, their
  logs in the bundle;
- rollback: a bundle that does not verify is refused with nothing changed; then, with files
  written under podman since the migration, the rollback deploy brings Docker back with its
  containers and podman's data as it is now, and a second rollback changes nothing;
- failure: a bundle directory on a filesystem too small for it is refused, figures given,
  before anything changes; then the same migration onto a container store too small for the
  volume (a 40 MiB filesystem on the store's disk, which the plan can only measure as the
  device's size while it is not mounted): the move fails mid-way and Docker is still
  installed, enabled and running, its containers up and its volumes unchanged.

Stage durations are printed at the end of the session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from facts.docker import DataDir, DockerEngine, DockerInventory
from facts.migration import MigrationBundle
from testbed.fleet import REPO, GuestSpec, Testbed
from testbed.guests import launch
from testbed.images import build_image
from tests.realhost.conftest import _TIMINGS

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one guest at a time: runs beside another one-guest module (tier.py)
MINUTES = 36.5  # a full tier run, 2026-12-02: 2192 s (tier.py balances the lanes)

DEPLOY = "deploys/migrate_from_docker.py"
ROLLBACK = "deploys/rollback_to_docker.py"
SPEC = GuestSpec("bookworm", "server", "docker")
BUNDLE = "/var/lib/podman-standard/docker-migration"
VOLUME = "appdata"
WORK_VOLUME = "workdata"
VOLUMES = (VOLUME, WORK_VOLUME)
# A host directory web bind-mounts read-only: carried as a copy in web's service directory.
STATIC = "/srv/static"
# web's copy of it: the testbed server is in the motoko group, whose podman_service_root is
# /space/containers/apps (on the store's disk, which the deploy mounts at /space).
STATIC_COPY = f"/space/containers/apps/web/host{STATIC}"
# worker moves to this rootless user (the testbed declares it in podman_rootless_users).
ROOTLESS = {"podman_migration_rootless": {"worker": "vagrant"}}
# A third container, root's, with the runtime settings the services carry (issue 13): created
# on the success path's copy only; after the migration each shows in `podman inspect`.
TUNED_FLAGS = (
    "--shm-size 96m --cap-add NET_ADMIN --memory 128m --cpus 0.5 --pids-limit 200 "
    "--user 1000:1000 --workdir /tmp --hostname tuned-host --ulimit nofile=1024:2048 "
    "--read-only --tmpfs /scratch:size=8m --stop-timeout 5 --label org.example.team=infra "
    "--sysctl net.core.somaxconn=512"
)
# A stack Debian's docker-compose (1.x) brings up, on the success path's copy: db serves its
# volume's state file over HTTP, app fetches it by db's name on the project network.
# Compose 1.x labels no depends_on: the plan reads it from this file.
STACK_DIR = "/srv/stack"
STACK_VOLUME = "stack_stackdata"
STACK_CONTAINERS = ["stack_app_1", "stack_db_1"]
STACK = """version: "3.8"
services:
  db:
    image: {image}
    command:
      - sh
      - -c
      - trap 'exit 0' TERM; echo ready > /data/state; httpd -f -p 8000 -h /data & wait
    volumes:
      - stackdata:/data
    restart: always
  app:
    image: {image}
    command:
      - sh
      - -c
      - trap 'exit 0' TERM; while :; do wget -q -O /tmp/seen http://db:8000/state; sleep 5; done
    depends_on:
      - db
    restart: always
volumes:
  stackdata:
"""
# Two more of root's containers with what tuned does not hold: a device and a healthcheck;
# the host's network.
FUSED_FLAGS = (
    "--device /dev/fuse --health-cmd 'test -c /dev/fuse' --health-interval 10s --health-retries 2"
)
HOSTNET_FLAGS = "--restart unless-stopped --network host"
# What root's podman runs after the migration.
ROOT_SERVICES = sorted(["tuned", "web", "fused", "hostnet", *STACK_CONTAINERS])
# The move's transient unit (migrate.sh ``detached``): the first run is killed while it runs.
MOVE_UNIT = "podman-standard-migration-move.service"
# vagrant's systemd user manager, reached as root (as the services operation does).
USER_CTL = "systemctl --user --machine=vagrant@.host"
BIG_MIB = 48
# Files with non-root owners, odd modes, a symlink, a setgid directory; one big file for a
# measurable data volume. The digests are computed on the guest and compared across engines.
POPULATE = f"""
set -e
cd /data
mkdir -p keep/deep && chmod 2750 keep && chown 1000:1000 keep
printf 'known content\\n' > keep/known.txt
chown 1234:2345 keep/known.txt && chmod 640 keep/known.txt
printf 'secret\\n' > keep/deep/private && chmod 600 keep/deep/private && chown 65534:65534 keep/deep
ln -s keep/known.txt link
head -c {BIG_MIB * 2**20} /dev/urandom > big.bin && chmod 444 big.bin && chown 33:33 big.bin
"""
# worker's own volume: owners that rootless podman maps (0 becomes vagrant, N its N-th
# subordinate id), a setgid directory, a file owned by root.
POPULATE_WORK = """
set -e
cd /data
mkdir -p conf && chown 999:999 conf && chmod 2770 conf
printf 'worker state\\n' > conf/state.txt
chown 1000:1000 conf/state.txt && chmod 640 conf/state.txt
printf 'root owned\\n' > rootfile && chmod 600 rootfile
head -c 1048576 /dev/urandom > blob.bin && chown 1000:100 blob.bin
"""
# Type, mode, numeric owner, path and link target of every entry, then each file's sha256.
LISTING = (
    "cd {dir} && find . -printf '%y %m %U:%G %p -> %l\\n' | LC_ALL=C sort && "
    "find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum"
)
# What worker and tuned run: a shell that exits on SIGTERM (a shell looping on sleep as PID 1
# ignores it, and every stop would wait the engine's timeout before SIGKILL). Carried as
# written: quotes and ';' go through the migrated unit.
IDLE = "sh -c " + shlex.quote("trap 'exit 0' TERM; while :; do sleep 1; done")
# The session's stage timings: printed with the others at the end of the run.
TIMINGS = _TIMINGS
# A folder holding bookworm-server.qcow2 and bookworm-server-extra.qcow2 of an earlier run's
# Docker guest (its snapshot, copied out of pytest's temporary folder): skips booting and
# populating Docker when re-running the migration.
SNAPSHOT_ENV = "PODMAN_STANDARD_MIGRATION_SNAPSHOT"


@contextmanager
def stage(name: str):
    with TIMINGS.stage(name):
        yield


def sudo(guest, command: str, timeout: float = 900) -> str:
    result = guest.run(f"sudo bash -c {shlex.quote(command)}", timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def vagrant(guest, command: str, timeout: float = 300) -> str:
    """``command`` as vagrant, the SSH user (its login session: its rootless podman, its
    systemd user manager)."""
    result = guest.run(command, timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def user_unit_log(guest, name: str) -> str:
    """vagrant's unit NAME: its status and this boot's journal lines (the failure's reason)."""
    status = guest.run(f"sudo {USER_CTL} status --no-pager -l {name}").stdout
    journal = guest.run(
        "sudo journalctl -b --no-pager -o short-monotonic"
        f" _SYSTEMD_USER_UNIT={name}.service | tail -n 40"
    ).stdout
    # When the user's manager started, against when /space was mounted.
    order = guest.run(
        "systemctl show -p ActiveEnterTimestampMonotonic user@1000.service space.mount;"
        " findmnt -n /space; grep /space /etc/fstab"
    ).stdout
    return f"{status}\n--- journal of {name} ---\n{journal}\n--- boot order ---\n{order}"


def podman_untouched(guest) -> bool:
    """Podman (installed with the image) holds no volume, container or image of root's, no
    volume of vagrant's, and no service unit of the migration exists: what a refused or dry
    run must leave. vagrant's store is read from the filesystem: running its podman before the
    migration gives it subordinate ids would set up its store without them."""
    root = [guest.run(f"sudo podman {what} -q") for what in ("volume ls", "ps -a", "images")]
    other = guest.run(
        "sudo sh -c 'find ~vagrant/.local/share/containers/storage/volumes -mindepth 1 "
        "-maxdepth 1 2>/dev/null; ls /etc/systemd/system/web.service "
        "~vagrant/.config/systemd/user/worker.service 2>/dev/null; true'"
    )
    results = [*root, other]
    return all(r.returncode == 0 and not r.stdout.strip() for r in results)


def docker_listings(guest) -> dict[str, str]:
    """Each Docker volume's listing (owners, modes, paths, sha256s) as Docker sees it, and
    that of web's bind-mounted host directory."""
    listings = {
        v: sudo(guest, LISTING.format(dir=f"/var/lib/docker/volumes/{v}/_data")) for v in VOLUMES
    }
    return {**listings, STATIC: sudo(guest, LISTING.format(dir=STATIC))}


def podman_listings(guest) -> dict[str, str]:
    """The same of the podman side: appdata in root's store, workdata as vagrant's containers
    see it (inside its user namespace), web's copy of the bind-mounted directory."""
    root = sudo(guest, f"podman volume inspect --format '{{{{.Mountpoint}}}}' {VOLUME}").strip()
    work = vagrant(guest, f"podman volume inspect --format '{{{{.Mountpoint}}}}' {WORK_VOLUME}")
    return {
        VOLUME: sudo(guest, LISTING.format(dir=root)),
        WORK_VOLUME: vagrant(
            guest, f"podman unshare sh -c {shlex.quote(LISTING.format(dir=work.strip()))}"
        ),
        STATIC: sudo(guest, LISTING.format(dir=STATIC_COPY)),
    }


@pytest.fixture(scope="module")
def docker_host(registry, tmp_path_factory, no_shared_guests):
    """A snapshot of a Debian 12 guest running Docker with two containers, two named volumes,
    a bind-mounted host directory and a local-only image; and what the volumes and the
    directory held (their listings, as Docker sees them)."""
    if os.environ.get(SNAPSHOT_ENV):
        folder = Path(os.environ[SNAPSHOT_ENV])
        snapshot = dataclasses.replace(
            build_image(SPEC.release, print, SPEC.variant),
            disk=folder / f"{SPEC.name}.qcow2",
            extra_disk=folder / f"{SPEC.name}-extra.qcow2",
        )
        return snapshot, None
    workdir = tmp_path_factory.mktemp("migration-docker")
    bed = Testbed([SPEC], workdir, workdir / "hosts.json", registry=registry)
    bed.timings = TIMINGS
    try:
        bed.up()
        guest = bed.guests[SPEC.name]
        mirror = registry.guest_address
        # docker.io (and apparmor, without which dockerd starts no container here) came with
        # the image; the local registry's address is this run's, so Docker learns it now.
        with stage("Docker: the local registry as an insecure registry, daemon restarted"):
            sudo(
                guest,
                "mkdir -p /etc/docker && "
                f"""echo '{{"insecure-registries": ["{mirror}"]}}' > /etc/docker/daemon.json && """
                "systemctl restart docker.service && docker info --format '{{.ServerVersion}}'",
                timeout=300,
            )
        with stage("populate Docker: images, volume, containers"):
            sudo(guest, f"docker pull -q {mirror}/library/busybox:latest")
            sudo(guest, f"docker pull -q {mirror}/library/nginx:alpine")
            sudo(
                guest,
                "mkdir -p /root/app && cd /root/app && echo 'migrated web' > index.html && "
                "printf 'FROM %s\\nCOPY index.html /www/index.html\\n"
                'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\\n\' '
                f"{mirror}/library/nginx:alpine > Dockerfile && docker build -q -t local/web:1 .",
            )
            sudo(guest, f"docker volume create {VOLUME}")
            sudo(
                guest,
                f"docker run --rm -v {VOLUME}:/data {mirror}/library/busybox:latest "
                f"sh -c {shlex.quote(POPULATE)}",
            )
            sudo(
                guest,
                f"mkdir -p {STATIC}/css && echo 'static file' > {STATIC}/css/site.css && "
                f"chown -R 33:33 {STATIC} && chmod 750 {STATIC}",
            )
            sudo(
                guest,
                f"docker run -d --name web --restart always -p 8080:80 -v {VOLUME}:/data "
                f"-v {STATIC}:/static:ro local/web:1",
            )
            sudo(guest, f"docker volume create {WORK_VOLUME}")
            sudo(
                guest,
                f"docker run --rm -v {WORK_VOLUME}:/data {mirror}/library/busybox:latest "
                f"sh -c {shlex.quote(POPULATE_WORK)}",
            )
            sudo(
                guest,
                f"docker run -d --name worker -e 'GREETING=hello world' "
                f"-v {WORK_VOLUME}:/srv/data {mirror}/library/busybox:latest {IDLE}",
            )
        capture(guest, workdir, "docker-populated")
        before = docker_listings(guest)
        images = json.loads(sudo(guest, "docker image inspect local/web:1"))
        assert images[0]["RepoDigests"] == []  # exists only here: no registry can give it back
        with stage("snapshot the Docker guest"):
            snapshot = guest.snapshot()
    finally:
        bed.down()
    return snapshot, before


def capture(guest, workdir, label: str) -> None:
    """The Docker facts' raw output on the guest, kept for the fast tier's fixtures."""
    for fact in (DockerEngine, DockerInventory):
        output = sudo(guest, fact().command())
        (workdir / f"{fact.__name__}.{label}.txt").write_text(output)
    path = f"/var/lib/docker/volumes/{WORK_VOLUME}/_data"
    output = sudo(guest, DataDir().command(path).get_raw_value())
    (workdir / f"DataDir.{label}.txt").write_text(output)


def boot_copy(docker_host, registry, workdir, data: dict | None = None) -> Testbed:
    """A guest booted from the Docker snapshot, described to pyinfra by a state file whose
    host data has ``data`` merged in."""
    snapshot, _ = docker_host
    bed = Testbed([SPEC], workdir, workdir / "hosts.json", registry=registry)
    bed.timings = TIMINGS
    bed.data_overrides[SPEC.name] = dict(data or {})
    with stage("boot a copy of the Docker guest"):
        guest = launch(SPEC.name, snapshot, workdir, extra_disk_gib=4)
    bed.guests = {SPEC.name: guest}
    bed.write_state()
    # The snapshot's power-off stopped worker (restart policy "no"): start it as it ran.
    sudo(guest, "docker start worker")
    # What Docker's volumes hold on this copy, measured before anything else runs.
    bed.before = docker_listings(guest)
    if docker_host[1] is not None:
        assert bed.before == docker_host[1]
    return bed


def stack_listing(guest, engine: str = "docker") -> str:
    mountpoint = sudo(
        guest, f"{engine} volume inspect --format '{{{{.Mountpoint}}}}' {STACK_VOLUME}"
    )
    return sudo(guest, LISTING.format(dir=mountpoint.strip()))


def stack_answers(guest, engine: str) -> str:
    """What app fetches from db by db's name on the project network, under ``engine``."""
    fetch = "wget -q -O- http://db:8000/state"
    deadline = time.monotonic() + 120
    while True:
        result = guest.run(f"sudo {engine} exec stack_app_1 {fetch}")
        if result.returncode == 0 or time.monotonic() > deadline:
            return result.stdout + result.stderr
        time.sleep(3)


def killed_in_the_move(bed, guest) -> dict:
    """Start the migration and kill pyinfra (its SSH connections with it) while the volume
    move runs as its transient unit; what the guest shows right after."""
    log = bed.workdir / "killed-run.stderr"
    with log.open("w") as err:
        run = subprocess.Popen(
            bed.pyinfra_argv(deploy=DEPLOY),
            cwd=REPO,
            env=bed.pyinfra_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + 900
    try:
        while guest.run(f"systemctl is-active --quiet {MOVE_UNIT}").returncode != 0:
            assert run.poll() is None, (
                f"pyinfra exited {run.returncode} before the move ran:\n"
                + (log.read_text()[-4000:])
            )
            missed = guest.run(f"sudo test -e {BUNDLE}/logs/move.exit").returncode == 0
            assert not missed, (
                "the move ended before it was seen running\n" + log.read_text()[-4000:]
            )
            assert time.monotonic() < deadline, "no move within 900 s\n" + log.read_text()[-4000:]
            time.sleep(0.5)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
    return {
        "move": guest.run(f"systemctl is-active {MOVE_UNIT}").stdout.strip(),
        "state": guest.run(f"sudo cat {BUNDLE}/state").stdout.strip(),
        "docker_installed": guest.run("dpkg-query -W docker.io").returncode == 0,
        "services": guest.run("ls /etc/systemd/system/web.service").returncode == 0,
        "stderr": log.read_text(),
    }


@pytest.fixture(scope="module")
def migrated(docker_host, registry, tmp_path_factory):
    bed = boot_copy(docker_host, registry, tmp_path_factory.mktemp("migration-ok"), ROOTLESS)
    try:
        guest = bed.guests[SPEC.name]
        # A paused container counts as running: carried, and stopped (unpaused) for the copy.
        sudo(guest, "docker pause worker")
        image = sudo(guest, "docker inspect --format '{{.Config.Image}}' worker").strip()
        sudo(guest, f"docker run -d --name tuned {TUNED_FLAGS} {image} {IDLE}")
        with stage("docker-compose up (compose 1.x stack); fused, hostnet"):
            bed.stack_file = STACK.format(image=image)
            compose = shlex.quote(bed.stack_file)
            sudo(
                guest,
                f"mkdir -p {STACK_DIR} && printf '%s' {compose} > {STACK_DIR}/docker-compose.yml"
                f" && cd {STACK_DIR} && docker-compose up -d",
                timeout=600,
            )
            sudo(guest, f"docker run -d --name fused {FUSED_FLAGS} {image} {IDLE}")
            sudo(guest, f"docker run -d --name hostnet {HOSTNET_FLAGS} {image} {IDLE}")
            assert stack_answers(guest, "docker") == "ready\n"
        bed.stack_before = stack_listing(guest)
        capture(guest, bed.workdir, "tuned")
        with stage("migration --dry"):
            dry = bed.pyinfra("--dry", deploy=DEPLOY)
        after_dry = (
            guest.run("sudo docker ps --format '{{.Names}}'").stdout.split(),
            podman_untouched(guest),
            guest.run(f"sudo test -e {BUNDLE}").returncode,
        )
        started = time.monotonic()
        with stage("migration (first run, pyinfra killed in the volume move)"):
            bed.killed = killed_in_the_move(bed, guest)
        with stage("migration (the run after the lost connection)"):
            returncode, result, stderr = bed.pyinfra(deploy=DEPLOY)
        elapsed = time.monotonic() - started
        bundle_bytes = guest.run(f"sudo du -sb {BUNDLE}").stdout.split("\t")[0]
        if returncode == 0:
            capture(guest, bed.workdir, "after-migration")
            output = sudo(guest, MigrationBundle().command(BUNDLE).get_raw_value())
            (bed.workdir / "MigrationBundle.after-migration.txt").write_text(output)
        TIMINGS.stages.append((f"  (bundle on the host: {bundle_bytes} bytes)", elapsed))
        bed.dry_run = (dry, after_dry)
        yield bed, guest, returncode, result, stderr
    finally:
        bed.down()


def test_dry_run_prints_the_plan_and_changes_nothing(migrated):
    (returncode, _, stderr), (running, podman, bundle) = migrated[0].dry_run
    assert returncode == 0, stderr[-4000:]
    assert "Docker -> Podman migration plan (bundle /var/lib/podman-standard/" in stderr
    assert (
        "container worker [paused] -> re-create as a podman service (rootless, vagrant's "
        "systemd)" in stderr
    )
    assert "volume appdata (" in stderr and "-> volumes/appdata.tar" in stderr
    assert "then vagrant's rootless podman volume" in stderr
    assert f"bind mount {STATIC} of web (" in stderr
    assert "  space on " in stderr
    # The daemon.json written above: its insecure registry proposed, not applied.
    assert (
        "/etc/docker/daemon.json: proposed podman_registries entries (applied with "
        'podman_migration_registries: true): [{"insecure": true, "prefix": "10.0.2.2:'
    ) in stderr
    # tuned's settings, read from this Docker's inspect output, carried (none refused).
    assert "container tuned [running] -> re-create as a podman service" in stderr
    carried = [line for line in stderr.splitlines() if '"shm_size": "96m"' in line]
    # Docker 20.10 keeps CapAdd as given (NET_ADMIN, no CAP_ prefix): carried as it is.
    for part in ('"cap_add": ["NET_ADMIN"]', '"cpus": 0.5', '"memory": "128m"'):
        assert carried and part in carried[0], stderr[-4000:]
    # The compose 1.x stack: its order read from its file, its names kept on its network.
    assert "    start order: depends_on of /srv/stack/docker-compose.yml\n" in stderr
    assert "    starts after stack_db_1\n" in stderr
    # Docker's containers still ran, podman holds nothing, no bundle was written.
    assert sorted(running) == sorted([*ROOT_SERVICES, "worker"])
    assert podman and bundle != 0


def test_a_lost_connection_in_the_move_loses_nothing(migrated):
    """The first run was killed (pyinfra and its SSH connections) while the volume move ran:
    the move went on as its transient unit, Docker was still installed and no service was
    made yet; the next run read the bundle instead of auditing Docker again (whose containers
    the export had stopped), waited for or found the move, and completed the migration."""
    bed, guest, returncode, _, stderr = migrated
    killed = bed.killed
    # Right after the kill: the move's unit still ran, Docker was there, no service yet.
    assert killed["move"] == "active", killed
    assert killed["docker_installed"] and not killed["services"], killed
    assert killed["state"].startswith("export") or killed["state"].startswith("mov"), killed
    assert returncode == 0, stderr[-6000:]
    assert "resuming the migration recorded in /var/lib/podman-standard/docker-migration" in stderr
    # The move was not cut short by the lost session, nor started twice: one start of its
    # unit in this boot's journal, its recorded exit 0.
    assert sudo(guest, f"cat {BUNDLE}/logs/move.exit").strip() == "0"
    starts = sudo(guest, f"journalctl -b -o cat -u {MOVE_UNIT} | grep -c '^Started ' || true")
    assert starts.strip() == "1", sudo(guest, f"journalctl -b -o cat -u {MOVE_UNIT}")
    # And the bundle the resumed run left verifies (the rollback's first check).
    sudo(guest, f"cd {BUNDLE} && sha256sum --quiet -c SHA256SUMS")


def test_migration_succeeds(migrated):
    _, _, returncode, result, stderr = migrated
    assert returncode == 0, stderr[-6000:]
    assert result["results"]["failed_hosts"] == []
    # The plan is printed before anything runs.
    assert "container web [running] -> re-create as a podman service" in stderr
    assert "image localhost/local/web:1" in stderr and "saved to images/" in stderr


def test_volume_content_identical_in_podman(migrated):
    bed, guest, returncode, _, _ = migrated
    assert returncode == 0
    mountpoint = sudo(guest, f"podman volume inspect --format '{{{{.Mountpoint}}}}' {VOLUME}")
    assert mountpoint.startswith("/space/containers/engine/podman/volumes/")
    after = podman_listings(guest)
    assert after == bed.before
    assert "1234:2345" in after[VOLUME] and "2750" in after[VOLUME]
    assert "-> keep/known.txt" in after[VOLUME]
    # workdata, as vagrant's containers see it: Docker's owners. On the host, shifted into
    # vagrant's subordinate ids: uid 1000 is the 1000th of them (container 0 is vagrant).
    assert "1000:1000 ./conf/state.txt" in after[WORK_VOLUME]
    start = int(sudo(guest, "grep '^vagrant:' /etc/subuid | cut -d: -f2"))
    work = vagrant(guest, f"podman volume inspect --format '{{{{.Mountpoint}}}}' {WORK_VOLUME}")
    owners = sudo(guest, f"stat -c '%u:%g' {work.strip()}/conf/state.txt {work.strip()}/rootfile")
    vagrant_ids = sudo(guest, "echo $(id -u vagrant):$(id -g vagrant)").strip()
    subgid = int(sudo(guest, "grep '^vagrant:' /etc/subgid | cut -d: -f2"))
    assert owners.split() == [f"{start + 999}:{subgid + 999}", vagrant_ids]


def test_containers_run_under_podman(migrated):
    _, guest, returncode, _, _ = migrated
    assert returncode == 0
    assert sorted(sudo(guest, "podman ps --format '{{.Names}}'").split()) == ROOT_SERVICES
    assert vagrant(guest, "podman ps --format '{{.Names}}'").split() == ["worker"]
    sudo(guest, "systemctl is-active web.service && systemctl is-enabled web.service")
    sudo(guest, f"{USER_CTL} is-active worker.service && {USER_CTL} is-enabled worker.service")
    assert "GREETING=hello world" in vagrant(guest, "podman exec worker env")
    # web's bind mount: its service's copy, read-only; the original stays in place.
    assert sudo(guest, "podman exec web cat /static/css/site.css") == "static file\n"
    assert guest.run("sudo podman exec web touch /static/x").returncode != 0
    sudo(guest, f"test -f {STATIC}/css/site.css")
    # worker's process runs as vagrant on the host (its container root is vagrant); tuned's
    # (root's podman, --user 1000) is uid 1000 too, so worker's is found by its own pid.
    pid = vagrant(guest, "podman inspect --format '{{.State.Pid}}' worker").strip()
    assert sudo(guest, f"ps -o user= -p {pid}").split() == ["vagrant"]
    page = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/').read())"
    assert "migrated web" in sudo(guest, f'python3 -c "{page}"')


def test_the_compose_stack_runs_under_podman_in_its_order(migrated):
    """The compose 1.x stack: app's unit starts after db's (depends_on, read from the
    project's file), app reaches db by db's name on the project's network, db's volume holds
    what Docker's held, and the project's file is kept in the bundle."""
    bed, guest, returncode, _, _ = migrated
    assert returncode == 0
    order = sudo(guest, "systemctl show -p Requires -p After stack_app_1.service")
    assert all("stack_db_1.service" in line for line in order.splitlines()), (
        order
    )  # Requires= and After=
    assert stack_answers(guest, "podman") == "ready\n"
    assert stack_listing(guest, "podman") == bed.stack_before
    assert sudo(guest, f"cat {BUNDLE}/compose/stack/0-docker-compose.yml") == bed.stack_file


def test_docker_gone_and_docker_ps_is_podman(migrated):
    _, guest, returncode, _, _ = migrated
    assert returncode == 0
    for package in ("docker.io", "containerd"):
        status = guest.run(f"dpkg-query -W -f='${{Status}}' {package}").stdout
        assert "ok installed" not in status, package
    assert guest.run("systemctl is-active docker.service docker.socket containerd").returncode != 0
    assert sudo(guest, "docker --version").startswith("podman version")
    # Each owner's `docker` lists its own containers.
    assert sorted(sudo(guest, "docker ps --format '{{.Names}}'").split()) == ROOT_SERVICES
    assert vagrant(guest, "docker ps --format '{{.Names}}'").split() == ["worker"]
    assert guest.run("test -e /var/run/docker.sock").returncode != 0


def test_runtime_settings_show_in_podman_inspect(migrated):
    """tuned's ``docker run`` settings (TUNED_FLAGS), carried into its service: podman runs it
    with each of them."""
    _, guest, returncode, _, _ = migrated
    assert returncode == 0
    [info] = json.loads(sudo(guest, "podman container inspect tuned"))
    config, host = info["Config"], info["HostConfig"]
    shown = json.dumps({"Config": config, "HostConfig": host, "caps": info.get("BoundingCaps")})
    assert host["ShmSize"] == 96 * 2**20, shown
    assert "CAP_NET_ADMIN" in info["BoundingCaps"], shown  # not in podman's default set
    assert host["Memory"] == 128 * 2**20, shown
    assert host["CpuQuota"] / host["CpuPeriod"] == 0.5, shown
    assert host["PidsLimit"] == 200, shown
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/tmp", shown
    assert config["Hostname"] == "tuned-host", shown
    [nofile] = [u for u in host["Ulimits"] if u["Name"].upper().endswith("NOFILE")]
    assert (nofile["Soft"], nofile["Hard"]) == (1024, 2048), shown
    assert host["ReadonlyRootfs"] is True, shown
    assert "size=8m" in host["Tmpfs"]["/scratch"], shown
    assert config["StopTimeout"] == 5, shown
    assert config["Labels"]["org.example.team"] == "infra", shown
    # podman 4.3's inspect has no HostConfig.Sysctls (5.x has): where shown it must be 512;
    # the process's own /proc/sys below is checked on every release.
    if "Sysctls" in host:
        assert host["Sysctls"]["net.core.somaxconn"] == "512", shown
    # And inside the container, as its process sees them.
    inside = (
        "awk '/^Uid:/ {print $2}' /proc/1/status; readlink /proc/1/cwd; hostname; "
        "cat /proc/sys/net/core/somaxconn; grep 'open files' /proc/1/limits"
    )
    seen = sudo(guest, f"podman exec tuned sh -c {shlex.quote(inside)}").split()
    assert seen == ["1000", "/tmp", "tuned-host", "512", *"Max open files 1024 2048 files".split()]
    # fused: the device and the healthcheck; hostnet: the host's network.
    [fused] = json.loads(sudo(guest, "podman container inspect fused"))
    devices = [d["PathOnHost"] for d in fused["HostConfig"]["Devices"] or []]
    assert devices == ["/dev/fuse"], fused["HostConfig"]
    assert "test -c /dev/fuse" in " ".join(fused["Config"]["Healthcheck"]["Test"]), fused["Config"]
    sudo(guest, "podman exec fused test -c /dev/fuse")
    [hostnet] = json.loads(sudo(guest, "podman container inspect hostnet"))
    assert hostnet["HostConfig"]["NetworkMode"] == "host", hostnet["HostConfig"]


def test_bundle_holds_everything(migrated):
    _, guest, returncode, _, _ = migrated
    assert returncode == 0
    assert sudo(guest, f"stat -c '%a %U' {BUNDLE}").strip() == "700 root"
    sudo(guest, f"cd {BUNDLE} && sha256sum --quiet -c SHA256SUMS")
    manifest = json.loads(sudo(guest, f"cat {BUNDLE}/manifest.json"))
    assert [c["name"] for c in manifest["containers"]] == sorted([*ROOT_SERVICES, "worker"])
    local = [i for i in manifest["images"] if i["local_only"]]
    assert [i["refs"] for i in local] == [["localhost/local/web:1"]]
    # The long steps ran as transient units, their logs in the bundle, their exits recorded.
    logs = sudo(guest, f"cd {BUNDLE}/logs && cat export.exit move.exit && cat export.log")
    assert logs.startswith("0\n0\n") and "checksums in SHA256SUMS" in logs, logs
    files = sudo(guest, f"cd {BUNDLE} && ls volumes images").split()
    assert f"{VOLUME}.tar" in files and local[0]["archive"].split("/")[1] in files
    compose = sudo(guest, f"cat {BUNDLE}/docker-compose.yml")
    assert "restart: always" in compose and f"{WORK_VOLUME}:/srv/data" in compose
    # tuned's settings, kept for the rollback's re-creation under Docker.
    assert "shm_size: 96m" in compose and "mem_limit: 128m" in compose
    restore = sudo(guest, f"cat {BUNDLE}/docker-restore.sh")
    [line] = [x for x in restore.splitlines() if "docker create --name tuned " in x]
    assert "--shm-size 96m" in line and "--ulimit nofile=1024:2048" in line, line


def test_reboot_brings_the_restart_always_container_back(migrated):
    bed, guest, returncode, _, _ = migrated
    assert returncode == 0
    with stage("reboot the migrated guest"):
        guest.reboot()
    deadline = time.monotonic() + 300
    while sorted(guest.run("sudo podman ps --format '{{.Names}}'").stdout.split()) != ROOT_SERVICES:
        units = " ".join(f"{name}.service" for name in ROOT_SERVICES)
        assert time.monotonic() < deadline, guest.run(f"sudo systemctl status {units}").stdout
        time.sleep(5)
    sudo(guest, "systemctl is-active web.service")
    # worker: vagrant's unit, started by its user manager at boot (vagrant lingers).
    while "worker" not in guest.run("podman ps --format '{{.Names}}'").stdout.split():
        assert time.monotonic() < deadline, user_unit_log(guest, "worker")
        time.sleep(5)
    sudo(guest, f"{USER_CTL} is-active worker.service")


def test_second_run_changes_nothing(migrated):
    bed, _, returncode, _, _ = migrated
    assert returncode == 0
    with stage("migration (second run)"):
        returncode, result, stderr = bed.pyinfra(deploy=DEPLOY)
    assert returncode == 0, stderr[-4000:]
    assert "no Docker engine: nothing to migrate" in stderr
    assert result["results"]["totals"]["success"] == 0
    assert result["results"]["totals"]["error"] == 0


def test_rollback_brings_docker_back_from_the_bundle(migrated):
    bed, guest, returncode, _, _ = migrated
    assert returncode == 0
    # A bundle that does not verify: refused before anything changes.
    sudo(
        guest,
        f"cp -p {BUNDLE}/podman-services.json /root/services.json && "
        f"echo >> {BUNDLE}/podman-services.json",
    )
    with stage("rollback with a bundle that does not verify (refused)"):
        returncode, _, stderr = bed.pyinfra(deploy=ROLLBACK)
    assert returncode != 0
    assert f"the bundle {BUNDLE} does not match its SHA256SUMS" in stderr, stderr[-4000:]
    sudo(guest, "systemctl is-active web.service")
    sudo(guest, f"{USER_CTL} is-active worker.service")
    assert "ok installed" not in guest.run("dpkg-query -W -f='${Status}' docker.io").stdout
    sudo(guest, f"cp -p /root/services.json {BUNDLE}/podman-services.json")
    # Written under podman after the migration: the rollback carries it back to Docker.
    sudo(guest, "podman exec web sh -c 'echo after > /data/written-under-podman.txt'")
    vagrant(guest, "podman exec worker sh -c 'echo after > /srv/data/written-under-podman.txt'")
    expected = podman_listings(guest)
    assert all("./written-under-podman.txt" in expected[v] for v in VOLUMES)
    with stage("rollback to Docker"):
        returncode, result, stderr = bed.pyinfra(deploy=ROLLBACK)
    assert returncode == 0, stderr[-6000:]
    sudo(guest, "systemctl is-active docker.service && systemctl is-enabled docker.service")
    running = sorted(sudo(guest, "docker ps --format '{{.Names}}'").split())
    assert running == sorted([*ROOT_SERVICES, "worker"])
    assert guest.run("command -v docker").stdout.strip() == "/usr/bin/docker"
    # The stack's names went back with it: app reaches db by its name under Docker again.
    assert stack_answers(guest, "docker") == "ready\n"
    assert guest.run("systemctl cat web.service").returncode != 0
    assert guest.run(f"sudo {USER_CTL} cat worker.service").returncode != 0
    # Docker's volumes hold podman's data as it was at the rollback, owners as Docker's
    # containers see them (workdata's shifted back from vagrant's subordinate ids); the bind
    # mount's host directory holds web's copy.
    assert docker_listings(guest) == expected
    with stage("rollback (second run)"):
        returncode, result, stderr = bed.pyinfra(deploy=ROLLBACK)
    assert returncode == 0, stderr[-4000:]
    assert "already rolled back to Docker" in stderr
    assert result["results"]["totals"]["success"] == 0


def test_failure_mid_move_leaves_docker_as_it_was(migrated, docker_host, registry, tmp_path):
    migrated[0].down()  # one guest at a time
    bed = boot_copy(docker_host, registry, tmp_path)
    try:
        guest = bed.guests[SPEC.name]
        overlapping_bind_mount_is_refused(bed, guest)
        # A bundle directory on a filesystem too small for it: refused, with the figures,
        # before anything changes.
        sudo(guest, "mkdir -p /mnt/tiny && mount -t tmpfs -o size=16m tmpfs /mnt/tiny")
        bed.data_overrides[SPEC.name] = {"podman_migration_bundle": "/mnt/tiny/bundle"}
        bed.write_state()
        with stage("migration with no room for the bundle (refused)"):
            returncode, _, stderr = bed.pyinfra(deploy=DEPLOY)
        assert returncode != 0
        assert (
            "not enough free space on /mnt/tiny (tmpfs) for the bundle /mnt/tiny/bundle: needs"
            in stderr
        ), stderr[-4000:]
        assert podman_untouched(guest)
        assert sorted(sudo(guest, "docker ps --format '{{.Names}}'").split()) == ["web", "worker"]
        assert guest.run("test -e /mnt/tiny/bundle").returncode != 0
        bed.data_overrides[SPEC.name] = {}
        bed.write_state()
        # The store's disk gets a filesystem too small for the volume: the storage operation
        # mounts it as it is (it never reformats), and the restore runs out of space.
        sudo(guest, "mkfs.ext4 -q -F /dev/vdb 40M")
        with stage("migration onto a too small store (fails mid-move)"):
            returncode, result, stderr = bed.pyinfra(deploy=DEPLOY)
        assert returncode != 0
        assert "FAILED at step 'restore volume appdata into root's podman'" in stderr, stderr[
            -6000:
        ]
        assert f"bundle: {BUNDLE}" in stderr
        # Docker: installed, enabled, running, its containers back up, its data unchanged.
        sudo(guest, "dpkg-query -W docker.io && systemctl is-enabled docker.service")
        sudo(guest, "systemctl is-active docker.service")
        running = sudo(guest, "docker ps --format '{{.Names}}'").split()
        assert sorted(running) == ["web", "worker"]
        assert "/usr/bin/docker" == guest.run("command -v docker").stdout.strip()
        assert docker_listings(guest) == bed.before
        # No podman service was created.
        assert guest.run("systemctl cat web.service").returncode != 0
    finally:
        bed.down()


def overlapping_bind_mount_is_refused(bed, guest) -> None:
    """A container bind-mounting the directory that holds the service root (here /space, the
    testbed's podman_service_root being /space/containers/apps) is refused by name in the
    plan, before any change, and so is a setting the services cannot carry (--privileged:
    model/docker_settings.py, read from this Docker 20.10's own inspect output), while the
    ones they carry (an added capability, a larger /dev/shm) are not refused; the container
    is removed again afterwards."""
    image = sudo(guest, "docker inspect --format '{{.Config.Image}}' worker").strip()
    sudo(
        guest,
        "docker run -d --name overlap -v /space:/space --cap-add NET_ADMIN --shm-size 8g "
        f"--privileged {image} sleep 999999",
    )
    try:
        with stage("migration --dry with an overlapping bind mount (refused)"):
            returncode, _, stderr = bed.pyinfra("--dry", deploy=DEPLOY)
        assert returncode != 0
        assert (
            "bind mount /space of overlap holds the service root /space/containers/apps: its "
            "copy or the rollback's restore of it would overwrite or delete the other"
        ) in stderr, stderr[-4000:]
        refused = [line for line in stderr.splitlines() if "container overlap: --" in line]
        # (printed in the plan and again in the error.) Docker adds SecurityOpt label=disable
        # to a --privileged container: both refused by name; its --cap-add and --shm-size are
        # carried, not refused.
        assert any("--privileged/Privileged (true) is not carried" in line for line in refused)
        assert all(
            "--privileged/Privileged (true)" in line
            or '--security-opt/SecurityOpt (["label=disable"])' in line
            for line in refused
        ), stderr[-4000:]
        assert guest.run(f"sudo test -e {BUNDLE}").returncode != 0
    finally:
        sudo(guest, "docker rm -f overlap")
