"""Docker -> Podman migration that loses nothing (standard §6.1; coexistence rules §6.2).

    pyinfra inventories/home.py deploys/migrate_from_docker.py --limit HOST [--dry]

1. Audit: the Docker facts (every container, volume and image) become a plan, printed for
   each host (also with ``--dry``, which changes nothing). What the plan cannot carry over
   without loss (a tmpfs or odd bind mount, a random host port, a container setting the
   services cannot carry: ``model.docker_settings``, every field of ``docker inspect``'s
   Config and HostConfig decided; a daemon.json setting that changes every container; a
   compose project that cannot move as one unit...) stops the run before any change, naming
   it; so does a filesystem without room for the
   copies (the bundle; each podman store; the service root, for bind mounts' copies) and,
   for containers moved to a rootless user (``podman_migration_rootless``), a file owner
   outside the user's id mapping, a volume shared with a container of another owner, or a
   host port below ``net.ipv4.ip_unprivileged_port_start``.
2. Podman is installed beside Docker (packages, storage, registries, the rootless users'
   subordinate ids and linger; no Docker CLI layer yet: §6.2 forbids it beside an engine, and
   until the cutover ``docker`` stays Docker's).
3. Export into the rollback bundle (``podman_migration_bundle``): Docker's running containers
   are stopped for a consistent copy and stay stopped through the move; volumes and bind
   mounts' host directories as tarballs with content digests, local-only images as archives,
   compose file, podman_services entries, a Docker restore script, manifest and SHA256SUMS.
4. Move: images into each owner's podman, volumes restored with owners and modes (shifted
   through a rootless user's subordinate ids), each bind mount's host directory copied into
   the service's directory (``<service_root>/<name>/host/<path>``; the original stays), digests
   compared as the containers see them.
5. Re-create the running containers as this package's systemd services, root's or the
   rootless user's (restart policies kept; they come back at boot), then verify each runs.
   -- Up to here, any failure starts Docker's containers again and stops the run: Docker stays
   installed, enabled and running, and the error names the step and the bundle. --
6. Point of no return: docker.socket, docker.service, containerd stopped and disabled, the
   engine packages removed (/var/lib/docker kept), the Docker CLI compatibility layer
   installed, and ``docker ps`` (now podman) must list the re-created containers.

A second run finds no engine and changes nothing. A run that lost its SSH connection half-way
leaves its long steps (export, move) running as transient systemd units; the next run reads
the bundle (its state, its plan) instead of auditing Docker again, waits for a step still
running and goes on from where the migration stands. ``deploys/rollback_to_docker.py``
undoes the migration from the bundle.
"""

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Home, Sysctl

from deploys.container_storage import container_storage
from deploys.podman_standard import rootless_podman
from facts.docker import DataDir, DockerDaemonConfig, DockerEngine, DockerInventory
from facts.gpu import NvidiaPresence
from facts.migration import MigrationBundle
from facts.rootless import RootlessUser
from facts.storage import BlockDevice, PathMount
from model import HostData, current_host_data
from model.host_data import Registry, Service
from model.migration import (
    MANIFEST_FORMAT,
    ROOT,
    build_plan,
    compose_files_to_read,
    describe,
    id_problems,
    mapped_ids,
    overlap_problems,
    port_problems,
    rootless_users,
    services,
    shown,
    space_check,
    space_needs,
)
from operations import docker_compat, migration, packages, registries, storage
from operations import services as service_ops

UNPRIVILEGED_PORT_START = "net.ipv4.ip_unprivileged_port_start"
# Where rootless podman keeps its store (containers-storage.conf(5): rootless_storage_path's
# default), under the user's home.
ROOTLESS_STORE = ".local/share/containers/storage"


def _filesystem(path: str, cfg: HostData) -> dict | None:
    """The filesystem ``path`` is (or will be) on, with its free bytes. The store's own device
    (``podman_storage_device``), when this deploy has yet to mount it, counts with the device's
    size: a filesystem made on it fills it (one already on it is measured once mounted)."""
    device = cfg.storage_device
    mount_point = device.mount_point if device else None
    if mount_point and (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")):
        mounted = host.get_fact(PathMount, path=device.mount_point)
        if not mounted or mounted.target != device.mount_point:
            block = host.get_fact(BlockDevice, device=device.device)
            if block is None:
                return None
            return {
                "source": device.device,
                "target": device.mount_point,
                "avail": block.size_bytes,
                "note": "not mounted yet: the device's size",
            }
    mount = host.get_fact(PathMount, path=path)
    if mount is None:
        return None
    return {"source": mount.source, "target": mount.target, "avail": mount.avail_bytes}


def _host_problems(plan: dict, cfg: HostData) -> list[str]:
    """What the host itself rules out, from its facts: ids a rootless user cannot map, ports it
    cannot publish, filesystems without room. Read before any change."""
    problems = []
    users = rootless_users(plan)
    configured = {u.name: u for u in cfg.rootless_users}
    stores = {ROOT: cfg.graphroot}
    mapped = {}
    for user in users:
        ids = host.get_fact(RootlessUser, user=user)
        if not ids.exists:
            problems.append(f"rootless user {user} does not exist on this host")
            continue
        if not configured[user].linger:
            problems.append(
                f"rootless user {user} has linger: false in rootless_users: its services would "
                "not start at boot"
            )
        count = configured[user].subid_count
        mapped[user] = (
            mapped_ids(ids.subuid.get(user, []), count),
            mapped_ids(ids.subgid.get(user, []), count),
        )
        stores[user] = f"{host.get_fact(Home, user=user)}/{ROOTLESS_STORE}"
    owners = {}
    for bind in plan["binds"]:
        found = host.get_fact(DataDir, path=bind["host_path"])
        if not found.exists:
            problems.append(
                f"bind mount {bind['host_path']} of {bind['container']}: not a directory on "
                "this host (a file, a socket or nothing): only directories are copied into the "
                "service; move it into a named volume or the image first"
            )
            continue
        bind["size_bytes"] = found.size_bytes
        owners[bind["host_path"]] = (found.uids, found.gids)
    for v in plan["volumes"]:
        if v["user"] in mapped:
            found = host.get_fact(DataDir, path=v["docker_mountpoint"])
            if found.exists:
                owners[v["name"]] = (found.uids, found.gids)
    problems += id_problems(plan, mapped, owners)
    problems += overlap_problems(
        plan, [(f"{owner}'s podman store", path) for owner, path in stores.items()]
    )
    if any(c["user"] and c["service"] and c["service"]["ports"] for c in plan["containers"]):
        start = host.get_fact(Sysctl, keys=[UNPRIVILEGED_PORT_START]).get(UNPRIVILEGED_PORT_START)
        problems += port_problems(plan, int(start) if start is not None else 1024)
    needs = space_needs(plan, stores)
    filesystems = {path: _filesystem(path, cfg) for _, path, _ in needs}
    plan["space"], space = space_check(
        needs, {p: fs for p, fs in filesystems.items() if fs is not None}
    )
    return problems + space


def _registries(plan: dict, cfg: HostData) -> list[dict]:
    """podman_registries' entries, plus (with podman_migration_registries) those proposed from
    daemon.json for prefixes the data does not already configure."""
    own = [r.model_dump() for r in cfg.registries.registries]
    if not cfg.migration_registries:
        return own
    prefixes = {r["prefix"] for r in own}
    proposed = [Registry.model_validate(r).model_dump() for r in plan["daemon"]["registries"]]
    return own + [r for r in proposed if r["prefix"] not in prefixes]


def _resumed(cfg: HostData) -> dict | None:
    """The plan of a migration the bundle records as under way (a run that lost its SSH
    connection: Docker's containers are stopped for it, and a detached step may still run),
    or None. Its steps then go on from where it stands: one still running is waited for, one
    finished is not run again (migrate.sh ``detached``)."""
    previous = host.get_fact(MigrationBundle, bundle=cfg.migration_bundle)
    if not previous.in_progress:
        return None
    plan = previous.manifest
    if plan.get("format") != MANIFEST_FORMAT:
        raise DeployError(
            f"{host.name}: {cfg.migration_bundle} records a migration under way (state "
            f"{previous.state}) by another version of this package (manifest format "
            f"{plan.get('format')!r}): finish or roll it back with that version (nothing changed)"
        )
    running = f"; step {', '.join(previous.running)} still running" if previous.running else ""
    logger.info(
        f"{host.print_prefix}resuming the migration recorded in {cfg.migration_bundle} (state "
        f"{previous.state or 'none'}{running}): its plan, not a new audit"
    )
    logger.info(describe(plan, host.name))
    return plan


def _audit(cfg: HostData) -> dict:
    """A new migration's plan from Docker as it is now; refused before any change when it
    cannot carry everything."""
    inventory = host.get_fact(DockerInventory)
    if not inventory.reachable:
        raise DeployError(
            f"{host.name}: a Docker engine is installed but its daemon does not answer; start "
            "docker.service so its containers, volumes and images can be audited (nothing changed)"
        )
    # Compose 1.x records no depends_on on its containers: the project's files say it.
    compose_files = {}
    for path in compose_files_to_read(inventory):
        lines = host.get_fact(FileContents, path=path)
        compose_files[path] = None if lines is None else "\n".join(lines)
    plan = build_plan(
        inventory,
        cfg.migration_bundle,
        cfg.migration_rootless,
        service_root=cfg.service_root,
        daemon=host.get_fact(DockerDaemonConfig),
        cdi_devices=host.get_fact(NvidiaPresence).cdi_devices,
        compose_files=compose_files,
    )
    if not plan["problems"]:
        plan["problems"] += _host_problems(plan, cfg)
    logger.info(describe(plan, host.name))
    if plan["problems"]:
        raise DeployError(
            f"{host.name}: the migration cannot run here without loss; nothing changed:\n"
            + "\n".join(f"  - {shown(p)}" for p in plan["problems"])
        )
    return plan


@deploy("Docker to Podman migration")
def migrate_from_docker(cfg: HostData):
    engine = host.get_fact(DockerEngine)
    if not engine.engine_present:
        logger.info(
            f"{host.print_prefix}no Docker engine: nothing to migrate "
            f"(a past migration's bundle would be in {cfg.migration_bundle})"
        )
        return
    if engine.cli != "docker":
        # §6.2: while both runtimes exist, `docker` must be Docker's own CLI; the migration
        # and its facts call it by that name.
        raise DeployError(
            f"{host.name}: a Docker engine is installed but `docker` on root's PATH is "
            f"{engine.cli_path or 'missing'} ({engine.cli}), not Docker's CLI; remove the "
            "shim first (nothing changed)"
        )
    plan = _resumed(cfg) or _audit(cfg)

    packages.install(name="Install podman, podman-compose, buildah, skopeo (beside Docker)")
    container_storage(cfg)
    storage.configure(
        name="Configure container storage paths",
        graphroot=cfg.graphroot,
        runroot=cfg.runroot,
        driver=cfg.storage_driver.value,
        existing_store=cfg.existing_store.value,
    )
    registries.configure(
        name="Configure container registries",
        search=cfg.registries.search,
        short_name_mode=cfg.registries.short_name_mode.value,
        registries=_registries(plan, cfg),
    )
    rootless_podman([u for u in cfg.rootless_users if u.name in rootless_users(plan)])
    bundle = cfg.migration_bundle
    migration.export(
        name=f"Export Docker's containers, volumes and images to {bundle}", bundle=bundle, plan=plan
    )
    migration.move(name="Move images and volumes into podman", bundle=bundle)
    secret_env = {c["name"]: c["secret_env"] for c in plan["containers"]}
    # The plan's entries, checked against the model when the plan was made; their state is
    # read in one command for all of them (services.service's declared).
    recreated = [Service.model_validate(svc) for svc in services(plan)]
    for svc in recreated:
        # A failure here is caught by the verify step, which then puts Docker back.
        service_ops.service(
            name=f"Re-create {svc.name} as a podman service",
            service=svc,
            secret_values=secret_env[svc.name],
            root=cfg.service_root,
            declared=recreated,
            _ignore_errors=True,
        )
    migration.verify(name="Verify the podman services run", bundle=bundle)
    migration.retire_docker(name="Stop, disable and remove the Docker engine", bundle=bundle)
    docker_compat.docker_cli(
        name="Docker CLI compatibility", mode=cfg.docker_compat.value, engine_removed_first=True
    )
    migration.docker_ps(name="docker ps shows the podman containers", bundle=bundle)


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    migrate_from_docker(current_host_data())
