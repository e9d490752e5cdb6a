"""Undo a Docker -> Podman migration from its rollback bundle (standard §6.1 "Rollback Plan").

    pyinfra inventories/home.py deploys/rollback_to_docker.py --limit HOST

Reads ``<podman_migration_bundle>/manifest.json`` and its ``state`` on the host, then:
1. stops, disables and removes the podman services the migration created (their podman
   volumes stay: they hold whatever the services wrote since);
2. removes the Docker CLI compatibility wrapper (only this package's own, §6.2: one runtime
   owns ``docker``);
3. reinstalls the Docker engine (docker.io on Debian/Ubuntu, moby-engine on Fedora);
4. ``migrate.sh rollback``: checks the bundle's SHA256SUMS, starts Docker, loads the saved
   local-only images, restores each volume Docker no longer has (its content digest checked;
   a volume still in /var/lib/docker, which the migration keeps, is left as it is), re-creates
   the containers Docker no longer has, and starts those that ran before the migration.

Data written under podman after the migration is not copied back. A second run finds the
bundle marked ``rolled-back`` and changes nothing; a migration that never passed its point of
no return left Docker in place, and there is nothing to roll back.
"""

import json

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from facts.docker import DockerEngine
from model import HostData, current_host_data
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

    for svc in services(plan):
        service_ops.service(
            name=f"Remove podman service {svc['name']}",
            service=svc["name"],
            present=False,
            root=cfg.service_root,
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
    migration.rollback(name=f"Restore Docker from {bundle}", bundle=bundle)


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    rollback_to_docker(current_host_data())
