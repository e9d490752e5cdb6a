"""Compose projects, the workstation pattern (standard §2.3, §7.2): every entry of
``podman_compose_projects`` (a template rendered, or the user's own compose file) brought up
with podman-compose and started at boot by its unit; and each rootless user's Docker API
(``docker_api``: the user's podman.socket and DOCKER_HOST).

Run alone: ``pyinfra INVENTORY deploys/compose.py``; part of the ``services`` phase.
"""

from pyinfra.api import deploy

from model import HostData, current_host_data
from model.host_data import Phase
from operations import api_socket
from operations import compose as compose_ops


@deploy("Compose projects")
def compose(cfg: HostData):
    if Phase.services not in cfg.phases:
        return
    for user in cfg.rootless_users:
        if user.docker_api:
            api_socket.user_socket(name=f"Docker API of {user.name}", user=user.name)
    # Removals first: a removed project may free a port that a new one takes.
    projects = sorted(cfg.compose_projects, key=lambda p: p.present)
    for project in projects:
        compose_ops.project(
            name=f"Compose project {project.name}"
            if project.present
            else f"Remove compose project {project.name}",
            project=project.name,
            template=project.template,
            vars=project.vars,
            file=project.file.model_dump(exclude_none=True) if project.file else None,
            files={n: f.model_dump(exclude_none=True) for n, f in project.files.items()},
            timeout=project.timeout,
            directory=project.directory,
            user=project.user,
            present=project.present,
            root=cfg.compose_root,
        )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    compose(current_host_data())
