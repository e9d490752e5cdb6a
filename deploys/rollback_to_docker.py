"""Undo a Docker -> Podman migration from its rollback bundle (standard §6.1 "Rollback Plan").

    pyinfra inventories/home.py deploys/rollback_to_docker.py --limit HOST

Reads ``<podman_migration_bundle>/manifest.json`` and its ``state`` on the host, then:
1. checks the bundle's files against its SHA256SUMS: a bundle that does not verify stops the
   rollback before anything changes;
2. stops, disables and removes the podman services the migration created, root's and the
   rootless users' (their podman volumes stay);
3. removes the Docker CLI compatibility wrapper (only this package's own, §6.2: one runtime
   owns ``docker``);
4. reinstalls the Docker engine (docker.io on Debian/Ubuntu, moby-engine on Fedora);
5. ``migrate.sh rollback``: starts Docker, loads the saved local-only images, fills each
   Docker volume and checks its content digest against its source's, re-creates the
   containers Docker no longer has, and starts those that ran before the migration.

What each Docker volume gets is ``podman_migration_rollback_from``: ``podman`` (default) the
data of the podman volume of the same name as it is now (what the services wrote since the
migration; a rootless owner's volume is read inside its user namespace, so owners come back
as its containers saw them); ``bundle`` the bundle's tarball, the data as it was at the
migration. A volume that neither podman nor Docker has any more comes from the bundle.

A second run finds the bundle marked ``rolled-back`` and changes nothing; a migration that
never passed its point of no return left Docker in place, and there is nothing to roll back.
"""

import json

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from facts.docker import DockerEngine
from model import HostData, current_host_data
from model.host_data import Service
from model.migration import FILES, services
from operations import migration, packages
from operations import services as service_ops
from operations._common import distro_family
from operations.docker_compat import COMPOSE_WRAPPER, WRAPPER

DOCKER_PACKAGES = {"debian": ["docker.io"], "fedora": ["moby-engine"]}


@deploy("Rollback to Docker")
def rollback_to_docker(cfg: HostData):
    bundle = cfg.migration_bundle
    state = host.get_fact(FileContents, path=f"{bundle}/state")
    manifest = host.get_fact(FileContents, path=f"{bundle}/{FILES['manifest']}")
    if not manifest or not state:
        raise DeployError(f"{host.name}: no migration bundle in {bundle}; nothing to roll back")
    state = state[0].strip()
    if state == "rolled-back":
        logger.info(f"{host.print_prefix}already rolled back to Docker from {bundle}")
        return
    if state != "retired":
        raise DeployError(
            f"{host.name}: the migration in {bundle} stopped before its point of no return "
            f"(state {state!r}): Docker was never removed, there is nothing to roll back"
        )
    plan = json.loads("\n".join(manifest))
    family = distro_family()
    if family is None:
        raise DeployError(f"{host.name}: no Docker package known for this distribution")

    migration.check_bundle(name=f"Check the bundle {bundle} against its SHA256SUMS", bundle=bundle)
    removed = [Service(name=s["name"], user=s.get("user"), present=False) for s in services(plan)]
    for svc in removed:
        service_ops.service(
            name=f"Remove podman service {svc.name}",
            service=svc,
            root=cfg.service_root,
            declared=removed,  # their state read in one command
        )
    if host.get_fact(DockerEngine).cli == "wrapper":
        # Ours (its header says so); the compose wrapper was written beside it.
        for path in (WRAPPER, COMPOSE_WRAPPER):
            files.file(name=f"Remove the compatibility wrapper {path}", path=path, present=False)
    packages.install(
        name="Reinstall the Docker engine",
        packages=DOCKER_PACKAGES[family],
        include_podman=False,
    )
    source = cfg.migration_rollback_from.value
    migration.rollback(
        name=f"Restore Docker from {bundle} (volumes from {source})", bundle=bundle, source=source
    )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    rollback_to_docker(current_host_data())
