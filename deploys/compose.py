"""Compose projects, the workstation pattern (standard §2.3, §7.2): every entry of
``podman_compose_projects`` rendered into its directory and brought up with podman-compose.

Run alone: ``pyinfra INVENTORY deploys/compose.py``; part of the ``services`` phase.
"""

from pyinfra.api import deploy

from model import HostData, current_host_data
from model.host_data import Phase
from operations import compose as compose_ops


@deploy("Compose projects")
def compose(cfg: HostData):
    if Phase.services not in cfg.phases:
        return
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
            directory=project.directory,
            user=project.user,
            present=project.present,
            root=cfg.compose_root,
        )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    compose(current_host_data())
