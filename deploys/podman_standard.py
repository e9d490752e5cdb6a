"""The Podman standard for every Linux host (the seed's ``podman_standard_linux``, §5.1).

Run alone: ``pyinfra INVENTORY deploys/podman_standard.py``; one phase:
``--data podman_phases=install`` (install, config, storage; see README).
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

from model import HostData, current_host_data
from model.host_data import Phase, Registries
from operations import api_socket, docker_compat, packages, registries, rootless, selinux, storage


def registry_inputs(regs: Registries) -> dict[str, str]:
    """The registries' CA certificates (PEM by host[:port]), read and checked on the
    controller; with every credential's secret source: what cannot be had stops the run
    before any change, naming each (never a value)."""
    problems, pems = [], {}
    for where, ca in sorted(regs.certificates().items()):
        try:
            pems[where] = ca.read()
        except ValueError as error:
            problems.append(f"podman_registries CA for {where}: {error}")
    for cred in regs.credentials:
        missing = cred.password.unavailable() if cred.present else None
        if missing:
            who = cred.user or "root"
            problems.append(f"podman_registries.credentials {cred.registry} ({who}): {missing}")
    if problems:
        listed = "\n".join(f"  - {host.name}: {p}" for p in problems)
        raise DeployError(f"Registry inputs missing on the controller; no change made:\n{listed}")
    return pems


@deploy("Podman standard (Linux)")
def podman_standard(cfg: HostData):
    phases = set(cfg.phases)
    pems = registry_inputs(cfg.registries) if Phase.config in phases else {}
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
        selinux.store_labels(name="SELinux labels of the container store", graphroot=cfg.graphroot)
    if Phase.config in phases:
        registries.configure(
            name="Configure container registries",
            search=cfg.registries.search,
            short_name_mode=cfg.registries.short_name_mode.value,
            registries=[r.model_dump() for r in cfg.registries.registries],
        )
        # Also with none declared: a CA this package placed and no longer declared goes.
        registries.certificates(name="Registry CA certificates", certificates=pems)
    if Phase.install in phases:
        docker_compat.docker_cli(name="Docker CLI compatibility", mode=cfg.docker_compat.value)
    if Phase.config in phases:
        api_socket.podman_socket(name="Podman API socket", enabled=cfg.socket_enabled)
        rootless_podman(cfg.rootless_users)
        registry_credentials(cfg.registries)


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


def registry_credentials(regs: Registries) -> None:
    """One ``registries.credentials`` per user (root first) that has credentials declared;
    after the rootless users have their ids (a rootless ``podman login`` sets up the user's
    podman)."""
    users = list(dict.fromkeys(c.user for c in regs.credentials))
    for user in sorted(users, key=lambda u: u or ""):
        registries.credentials(
            name=f"Registry credentials of {user or 'root'}",
            user=user,
            credentials=[
                c.model_dump(mode="json", exclude={"user"}, exclude_none=True)
                for c in regs.credentials
                if c.user == user
            ],
        )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    podman_standard(current_host_data())
