"""The Podman standard for every Linux host (the seed's ``podman_standard_linux``, §5.1).

Run alone: ``pyinfra INVENTORY deploys/podman_standard.py``; one phase:
``--data podman_phases=install`` (install, config, storage; see README).
"""

from pyinfra.api import deploy

from model import HostData, current_host_data
from model.host_data import Phase
from operations import api_socket, docker_compat, packages, registries, rootless, storage


@deploy("Podman standard (Linux)")
def podman_standard(cfg: HostData):
    phases = set(cfg.phases)
    if Phase.install in phases:
        packages.install(
            name="Install podman, podman-compose, buildah, skopeo",
            packages=cfg.extra_packages,
        )
    if Phase.storage in phases:
        storage.configure(
            name="Configure container storage paths",
            graphroot=cfg.graphroot,
            runroot=cfg.runroot,
            driver=cfg.storage_driver.value,
            existing_store=cfg.existing_store.value,
        )
    if Phase.config in phases:
        registries.configure(
            name="Configure container registries",
            search=cfg.registries.search,
            short_name_mode=cfg.registries.short_name_mode.value,
            registries=[r.model_dump() for r in cfg.registries.registries],
        )
    if Phase.install in phases:
        docker_compat.docker_cli(name="Docker CLI compatibility", mode=cfg.docker_compat.value)
    if Phase.config in phases:
        api_socket.podman_socket(name="Podman API socket", enabled=cfg.socket_enabled)
        rootless_podman(cfg.rootless_users)


def rootless_podman(users) -> None:
    """Subordinate ids and linger (``rootless.user``) for each of ``users`` (the model's
    rootless user entries)."""
    for user in users:
        rootless.user(
            name=f"Rootless podman for {user.name}",
            user=user.name,
            subid_start=user.subid_start,
            subid_count=user.subid_count,
            linger=user.linger,
        )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    podman_standard(current_host_data())
