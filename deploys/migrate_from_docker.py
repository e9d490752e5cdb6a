"""Docker -> Podman migration that loses nothing (standard §6.1; coexistence rules §6.2).

    pyinfra inventories/home.py deploys/migrate_from_docker.py --limit HOST [--dry]

1. Audit: the Docker facts (every container, volume and image) become a plan, printed for
   each host (also with ``--dry``, which changes nothing). What the plan cannot carry over
   without loss (a bind mount, an entrypoint override, a random host port...) stops the run
   before any change, naming it.
2. Podman is installed beside Docker (packages, storage, registries; no Docker CLI layer yet:
   §6.2 forbids it beside an engine, and until the cutover ``docker`` stays Docker's).
3. Export into the rollback bundle (``podman_migration_bundle``): Docker's running containers
   are stopped for a consistent copy and stay stopped through the move; volumes as tarballs
   with content digests, local-only images as archives, compose file, podman_services entries,
   a Docker restore script, manifest and SHA256SUMS.
4. Move: images into podman, volumes restored with owners and modes, digests compared.
5. Re-create the running containers as this package's systemd services (restart policies
   kept; they come back at boot), then verify each is running.
   -- Up to here, any failure starts Docker's containers again and stops the run: Docker stays
   installed, enabled and running, and the error names the step and the bundle. --
6. Point of no return: docker.socket, docker.service, containerd stopped and disabled, the
   engine packages removed (/var/lib/docker kept), the Docker CLI compatibility layer
   installed, and ``docker ps`` (now podman) must list the re-created containers.

A second run finds no engine and changes nothing. ``deploys/rollback_to_docker.py`` undoes
the migration from the bundle.
"""

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

from deploys.container_storage import container_storage
from facts.docker import DockerEngine, DockerInventory
from model import HostData, current_host_data
from model.migration import build_plan, describe, services
from operations import docker_compat, migration, packages, registries, storage
from operations import services as service_ops


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
    inventory = host.get_fact(DockerInventory)
    if not inventory.reachable:
        raise DeployError(
            f"{host.name}: a Docker engine is installed but its daemon does not answer; start "
            "docker.service so its containers, volumes and images can be audited (nothing changed)"
        )
    plan = build_plan(inventory, cfg.migration_bundle)
    logger.info(describe(plan, host.name))
    if plan["problems"]:
        raise DeployError(
            f"{host.name}: the migration would lose something; nothing changed:\n"
            + "\n".join(f"  - {p}" for p in plan["problems"])
        )

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
        registries=[r.model_dump() for r in cfg.registries.registries],
    )
    bundle = cfg.migration_bundle
    migration.export(
        name=f"Export Docker's containers, volumes and images to {bundle}", bundle=bundle, plan=plan
    )
    migration.move(name="Move images and volumes into podman", bundle=bundle)
    for svc in services(plan):
        # A failure here is caught by the verify step, which then puts Docker back.
        service_ops.service(
            name=f"Re-create {svc['name']} as a podman service",
            service=svc["name"],
            image=svc["image"],
            command=svc["command"],
            env=svc["env"],
            ports=svc["ports"],
            volumes=svc["volumes"],
            restart=svc["restart"],
            network=svc.get("network"),
            root=cfg.service_root,
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
