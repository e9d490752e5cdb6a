"""Compose projects, the workstation pattern (standard §2.3, §7.2): a compose file (a template
rendered, the user's own copied from the controller, or one already on the host) brought up
with podman-compose within a time limit, and a systemd unit that starts it at boot."""

from __future__ import annotations

import hashlib
import shlex
from io import StringIO

from pydantic import ValidationError
from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files as file_ops

from facts.compose import APPLIED_FILE, ComposeProject, all_running, as_user
from facts.rootless import UserAccount
from facts.services import SystemdUnit
from model.host_data import COMPOSE_FILE, COMPOSE_TIMEOUT, TEMPLATES
from model.host_data import ComposeProject as ProjectModel
from operations._common import put_files, render_template, timed
from operations.services import RUNNING, _Scope, _unit_dir_levels

SOURCE = "operations/compose.py"
# The on-host helper: bounded podman-compose up/start/stop/down (run by the deploy and by the
# projects' boot units).
HELPER = "/usr/local/libexec/podman-standard/compose"
HELPER_TEXT = (TEMPLATES / "podman-standard-compose.py").read_text(encoding="utf-8")


def render_compose(project: ProjectModel) -> str:
    """The compose file of ``project``: ``templates/compose/<template>`` with its vars (and
    ``project``, the project's name)."""
    return render_template(
        f"compose/{project.template}", project=project.name, **project.vars
    ).getvalue()


def _helper(action: str, project: ProjectModel, extra: list[str] = ()) -> str:
    """The on-host helper's command line (``templates/podman-standard-compose.py``)."""
    words = ["python3", HELPER, action, project.name, project.compose_file, str(project.timeout)]
    return shlex.join([*words, *extra])


def _failing(command: str, message: str) -> str:
    """``command``, and when it fails ``message`` on stderr and status 1."""
    return f"{command} || {{ echo {shlex.quote(message)} >&2; exit 1; }}"


@operation()
def project(
    project: str,
    template: str | None = None,
    vars: dict | None = None,
    file: dict | None = None,
    files: dict | None = None,
    directory: str | None = None,
    user: str | None = None,
    timeout: int = COMPOSE_TIMEOUT,
    present: bool = True,
    root: str = "/srv/containers/compose",
):
    """
    Bring a compose project up with podman-compose and have systemd start it at boot, or take
    it down.

    + project: the project's name (podman-compose ``-p``; default directory name)
    + template: a file in ``templates/compose/`` (e.g. ``web-stack.yaml.j2``), or
    + file: the user's own compose file: ``{"src": "/path/on/controller"}`` (copied into the
      directory as ``compose.yaml``) or ``{"host_path": "/path/on/host"}`` (left in place, its
      directory is the project's)
    + vars: the template's variables
    + files: files beside the compose file by name (``.env``, config files), each ``src`` or
      ``host_path`` as ``file`` (and ``mode``, default 0600, of a copy)
    + directory: the project directory (default ``<root>/<project>``)
    + user: a rootless user that runs the project (it must linger)
    + timeout: seconds each bring-up (podman-compose, then every container running and
      healthy) may take; past it, or when a container exits, the run fails naming it
    + present: False stops and removes the boot unit, runs ``podman-compose down`` and removes
      the files this package copied (data and the user's own files kept)
    + root: ``podman_compose_root``

    Brings the project up when its files differ from those it was last brought up from
    (re-creating only the services whose inputs changed) or when a container is not running;
    the unit ``podman-compose-<project>.service`` (a user unit for ``user``) is written,
    enabled and started. Otherwise changes nothing.
    """
    try:
        model = ProjectModel.model_validate(
            {
                "name": project,
                "template": template,
                "vars": dict(vars or {}),
                "file": file,
                "files": dict(files or {}),
                "directory": directory,
                "user": user,
                "timeout": timeout,
                "present": present,
            }
        )
    except ValidationError as error:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise OperationError(f"compose project {project}: {problems}") from None

    directory = model.project_directory(root)
    owner, group, home = "root", "root", "/root"
    if model.user:
        account = host.get_fact(UserAccount, user=model.user)
        if not account:
            raise OperationError(f"compose project {model.name}: user {model.user} does not exist")
        owner, group, home = model.user, account["group"], account["home"]
    scope = _Scope(model.user, owner, group, home)
    unit_file = f"{scope.unit_dir('plain')}/{model.unit}"
    compose_file = f"{directory}/{model.compose_file}"
    state = host.get_fact(ComposeProject, project=model.name, directory=directory, user=model.user)
    if state.error and host.state.is_executing:
        raise OperationError(f"compose project {model.name}: podman ps failed: {state.error}")
    unit = host.get_fact(SystemdUnit, unit=model.unit, user=model.user)
    in_dir = f"cd {shlex.quote(directory)} && "
    helper = (StringIO(HELPER_TEXT), HELPER, "root", "root", "0755")
    if not model.present:
        yield from put_files([helper])  # the removal's bounded `down`
        yield from _remove(model, scope, state, unit, unit_file, compose_file, in_dir)
        return

    copies = _copies(model, directory)
    inputs = _inputs(model, copies, directory)
    unit_text = render_template(
        "compose-project.service.j2",
        source=SOURCE,
        project=model.name,
        directory=directory,
        file=model.compose_file,
        timeout=model.timeout,
        helper=HELPER,
        user_mode=bool(model.user),
    )
    commands = []
    if not (model.file and model.file.host_path):  # the user's own directory is left as it is
        commands += file_ops.directory._inner(path=directory, user=owner, group=group, mode="0755")
    if model.user:
        for level in _unit_dir_levels(scope, scope.unit_dir("plain")):  # each the user's own
            commands += file_ops.directory._inner(path=level, user=scope.owner, group=scope.group)
    written: list[str] = []
    commands += put_files(
        [helper]
        + [(StringIO(text), path, owner, group, mode) for path, (text, mode) in copies.items()]
        + [(unit_text, unit_file, owner, group, "0644")],
        written,
    )
    if unit_file in written:
        commands.append(scope.systemctl("daemon-reload"))
    if state.applied != inputs or not all_running(dict(state.containers)):
        record = ["--record", APPLIED_FILE, "--inputs", inputs]
        commands += timed(
            f"compose project {model.name}: up",
            StringCommand(as_user(model.user, in_dir + _helper("up", model, record))),
        )
    if unit.unit_file_state != "enabled":
        commands.append(scope.systemctl("enable", model.unit))
    if unit.active_state != "active":
        commands.append(_start_unit(model, scope))
    if commands:
        yield from commands
    else:
        host.noop(f"compose project {model.name} is up to date ({len(state.containers)} running)")


def _copies(model: ProjectModel, directory: str) -> dict[str, tuple[str, str]]:
    """The files this package writes into the project directory: path -> (text, mode): the
    compose file (rendered, or read from the controller) and the extra files from the
    controller."""
    copies: dict[str, tuple[str, str]] = {}
    if model.template:
        copies[f"{directory}/{COMPOSE_FILE}"] = (render_compose(model), "0644")
    elif model.file and model.file.src:
        copies[f"{directory}/{COMPOSE_FILE}"] = (_read(model, model.file.src), "0644")
    for name, source in sorted(model.files.items()):
        if source.src:
            copies[f"{directory}/{name}"] = (_read(model, source.src), source.mode)
    return copies


def _read(model: ProjectModel, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise OperationError(
            f"compose project {model.name}: cannot read {path} on the controller ({reason})"
        ) from None


def input_paths(model: ProjectModel, directory: str) -> list[str]:
    """Every file ``model`` is brought up from: the copies this package writes into
    ``directory`` (the compose file and the extra files from the controller) and the host's
    own files (``host_path``)."""
    paths = []
    if model.template or (model.file and model.file.src):
        paths.append(f"{directory}/{COMPOSE_FILE}")
    paths += [f"{directory}/{name}" for name, s in sorted(model.files.items()) if s.src]
    if model.file and model.file.host_path:
        paths.append(model.file.host_path)
    paths += [s.host_path for _, s in sorted(model.files.items()) if s.host_path]
    return paths


def inputs_digest(digests: dict[str, str]) -> str:
    """The sha256 over every file of a project ({path: its sha256}): what the project is
    brought up from (the helper records it after a successful ``up``)."""
    lines = "".join(f"{path} {digest}\n" for path, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _inputs(model: ProjectModel, copies: dict[str, tuple[str, str]], directory: str) -> str:
    """The inputs digest of ``model``: the copies by the digest of their text, the files on
    the host by their checksum."""
    digests = {}
    for path in input_paths(model, directory):
        if path in copies:
            digests[path] = hashlib.sha256(copies[path][0].encode()).hexdigest()
            continue
        digest = host.get_fact(Sha256File, path=path)
        if not digest:
            raise OperationError(
                f"compose project {model.name}: {path} is not a file on the host (a host_path "
                "file is the host's own: it must be there before the run)"
            )
        digests[path] = digest
    return inputs_digest(digests)


def _start_unit(model: ProjectModel, scope: _Scope) -> StringCommand:
    """``systemctl start`` of the project's unit (the helper's bounded start); when it fails,
    the command fails naming the project and printing the unit's last journal lines."""
    journal = ["--user-unit", model.unit] if model.user else ["-u", model.unit]
    journal_cmd = StringCommand("journalctl", "--no-pager", "-n", "30", *journal)
    if model.user:
        # The user's journal: read as root with its unit name (the system journal holds it).
        journal_cmd = StringCommand(
            "journalctl", "--no-pager", "-n", "30", f"_SYSTEMD_USER_UNIT={model.unit}"
        )
    message = f"compose project {model.name}: systemctl start {model.unit} failed; its journal:"
    return StringCommand(
        scope.systemctl("start", model.unit),
        "|| {",
        StringCommand("echo", QuoteString(message)),
        ">&2;",
        journal_cmd,
        ">&2; exit 1; }",
    )


def _remove(model, scope, state, unit, unit_file, compose_file, in_dir):
    """Stop and remove the boot unit, take the project down (bounded), remove the files this
    package wrote; the user's own files (host_path) and the project's data stay."""
    commands = []
    if unit.unit_file_state in ("enabled", "enabled-runtime") or unit.active_state in RUNNING:
        commands.append(scope.systemctl("disable", "--now", model.unit))
    if host.get_fact(File, path=unit_file):
        commands += [StringCommand("rm", "-f", unit_file), scope.systemctl("daemon-reload")]
    if state.containers and host.get_fact(File, path=compose_file):
        down = _failing(
            _helper("down", model), f"compose project {model.name}: podman-compose down failed"
        )
        commands.append(StringCommand(as_user(model.user, in_dir + down)))
    elif state.containers:
        raise OperationError(
            f"compose project {model.name}: containers {', '.join(sorted(state.containers))}"
            f" exist but {compose_file} does not; remove them with podman"
        )
    directory = compose_file.rsplit("/", 1)[0]
    ours = [f"{directory}/{APPLIED_FILE}"]
    if model.template or (model.file and model.file.src):
        ours.append(compose_file)
    elif not model.file:
        # Removed without saying where its file came from: the copy this package wrote.
        ours.append(f"{directory}/{COMPOSE_FILE}")
    ours += [f"{directory}/{name}" for name, s in sorted(model.files.items()) if s.src]
    for path in dict.fromkeys(ours):
        if host.get_fact(File, path=path):
            commands.append(StringCommand("rm", "-f", path))
    if commands:
        yield from commands
    else:
        host.noop(f"compose project {model.name} is absent")
