"""Compose projects, the workstation pattern (standard §2.3, §7.2): a compose file rendered from a
template into a declared directory, brought up with podman-compose."""

from __future__ import annotations

import hashlib
import shlex
from io import StringIO

from pydantic import ValidationError
from pyinfra import host
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.facts.server import Users
from pyinfra.operations import files

from facts.compose import APPLIED_FILE, PROJECT_LABEL, ComposeProject, all_running, as_user
from model.host_data import ComposeProject as ProjectModel
from operations._common import render_template, timed

COMPOSE_FILE = "compose.yaml"


def render_compose(project: ProjectModel) -> str:
    """The compose file of ``project``: ``templates/compose/<template>`` with its vars (and
    ``project``, the project's name)."""
    return render_template(
        f"compose/{project.template}", project=project.name, **project.vars
    ).getvalue()


def _up_script(project: str, digest: str, recreate: bool) -> str:
    """podman-compose up (after `down` when the file changed), then check every container of
    the project runs, then record the file's digest: a failure leaves no record, so the next
    run tries again."""
    compose = f"podman-compose -p {shlex.quote(project)} -f {COMPOSE_FILE}"
    label = shlex.quote(f"label={PROJECT_LABEL}={project}")
    steps = [
        *([f"{compose} down"] if recreate else []),
        f"{compose} up -d",
        # podman-compose can exit 0 when a container failed to start: count the running ones
        # (a status filter: `--format {{.State}}` words differ between podman 4 and 5).
        f"all=$(podman ps -aq --filter {label} | wc -l)"
        f" && up=$(podman ps -q --filter {label} --filter status=running | wc -l)"
        ' && { [ "$all" -gt 0 ] && [ "$all" -eq "$up" ] || {'
        f" podman ps -a --filter {label} --format '{{{{.Names}}}}: {{{{.Status}}}}' >&2;"
        ' echo "$up of $all containers running" >&2; exit 1; }; }',
        f"printf '%s\\n' {digest} > {APPLIED_FILE}",
    ]
    return " && ".join(steps)


@operation()
def project(
    project: str,
    template: str,
    vars: dict | None = None,
    directory: str | None = None,
    user: str | None = None,
    present: bool = True,
    root: str = "/srv/containers/compose",
):
    """
    Render a compose file and bring the project up with podman-compose, or take it down.

    + project: the project's name (podman-compose ``-p``; default directory name)
    + template: a file in ``templates/compose/`` (e.g. ``web-stack.yaml.j2``)
    + vars: the template's variables
    + directory: where ``compose.yaml`` goes (default ``<root>/<project>``)
    + user: a rootless user that runs the project (it must linger)
    + present: False runs ``podman-compose down`` and removes the compose file (data kept)
    + root: ``podman_compose_root``

    Brings the project up when the compose file differs from the one last brought up (then
    ``down`` first when it has containers, so changed services are re-created) or when a
    container of it is not running; otherwise changes nothing. The project is up when every
    container runs.
    """
    try:
        model = ProjectModel.model_validate(
            {
                "name": project,
                "template": template,
                "vars": dict(vars or {}),
                "directory": directory,
                "user": user,
                "present": present,
            }
        )
    except ValidationError as error:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise OperationError(f"compose project {project}: {problems}") from None

    directory = model.directory or f"{root}/{model.name}"
    owner, group = "root", "root"
    if model.user:
        users = host.get_fact(Users)
        if model.user not in users:
            raise OperationError(f"compose project {model.name}: user {model.user} does not exist")
        owner, group = model.user, users[model.user]["group"]
    compose_file = f"{directory}/{COMPOSE_FILE}"
    state = host.get_fact(ComposeProject, project=model.name, directory=directory, user=model.user)
    if state.error and host.state.is_executing:
        raise OperationError(f"compose project {model.name}: podman ps failed: {state.error}")
    in_dir = f"cd {shlex.quote(directory)} && "

    if not model.present:
        if state.containers and host.get_fact(File, path=compose_file):
            compose = f"podman-compose -p {shlex.quote(model.name)} -f {COMPOSE_FILE}"
            yield StringCommand(as_user(model.user, in_dir + f"{compose} down"))
        elif state.containers:
            raise OperationError(
                f"compose project {model.name}: containers {', '.join(sorted(state.containers))}"
                f" exist but {compose_file} does not; remove them with podman"
            )
        leftovers = [
            p for p in (compose_file, f"{directory}/{APPLIED_FILE}") if host.get_fact(File, path=p)
        ]
        for path in leftovers:
            yield StringCommand("rm", "-f", path)
        if not state.containers and not leftovers:
            host.noop(f"compose project {model.name} is absent")
        return

    content = render_compose(model)
    digest = hashlib.sha256(content.encode()).hexdigest()
    commands = list(files.directory._inner(path=directory, user=owner, group=group, mode="0755"))
    if host.get_fact(Sha256File, path=compose_file) != digest:
        commands += files.put._inner(
            src=StringIO(content),
            dest=compose_file,
            user=owner,
            group=group,
            mode="0644",
            create_remote_dir=False,
        )
    else:
        commands += files.file._inner(path=compose_file, user=owner, group=group, mode="0644")
    if state.applied != digest:
        commands += timed(
            f"compose project {model.name}: up",
            StringCommand(
                as_user(model.user, in_dir + _up_script(model.name, digest, bool(state.containers)))
            ),
        )
    elif not all_running(dict(state.containers)):
        commands += timed(
            f"compose project {model.name}: up",
            StringCommand(as_user(model.user, in_dir + _up_script(model.name, digest, False))),
        )
    if commands:
        yield from commands
    else:
        host.noop(f"compose project {model.name} is up to date ({len(state.containers)} running)")
