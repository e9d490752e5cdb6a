"""Docker CLI compatibility (standard §2.2, §2.3) and the coexistence rule (§6.2)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, operation
from pyinfra.operations import files

from facts.docker import DAEMON_PACKAGES, DockerEngine
from operations import packages
from operations._common import distro_family, distro_label, put_files, render_template

SOURCE = "operations/docker_compat.py"
WRAPPER = "/usr/local/bin/docker"
COMPOSE_WRAPPER = "/usr/local/bin/docker-compose"
NODOCKER = "/etc/containers/nodocker"
MODE_BY_FAMILY = {"fedora": "podman-docker", "debian": "wrapper"}


def engine_summary(engine) -> str | None:
    """Why this host counts as running Docker, or None when it does not."""
    found = [p for p in DAEMON_PACKAGES if p in engine.packages]
    if engine.service_active:
        found.append("docker.service active")
    if engine.socket_active:
        found.append("docker.socket active")
    return ", ".join(found) or None


@operation()
def docker_cli(mode: str = "auto", engine_removed_first: bool = False):
    """
    Make ``docker …``, ``docker compose …`` and ``docker-compose …`` run Podman.

    + mode: ``auto`` (podman-docker on the Fedora family, a wrapper on Debian/Ubuntu),
      ``podman-docker``, ``wrapper`` or ``none``
    + engine_removed_first: an earlier operation of the same deploy removes the Docker
      engine (the migration): the engine check happens when this operation runs, not when
      it is planned

    Refuses (OperationError) while a Docker engine is installed or running (the
    migration deploy removes it first, after saving what it holds), and never overwrites
    a ``/usr/local/bin/docker`` it did not write. Idempotent.
    """
    if mode == "none":
        host.noop("Docker CLI compatibility is disabled (docker_compat: none)")
        return
    family = distro_family()
    if mode == "auto":
        if family is None:
            host.noop(f"unsupported distribution {distro_label()}: no Docker CLI compatibility")
            return
        mode = MODE_BY_FAMILY[family]
    if mode not in ("podman-docker", "wrapper"):
        raise OperationError(f"unknown docker_compat mode {mode!r}")

    engine = host.get_fact(DockerEngine)
    present = engine_summary(engine)
    if present and engine_removed_first and not host.state.is_executing:
        present = None  # planned before the engine's removal; checked again when it runs
    if present:
        raise OperationError(
            f"a Docker engine is present ({present}); refusing to install the Docker CLI "
            "compatibility layer beside it (standard §6.2). Migrate the host first: "
            "pyinfra INVENTORY deploys/migrate_from_docker.py --limit HOST"
        )

    if mode == "wrapper" and engine.cli_path == WRAPPER and engine.cli != "wrapper":
        raise OperationError(
            f"{WRAPPER} is a {engine.cli} command this package did not write; refusing to "
            "replace it. Move it away, or set podman_docker_compat: none."
        )

    if mode == "podman-docker":
        yield from packages.install._inner(packages=["podman-docker"], include_podman=False)
        yield from files.put._inner(
            src=render_template("nodocker.j2", source=SOURCE),
            dest=NODOCKER,
            user="root",
            group="root",
            mode="0644",
        )
        return

    wrappers = [
        (render_template(template, source=SOURCE), dest, "root", "root", "0755")
        for template, dest in (
            ("docker-wrapper.sh.j2", WRAPPER),
            ("docker-compose-wrapper.sh.j2", COMPOSE_WRAPPER),
        )
    ]
    if (yield from put_files(wrappers)) == len(wrappers):
        host.noop(f"{WRAPPER} and {COMPOSE_WRAPPER} are up to date")
