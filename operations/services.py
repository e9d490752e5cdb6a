"""Production services as systemd-managed Podman containers (standard §3.1, §5.2, §7.2).

One model (``model.host_data.Service``), two renderings chosen by the facts: a quadlet
``.container`` (and ``.network``) where podman has its quadlet generator (>= 4.4), a plain
systemd unit running ``podman run`` where it has not (Debian 12's podman 4.3).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import PurePosixPath

from jinja2 import TemplateError
from pydantic import TypeAdapter, ValidationError
from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, QuoteString, StringCommand, operation
from pyinfra.operations.util import files as file_utils

from facts.rootless import UserAccount
from facts.services import PodmanNetworks, PodmanVolumes, ServicesState, ServicesStateValue
from model.host_data import (
    PASSTHROUGH_KEYS,
    SECRETS_FILE,
    EnvName,
    PullPolicy,
    Service,
    ServiceFile,
    ServiceRoot,
    UnitText,
)
from operations._common import (
    INLINE_LIMIT,
    header,
    keep_shared_facts,
    render_template,
    shared_fact,
    show_change,
    timed,
    upload_private,
    validation_problems,
    write_file,
)

SOURCE = "operations/services.py"
# Quadlet shipped with podman 4.4; before it, plain units.
QUADLET_SINCE = (4, 4)
SYSTEM_DIRS = {"quadlet": "/etc/containers/systemd", "plain": "/etc/systemd/system"}
# Under the rootless user's home: where its systemd (and quadlet's user generator) look.
USER_DIRS = {"quadlet": ".config/containers/systemd", "plain": ".config/systemd/user"}
# Beside a quadlet file while the generator checks its replacement (quadlet ignores it).
BACKUP_SUFFIX = ".prev"
# systemctl's ActiveState values of a unit that is up or on its way up.
RUNNING = ("active", "activating", "reloading")


@dataclass(frozen=True)
class _Scope:
    """Whose systemd runs the service: root's, or a rootless user's (``user``)."""

    user: str | None
    owner: str
    group: str
    home: str

    def unit_dir(self, rendering: str) -> str:
        if self.user:
            return f"{self.home}/{USER_DIRS[rendering]}"
        return SYSTEM_DIRS[rendering]

    def systemctl(self, *args: str) -> StringCommand:
        scope = ["--user", f"--machine={self.user}@.host"] if self.user else []
        return StringCommand("systemctl", *scope, *args)

    def start(self, verb: str, name: str) -> StringCommand:
        """``systemctl start|restart`` of service ``name``; when it fails (the container did
        not start, its health gate did not pass), the command fails naming the service and
        printing the unit's last journal lines."""
        unit = f"{name}.service"
        journal = ["--user-unit", unit] if self.user else ["-u", unit]
        message = f"service {name}: systemctl {verb} failed; the last lines of its journal:"
        return StringCommand(
            self.systemctl(verb, unit),
            "|| {",
            StringCommand("echo", QuoteString(message)),
            ">&2;",
            StringCommand("journalctl", "--no-pager", "-n", "20", *journal),
            ">&2; exit 1; }",
        )

    def as_user(self, command: str) -> str:
        """``command`` run as the rootless user, with its runtime directory as its systemd
        gives it (from /: the connecting user's working directory may be closed to it)."""
        if not self.user:
            return command
        user = shlex.quote(self.user)
        runtime = f'XDG_RUNTIME_DIR="/run/user/$(id -u {user})"'
        return f"cd / && runuser -u {user} -- env {runtime} {command}"


def _scope(name: str, user: str | None) -> _Scope:
    if not user:
        return _Scope(None, "root", "root", "/root")
    account = shared_fact(UserAccount, user=user)
    if not account:
        raise OperationError(f"service {name}: rootless user {user} does not exist on this host")
    return _Scope(user, user, account["group"], account["home"])


def _foreign_unit(state, own_files: list[str]) -> str | None:
    """Where systemd loads the unit from, when that is not one of ``own_files`` (this
    package's plain unit, or the quadlet file its generated unit names as SourcePath)."""
    if state.load_state in ("", "not-found"):
        return None
    paths = [p for p in (state.fragment_path, state.source_path) if p]
    if any(p in own_files for p in paths):
        return None
    return paths[0] if paths else f"load state {state.load_state}"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _rendering(name: str, st: ServicesStateValue) -> tuple[str, str | None]:
    """('quadlet', path of the generator) or ('plain', None), from the host's podman."""
    if not st.podman_version:
        raise OperationError(f"service {name}: podman is not installed")
    if st.quadlet and _version(st.podman_version) >= QUADLET_SINCE:
        return "quadlet", st.quadlet
    return "plain", None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# podman run's flag -> quadlet's [Container] key for it and the podman release that brought the
# key (pkg/systemd/quadlet/quadlet.go at each tag, v4.4.0 to v5.8.0). A flag without a key
# (--ipc, --cpus), or a key newer than the host's podman, goes through PodmanArgs=.
QUADLET_KEYS = {
    "--network": ("Network", (4, 4)),
    "--shm-size": ("ShmSize", (4, 7)),
    "--memory": ("Memory", (5, 5)),
    "--pids-limit": ("PidsLimit", (4, 7)),
    "--cap-add": ("AddCapability", (4, 4)),
    "--cap-drop": ("DropCapability", (4, 4)),
    "--user": ("User", (4, 4)),  # user:group -> User= and Group=
    "--workdir": ("WorkingDir", (4, 6)),
    "--hostname": ("HostName", (4, 6)),
    "--stop-timeout": ("StopTimeout", (5, 0)),
    "--init": ("RunInit", (4, 4)),
    "--read-only": ("ReadOnly", (4, 4)),
    "--tmpfs": ("Tmpfs", (4, 5)),
    "--label": ("Label", (4, 4)),
    "--ulimit": ("Ulimit", (4, 7)),
    "--sysctl": ("Sysctl", (4, 6)),
    "--userns": ("UserNS", (4, 5)),
    "--log-driver": ("LogDriver", (4, 5)),
    # --log-opt: LogOpt= (5.2) takes its value unquoted, and a tag ({{.Name}}) needs quoting:
    # always PodmanArgs.
    "--health-timeout": ("HealthTimeout", (4, 5)),
    "--health-retries": ("HealthRetries", (4, 5)),
    "--health-start-period": ("HealthStartPeriod", (4, 5)),
    # The pass-through keys (quadlet_keys): each key's own flag.
    **{flag: (key, since) for key, (flag, since, _kind) in PASSTHROUGH_KEYS.items()},
}
# Keys whose values quadlet splits into words (so a value is written as one quoted word).
_QUADLET_WORD_KEYS = {"Label", "PodmanArgs"} | {
    key for key, (_flag, _since, kind) in PASSTHROUGH_KEYS.items() if kind == "word"
}


def podman_options(svc: Service) -> list[tuple[str, str | None]]:
    """podman run's options for the spec's runtime fields, ``(flag, value or None)``: one
    list both renderings write. A field at its default (None, False, empty) writes nothing;
    True writes the flag alone."""
    check = svc.healthcheck
    health = ("timeout", "retries", "start_period") if check else ()
    user = svc.container_user
    if user and svc.container_group:
        user += f":{svc.container_group}"
    wanted = [
        ("--network", svc.host_network and "host"),
        ("--shm-size", svc.shm_size),
        ("--ipc", svc.ipc),
        ("--memory", svc.memory),
        ("--cpus", None if svc.cpus is None else f"{svc.cpus:g}"),
        ("--pids-limit", svc.pids_limit),
        *(("--cap-add", c) for c in svc.cap_add),
        *(("--cap-drop", c) for c in svc.cap_drop),
        ("--user", user),
        ("--workdir", svc.working_dir),
        ("--hostname", svc.hostname),
        ("--stop-timeout", svc.stop_timeout),
        ("--init", svc.init),
        ("--read-only", svc.read_only),
        *(("--tmpfs", t.spec) for t in svc.tmpfs),
        *(("--label", f"{k}={v}") for k, v in sorted(svc.labels.items())),
        *(("--ulimit", f"{k}={v}") for k, v in sorted(svc.ulimits.items())),
        *(("--sysctl", f"{k}={v}") for k, v in sorted(svc.sysctls.items())),
        ("--userns", svc.userns),
        ("--log-driver", svc.log_driver),
        *(("--log-opt", f"{k}={v}") for k, v in sorted(svc.log_opts.items())),
        *((f"--health-{key.replace('_', '-')}", getattr(check, key)) for key in health),
        *_passthrough_options(svc),
    ]
    return [
        (flag, None if value is True else str(value))
        for flag, value in wanted
        if value is not None and value is not False
    ]


def _passthrough_options(svc: Service) -> list[tuple[str, str | bool]]:
    """``quadlet_keys`` as podman run's options: a bool key's flag alone when true."""
    options: list[tuple[str, str | bool]] = []
    for key, values in sorted(svc.quadlet_keys.items()):
        flag, _since, kind = PASSTHROUGH_KEYS[key]
        for value in values:
            options.append((flag, value == "true") if kind == "bool" else (flag, value))
    return options


def quadlet_options(svc: Service, podman: tuple[int, ...]) -> list[tuple[str, str, bool]]:
    """``podman_options`` as quadlet lines ``(key, value, one quoted word?)`` for the host's
    podman version: its native key where that version has it, else ``PodmanArgs=``."""
    lines = []
    for flag, value in podman_options(svc):
        key, since = QUADLET_KEYS.get(flag, (None, None))
        if key is None or podman < since:
            lines.append(("PodmanArgs", flag if value is None else f"{flag}={value}", True))
        elif value is None:
            lines.append((key, "true", False))
        elif flag == "--user":
            user, _, group = value.partition(":")
            lines += [("User", user, False)] + [("Group", group, False)] * bool(group)
        else:
            lines.append((key, value, key in _QUADLET_WORD_KEYS))
    return lines


# Quadlet's Notify=healthy (podman run --sdnotify=healthy): podman >= 5.0 tells systemd the
# service is up only once its health check passes.
NOTIFY_HEALTHY_SINCE = (5, 0)
# Older podman (Debian 12's 4.3, quadlet 4.4 to 4.9): the unit's ExecStartPost waits for the
# check, at most the check's budget (HealthCheck.budget), then fails naming the service and
# printing its container's last log lines. One line: a unit value cannot hold a line break.
HEALTH_GATE = (
    "name=$1; budget=$2; end=$(( $(date +%s) + budget )); "
    'until podman healthcheck run "$name" >/dev/null 2>&1; do '
    'if [ "$(date +%s)" -ge "$end" ]; then '
    'echo "health gate: $name is not healthy after ${budget}s; its last log lines:" >&2; '
    'podman logs --tail 20 "$name" >&2; exit 1; fi; sleep 1; done; '
    'echo "health gate: $name is healthy"'
)
# How long a health-gated start may take beyond the check's budget and one more check (the
# wait's last, begun before its deadline): creating and starting the container (the operation
# pulls its image before it starts or restarts the unit).
HEALTH_START_ALLOWANCE = 60


# The image is pulled before the unit is started or restarted, so the running container keeps
# serving while it downloads (a restart then only swaps containers). Bounded: PULL_TRIES tries,
# each cut at PULL_TIMEOUT seconds, PULL_BACKOFF seconds times the try's number apart; then the
# run stops naming the image, before the restart: the old container stays up.
PULL_TRIES = 3
PULL_BACKOFF = 10
PULL_TIMEOUT = 1800
PULL = (
    'image=$1; tries=$2; backoff=$3; limit=$4; podman image exists "$image" && exit 0; n=1; '
    'until timeout "$limit" podman pull -q "$image" >/dev/null; do '
    'if [ "$n" -ge "$tries" ]; then '
    'echo "image $image: pull failed $n times; the running container, if any, is left as it is" '
    ">&2; exit 1; fi; sleep $((n * backoff)); n=$((n + 1)); done"
)


# pull: always: the same, without the "the host has it" shortcut.
PULL_ALWAYS = PULL.replace('podman image exists "$image" && exit 0; ', "")
# pull: always, no restart due otherwise: exit 0 when the tag now names another image than
# the service's container runs (or it has none), 1 when the same, 2 (naming the image) when the
# pulled image cannot be read: the run fails rather than skip a restart it cannot decide.
MOVED = (
    'image=$1; name=$2; new=$(podman image inspect --format "{{.Id}}" "$image") || '
    '{ echo "service $name: podman image inspect $image failed after its pull; not restarted" '
    ">&2; exit 2; }; "
    'old=$(podman container inspect --format "{{.Image}}" "$name" 2>/dev/null); '
    '[ "$new" != "$old" ] || exit 1; '
    'echo "service $name: $image now names image $new; restarting"'
)

# The image each service runs, and the one it ran before (the rollback's, and what prune
# keeps): <service_dir>/IMAGE_RECORD, "current|previous ID DIGEST REFERENCE" lines, rewritten
# after a start or restart only when the container's image differs from "current".
IMAGE_RECORD = "image-record"
RECORD = (
    "name=$1; file=$2; head=$3; info=$(podman container inspect --format "
    '"{{.Image}} {{.ImageName}}" "$name") || exit 1; set -- $info; '
    'digest=$(podman image inspect --format "{{.Digest}}" "$1") || exit 1; now="$1 $digest $2"; '
    'old=$(sed -n "s/^current //p" "$file" 2>/dev/null); [ "$old" = "$now" ] && exit 0; '
    'prev=$(sed -n "s/^previous //p" "$file" 2>/dev/null); [ -n "$old" ] && prev=$old; '
    '{ printf "%s" "$head"; echo "current $now"; [ -z "$prev" ] || echo "previous $prev"; } '
    '> "$file.new" && mv -f "$file.new" "$file"'
)


def pull_command(svc: Service, scope: _Scope) -> StringCommand:
    """Pull the spec's image (as the service's user), bounded: with ``pull: missing`` only
    when the host lacks it."""
    script = PULL_ALWAYS if svc.pull == PullPolicy.always else PULL
    args = [svc.image, str(PULL_TRIES), str(PULL_BACKOFF), str(PULL_TIMEOUT)]
    command = shlex.join(["sh", "-c", script, "pull", *args])
    return StringCommand(scope.as_user(command))


def record_command(svc: Service, scope: _Scope, service_dir: str) -> StringCommand:
    """Record the image the service's container runs (``IMAGE_RECORD``), when it changed."""
    head = header(SOURCE) + f"# the image {svc.name} runs (current) and ran before (previous)\n"
    args = [svc.name, f"{service_dir}/{IMAGE_RECORD}", head]
    return StringCommand(scope.as_user(shlex.join(["sh", "-c", RECORD, "record", *args])))


def recorded_images(text: str | None) -> dict[str, str]:
    """``{"current": ID, "previous": ID}`` of an image record (what it has of them)."""
    ids = {}
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("current", "previous"):
            ids[words[0]] = words[1]
    return ids


def _moved_restart(svc: Service, scope: _Scope) -> StringCommand:
    moved = scope.as_user(shlex.join(["sh", "-c", MOVED, "moved", svc.image, svc.name]))
    return StringCommand(
        moved,
        "; rc=$?; if [ $rc -eq 0 ]; then",
        scope.start("restart", svc.name),
        "; elif [ $rc -ne 1 ]; then exit $rc; fi",
    )


def render_unit(
    svc: Service,
    rendering: str,
    service_dir: str,
    rootless: bool,
    env_file: bool = False,
    *,
    podman: tuple[int, ...],
) -> str:
    """The unit file of ``svc`` in ``rendering`` ('quadlet': the ``.container``, 'plain': the
    ``.service``) for the host's ``podman`` version; the templates read ``svc`` and escape
    every value for systemd's syntax with their filters. The secrets file is referenced when
    ``svc`` has secrets or ``env_file`` says so."""
    template = "service.container.j2" if rendering == "quadlet" else "service.service.j2"
    stop = svc.stop_timeout
    check = svc.healthcheck
    native = rendering == "quadlet" and podman >= NOTIFY_HEALTHY_SINCE
    return render_template(
        template,
        source=SOURCE,
        svc=svc,
        service_dir=service_dir,
        options=podman_options(svc),
        quadlet_options=quadlet_options(svc, podman) if rendering == "quadlet" else [],
        # podman's own stop waits this long, systemd's a minute more.
        stop_seconds=str(10 if stop is None else stop),
        timeout_stop=None if stop is None else str(stop + 60),
        # A service with a health check is started (systemd's "active", what the services
        # that require it wait for) only once the check passes, within its budget.
        notify_healthy=bool(check) and native,
        health_gate=HEALTH_GATE if check and not native else None,
        health_budget=str(check.budget) if check else None,
        timeout_start=(
            str(int(check.budget + check.timeout_s) + HEALTH_START_ALLOWANCE) if check else "900"
        ),
        env_file=f"{service_dir}/{SECRETS_FILE}" if svc.secrets or env_file else None,
        reload=reload_args(svc),
        user_mode=rootless,
        wanted_by="default.target" if rootless else "multi-user.target",
    ).getvalue()


def reload_args(svc: Service) -> list[str] | None:
    """podman's arguments for the unit's ``ExecReload=`` (``systemctl reload``): the signal
    sent to the container's main process, or the command run in it."""
    if svc.reload is None:
        return None
    if svc.reload.signal:
        return ["kill", "--signal", svc.reload.signal, svc.name]
    return ["exec", svc.name, *svc.reload.command]


def render_timer(svc: Service, timer) -> tuple[str, str]:
    """(the ``.timer``, the ``.service`` it starts) of one of ``svc``'s timers."""
    unit = f"{svc.name}-{timer.name}"
    context = {"source": SOURCE, "svc": svc, "timer": timer, "unit": unit}
    return (
        render_template("service.timer.j2", **context).getvalue(),
        render_template("service.job.j2", **context).getvalue(),
    )


def _timer_files(svc: Service, scope: _Scope, timer) -> tuple[str, str]:
    base = f"{scope.unit_dir('plain')}/{svc.name}-{timer.name}"
    return f"{base}.timer", f"{base}.service"


def _timers(svc: Service, scope: _Scope, st: ServicesStateValue):
    """The service's timers: files written when they differ, removed for ``present: false``
    (stopped and disabled first). Yields the commands; returns whether a unit file changed
    (then a daemon-reload is due) and the commands to run after it."""
    changed = False
    after: list = []
    for timer in svc.timers:
        timer_file, job_file = _timer_files(svc, scope, timer)
        unit = f"{svc.name}-{timer.name}.timer"
        state = st.unit(unit, svc.user)
        if timer.present and svc.present:
            for path, text in zip((timer_file, job_file), render_timer(svc, timer), strict=True):
                changed |= yield from _put(text, path, scope, "0644", st)
            if state.unit_file_state != "enabled" or state.active_state != "active":
                after.append(scope.systemctl("enable", "--now", unit))
            continue
        if state.active_state in RUNNING:
            yield scope.systemctl("stop", unit)
        if state.unit_file_state == "enabled":
            yield scope.systemctl("disable", unit)
        for path in (timer_file, job_file):
            removed = _collect(_remove_file(path, st))[0]
            changed |= bool(removed)
            yield from removed
    return changed, after


def render_network(network: str) -> str:
    return render_template("service.network.j2", source=SOURCE, network=network).getvalue()


def render_secrets(svc: Service, values: dict[str, str]) -> str:
    """The ``--env-file`` podman reads: one ``KEY=value`` per line, taken literally."""
    lines = [f"{key}={values[key]}\n" for key in sorted(values)]
    return header(SOURCE) + f"# secrets of {svc.name}; mode 0600\n" + "".join(lines)


def resolve_secrets(svc: Service) -> dict[str, str]:
    """Each secret's value, read on the controller (environment or file) at deploy time."""
    values = {}
    for key, src in sorted(svc.secrets.items()):
        try:
            values[key] = src.read()
        except ValueError as error:
            raise OperationError(f"service {svc.name}: secret {key}: {error}") from None
    return values


def _upload(content: str, dest: str) -> FileUploadCommand:
    temp_dir = (host.current_op_global_arguments or {}).get("_temp_dir")
    return FileUploadCommand(
        StringIO(content),
        dest,
        remote_temp_filename=host.get_temp_filename(dest, temp_directory=temp_dir),
    )


def _put(content: str, dest: str, scope: _Scope, mode: str, st: ServicesStateValue):
    """Upload ``content`` when it differs (its directory exists: _ensure_unit_dir), then its
    owner and mode; else fix those alone. Yields the commands; returns whether the content
    changed (a metadata fix alone is no change)."""
    current = st.file(dest)
    if current.kind == "other":
        raise OperationError(f"{dest} exists and is not a regular file")
    changed = current.sha1 != _sha1(content)
    if changed:
        show_change(dest, content, exists=current.kind != "absent")
        yield _upload(content, dest)
    if changed or (current.user, current.group) != (scope.owner, scope.group):
        yield file_utils.chown(dest, scope.owner, scope.group)
    if changed or current.mode != str(int(mode)):
        yield file_utils.chmod(dest, int(mode))
    return changed


def _remove_file(path: str, st: ServicesStateValue):
    if st.file(path).kind != "absent":
        yield StringCommand("rm", "-f", QuoteString(path))


def _directory(path: str, st: ServicesStateValue, user: str, group: str, mode: str | None = None):
    """A directory with this owner (and mode): created, or its owner and mode fixed."""
    current = st.dir(path)
    if current.kind == "other":
        raise OperationError(f"{path} exists and is not a directory")
    if current.kind == "absent":
        yield StringCommand("mkdir", "-p", QuoteString(path))
    if mode and (current.kind == "absent" or current.mode != str(int(mode))):
        yield file_utils.chmod(path, int(mode))
    if current.kind == "absent" or (current.user, current.group) != (user, group):
        yield file_utils.chown(path, user, group)


def _put_secret(content: str, dest: str, scope: _Scope, st: ServicesStateValue):
    """Write the secrets file 0600 from its creation on, never printing it (files.put would
    show it with --diff). Returns whether the content changed."""
    current = st.file(dest)
    changed = current.sha1 != _sha1(content)
    if changed:
        exists = current.kind != "absent"
        yield from upload_private(content, dest, scope.owner, scope.group, "600", exists=exists)
        return True
    if (current.user, current.group) != (scope.owner, scope.group):
        yield file_utils.chown(dest, scope.owner, scope.group)
    if current.mode != "600":
        yield file_utils.chmod(dest, 600)
    return False


def render_files(svc: Service, data=None) -> dict[str, tuple[ServiceFile, str]]:
    """The content of each present managed file of ``svc``, by its path under the service
    directory: ``content`` as it is, or its template rendered with ``svc``, the file's
    ``vars``, the host data ``data`` and ``secrets`` (only the secrets the template reads,
    read on the controller now). Rendering errors name the file, never a value."""
    wanted = set().union(*(f.secrets for f in svc.files if f.present))
    secrets = {k: v for k, v in resolve_secrets(svc).items() if k in wanted} if wanted else {}
    rendered = {}
    for file in svc.files:
        if not file.present:
            continue
        if file.template is None:
            rendered[file.path] = (file, file.content)
            continue
        try:
            text = render_template(
                f"services/{file.template}",
                source=SOURCE,
                svc=svc,
                vars=file.vars,
                data=data,
                secrets=secrets,
            ).getvalue()
        except Exception as error:
            # jinja2's own errors name the template's variable, never a value; any other
            # (a filter's) may quote one: only its kind is told.
            told = f": {error}" if isinstance(error, TemplateError) else ""
            raise OperationError(
                f"service {svc.name}: file {file.path}: template {file.template}: "
                f"{type(error).__name__}{told}"
            ) from None
        rendered[file.path] = (file, text)
    return rendered


def file_paths(svc: Service, service_dir: str) -> dict[str, str]:
    """Each managed file's path under the service directory -> its path on the host."""
    return {f.path: f"{service_dir}/{f.path}" for f in svc.files}


def file_states(svc: Service, service_dir: str, st: ServicesStateValue) -> dict:
    """What the host has at each managed file's path, from the services' gathered state
    (``probe`` lists these paths with the others: no command of their own)."""
    return {path: st.file(path) for path in file_paths(svc, service_dir).values()}


def _files(svc: Service, scope: _Scope, service_dir: str, states: dict, data=None):
    """The service's managed files, given what the host has (``file_states``), written where
    their content differs; owner, group and mode fixed where only they differ (no change);
    ``present: false`` ones removed. A file holding secrets goes through ``upload_private``,
    the others inline (one command each). Yields the commands; returns whether a file's
    content changed (then the service restarts or reloads)."""
    if not svc.files:
        return False
    paths = file_paths(svc, service_dir)
    rendered = render_files(svc, data)
    changed = False
    for file in svc.files:
        dest = paths[file.path]
        have = states.get(dest)
        kind = have.kind if have is not None else "absent"
        if kind == "other":
            raise OperationError(
                f"service {svc.name}: file {file.path}: {dest} is not a regular file "
                "(a directory or a link); not replaced"
            )
        if not file.present:
            if kind == "file":
                yield StringCommand("rm", "-f", "--", QuoteString(dest))
                changed = True
            continue
        owner = file.owner or scope.owner
        group = file.group or scope.group
        text = rendered[file.path][1]
        if kind == "absent" or have.sha1 != _sha1(text):
            exists = kind == "file"
            if file.secrets or len(text.encode()) > INLINE_LIMIT:
                yield from upload_private(text, dest, owner, group, file.mode, exists=exists)
            else:
                show_change(dest, text, exists=exists)
                yield write_file(text, dest, owner, group, file.mode)
            changed = True
            continue
        # Each given as a name or a numeric id: either matches.
        if owner not in (have.uid, have.user) or group not in (have.gid, have.group):
            yield StringCommand("chown", QuoteString(f"{owner}:{group}"), "--", QuoteString(dest))
        if int(have.mode, 8) != int(file.mode, 8):
            yield StringCommand("chmod", QuoteString(file.mode), "--", QuoteString(dest))
    return changed


def _collect(generator) -> tuple[list, object]:
    """Run a sub-generator, returning (its commands, its return value)."""
    commands = []
    while True:
        try:
            commands.append(next(generator))
        except StopIteration as stop:
            return commands, stop.value


def _validate_quadlet(
    quadlet: str, scope: _Scope, units: list[str], changed: list[str], backups: list[str]
) -> StringCommand:
    """Run quadlet's dry-run over the unit directory: every expected unit must come out. On
    failure the generator's errors go to stderr, the previous files come back (or the new
    ones go), and the command fails, before any daemon-reload could load them."""
    dryrun = scope.as_user(f"{quadlet} {'-user ' if scope.user else ''}-dryrun")
    checks = " && ".join(
        f"printf '%s\\n' \"$out\" | grep -qxF -- {shlex.quote(f'---{unit}---')}" for unit in units
    )
    restore = [
        f"mv -f {shlex.quote(path + BACKUP_SUFFIX)} {shlex.quote(path)}"
        if path in backups
        else f"rm -f {shlex.quote(path)}"
        for path in changed
    ]
    cleanup = " ".join(shlex.quote(path + BACKUP_SUFFIX) for path in backups)
    script = (
        f"out=$({dryrun} 2>/dev/null); "
        f"if {checks}; then {f'rm -f {cleanup}' if cleanup else 'true'}; "
        f"else {dryrun} 2>&1 >/dev/null | grep -v 'Loading source unit file' >&2; "
        f"{'; '.join(restore)}; exit 1; fi"
    )
    return StringCommand(script)


def _ensure_dirs(svc: Service, scope: _Scope, root: str, service_dir: str, st):
    yield from _reachable_by_user(scope, root, st)
    yield from _directory(root, st, "root", "root", "0755")
    yield from _directory(service_dir, st, scope.owner, scope.group, "0750")
    # Bind-mount sources are created once; afterwards they belong to the container (an
    # image such as postgres chowns its data directory to its own uid on first start).
    made = set()
    for path in _volume_dirs(svc, service_dir):
        if path in made or st.dir(path).kind != "absent":
            continue
        made.add(path)
        yield from _directory(path, st, scope.owner, scope.group, "0750")


def _volume_dirs(svc: Service, service_dir: str) -> list[str]:
    """The bind-mount sources under the service's directory and the directories its present
    managed files go in, each level of each."""
    sources = [v.source for v in svc.volumes if v.source is not None]
    sources += [str(PurePosixPath(f.path).parent) for f in svc.files if f.present and "/" in f.path]
    paths = []
    for source in dict.fromkeys(sources):
        parts = PurePosixPath(source).parts
        paths += [f"{service_dir}/{'/'.join(parts[:d])}" for d in range(1, len(parts) + 1)]
    return list(dict.fromkeys(paths))


def _reachable_by_user(scope: _Scope, root: str, st: ServicesStateValue):
    """A rootless service's user must reach ``<root>/<name>`` (its secrets file, its data):
    podman creates a custom graphroot's missing parents 0700 (measured on Debian 12:
    /space/containers under motoko's /space), which would hide a service root beside the
    store. Each existing ancestor of ``root`` that others cannot search gets ``o+x`` (search
    only, no listing); nothing else about it changes."""
    if not scope.user:
        return
    for ancestor in _ancestors(root):
        info = st.dir(ancestor)
        if info.kind == "dir" and not int(info.mode) % 10 & 1:
            yield StringCommand("chmod o+x --", QuoteString(ancestor))


def _ancestors(root: str) -> list[str]:
    return [str(a) for a in reversed(PurePosixPath(root).parents[:-1])]  # '/' excluded


def _unit_dir_levels(scope: _Scope, unit_dir: str) -> list[str]:
    """The directories ``_ensure_unit_dir`` owns: the unit directory, and for a rootless
    user each level of it under the home."""
    if not scope.user:
        return [unit_dir]
    relative = PurePosixPath(unit_dir).relative_to(scope.home)
    levels = range(1, len(relative.parts) + 1)
    return [f"{scope.home}/{'/'.join(relative.parts[:d])}" for d in levels]


def _ensure_unit_dir(scope: _Scope, unit_dir: str, st: ServicesStateValue):
    """The directory the unit goes in; for a rootless user each level under the home is the
    user's own (``mkdir -p`` as root would leave ~/.config root-owned)."""
    for path in _unit_dir_levels(scope, unit_dir):
        yield from _directory(path, st, scope.owner, scope.group)


def probe(services: list[Service], root: str) -> dict:
    """The arguments of ``ServicesState`` for ``services`` (sorted, so every operation of a
    run asks the same): each one's unit files of both renderings, its networks' quadlet files,
    its timers' files, its secrets file, its managed files; its directories (with those the
    managed files go in), the unit directories and (rootless)
    the service root's ancestors; its units, in root's manager or its user's."""
    files, dirs, units, records = set(), set(), set(), set()
    user_units: dict[str, set] = {}
    for svc in services:
        try:
            scope = _scope(svc.name, svc.user)
        except OperationError:
            continue  # its user is missing: its own operation says so
        service_dir = f"{root}/{svc.name}"
        plain, quadlet = scope.unit_dir("plain"), scope.unit_dir("quadlet")
        names = {f"{svc.name}.service"} | {f"{svc.name}-{t.name}.timer" for t in svc.timers}
        (user_units.setdefault(svc.user, set()) if svc.user else units).update(names)
        files |= {f"{plain}/{svc.name}.service", f"{quadlet}/{svc.name}.container"}
        files |= {f"{service_dir}/{SECRETS_FILE}"}
        files |= {f"{quadlet}/{n.name}.network" for n in svc.attachments}
        files |= set(file_paths(svc, service_dir).values())
        files |= {path for timer in svc.timers for path in _timer_files(svc, scope, timer)}
        dirs |= {root, service_dir, *_volume_dirs(svc, service_dir)}
        dirs |= {*_unit_dir_levels(scope, plain), *_unit_dir_levels(scope, quadlet)}
        dirs |= set(_ancestors(root)) if svc.user else set()
        records.add(f"{service_dir}/{IMAGE_RECORD}")
    return {
        "files": sorted(files),
        "dirs": sorted(dirs),
        "records": sorted(records),
        "units": sorted(units),
        "user_units": {user: sorted(names) for user, names in sorted(user_units.items())},
    }


def gathered_state(services: list[Service], root: str) -> ServicesStateValue:
    """The state of ``services`` (``probe``), one command for all of them, shared with the
    operations that follow while none changes anything (``shared_fact``)."""
    unique = {svc.name: svc for svc in services}
    return shared_fact(ServicesState, **probe(list(unique.values()), root))


def _spec(service: Service | dict | str) -> Service:
    """The service spec: the model's object as the deploys pass it (validated with the host's
    data, used as it is), or its JSON (the command line) or dict, validated here once."""
    if isinstance(service, Service):
        return service
    try:
        if isinstance(service, str):
            return Service.model_validate_json(service)
        return Service.model_validate(service)
    except ValidationError as error:
        try:
            data = json.loads(service) if isinstance(service, str) else service
        except ValueError:
            data = None
        name = data.get("name") if isinstance(data, dict) else None
        problems = validation_problems(error)
        raise OperationError(f"service {name or '(unnamed)'}: {problems}") from None


@operation()
def service(
    service: Service | dict | str,
    root: str = "/srv/containers/apps",
    remove_networks: list[str] | None = None,
    secret_values: dict[str, str] | None = None,
    data=None,
    declared: list[Service | dict | str] | None = None,
):
    """
    Run a container as a systemd service, or remove it.

    + service: the service spec, ``model.host_data.Service`` (deploys pass the object their
      host data validated), or its JSON (on the command line:
      ``service='{"name": "web", "image": "docker.io/library/nginx:1.27.3"}'``); the fields
      and their meaning are the README's Services table
    + root: the service root (``podman_service_root``); the service's directory is
      ``<root>/<name>/``
    + remove_networks: with present=False, also remove these of the service's networks (their
      quadlet files and the podman networks): those it is the last service to use
      (deploys/services.py decides)
    + secret_values: ``{VAR: value}`` the caller holds already (the migration: a Docker
      container's environment), written into the same 0600 secrets file as ``secrets``
    + data: what the ``files`` templates see as ``data`` (the deploys: the host's validated
      host data)
    + declared: every service the host declares (this one among them, same ``root``): their
      state is read in one command (``facts.services.ServicesState``), which the operations
      that follow reuse while none changes anything, so a no-op run costs the same commands
      for one service or many; default: this service alone

    Its ``files`` are written under its directory when their content differs (compared by
    checksum, read in that same command); a changed one restarts the service, or reloads it
    (``systemctl reload``: its ``reload`` signal or command) where it declares a reload and
    nothing else changed. A file whose template reads secrets is uploaded through a 0600 file,
    never shown.

    Its ``timers`` are plain systemd ``.timer`` + ``.service`` units beside either rendering,
    enabled; removed ones (``present: false``, or all of a removed service's) go first.

    Quadlet (podman >= 4.4 with its generator): ``<service>.container`` (+ ``<network>.network``)
    in /etc/containers/systemd (rootless: ~/.config/containers/systemd), checked with the
    generator's dry-run before daemon-reload (a rejected file is put back as it was). Older
    podman: ``<service>.service`` in /etc/systemd/system (~/.config/systemd/user), enabled.
    Starts the service when it is not running, restarts it only when its unit or secrets
    changed, each time after pulling its image (bounded retries; a failed pull stops the run
    before the restart, the old container still serving); a service with a health check is
    started once healthy, or the start fails in bounded time naming it. Idempotent: no
    change, no command. Destructive only with ``remove_data``.
    """
    svc = _spec(service)
    try:
        root = TypeAdapter(ServiceRoot).validate_python(root)
        given = TypeAdapter(dict[EnvName, UnitText]).validate_python(dict(secret_values or {}))
    except ValidationError as error:
        raise OperationError(f"service {svc.name}: {validation_problems(error)}") from None

    clash = sorted(set(given) & (set(svc.env) | set(svc.secrets)))
    if clash:
        raise OperationError(f"service {svc.name}: {', '.join(clash)} given twice")
    scope = _scope(svc.name, svc.user)
    service_dir = f"{root}/{svc.name}"
    unit_name = f"{svc.name}.service"
    # pyinfra also runs operations while planning, before earlier ones (installing podman,
    # enabling linger) have run: what they will provide is only required when this one runs.
    executing = host.state.is_executing
    st = gathered_state([*map(_spec, declared or []), svc], root)
    state = st.unit(unit_name, svc.user)
    if svc.user and not state.reachable and executing:
        raise OperationError(
            f"service {svc.name}: the systemd user manager of {svc.user} is not running "
            "(enable linger: operations.rootless.user)"
        )
    quadlet_file = f"{scope.unit_dir('quadlet')}/{svc.name}.container"
    plain_file = f"{scope.unit_dir('plain')}/{unit_name}"
    foreign = _foreign_unit(state, [quadlet_file, plain_file])
    if foreign:
        # ssh, dbus, ...: a unit of that name that this package did not write is the host's.
        raise OperationError(
            f"service {svc.name}: {unit_name} already exists ({foreign}) and was not written "
            "by podman-standard; refusing to replace, stop or remove it: rename the service"
        )

    if not svc.present:
        mine = {n.name for n in svc.attachments}
        stray = sorted(set(remove_networks or ()) - mine)
        if stray:
            raise OperationError(
                f"service {svc.name}: remove_networks {stray} are not its networks"
            )
        networks = [n.name for n in svc.attachments if n.name in set(remove_networks or ())]
        unit_files = [quadlet_file, plain_file]
        yield from _remove(svc, scope, state, service_dir, unit_files, networks, st)
        return

    if not st.podman_version and not executing:
        # Planned before podman is installed: the service will be set up; its rendering is
        # chosen when the operation runs.
        yield from _collect(_ensure_dirs(svc, scope, root, service_dir, st))[0]
        return
    rendering, quadlet = _rendering(svc.name, st)
    unit_dir = scope.unit_dir(rendering)
    own_file, other_file = (
        (quadlet_file, plain_file) if rendering == "quadlet" else (plain_file, quadlet_file)
    )
    commands: list = []

    def add(sub):
        new, value = _collect(sub)
        commands.extend(new)
        return value

    add(_ensure_dirs(svc, scope, root, service_dir, st))
    add(_ensure_unit_dir(scope, unit_dir, st))

    secrets_file = f"{service_dir}/{SECRETS_FILE}"
    if svc.secrets or given:
        content = render_secrets(svc, {**resolve_secrets(svc), **given})
        secrets_changed = add(_put_secret(content, secrets_file, scope, st))
    else:
        removed, _ = _collect(_remove_file(secrets_file, st))
        commands.extend(removed)
        secrets_changed = bool(removed)

    files_changed = add(_files(svc, scope, service_dir, file_states(svc, service_dir, st), data))

    # The files of this rendering: the networks first, so the container's references resolve.
    wanted = []
    if rendering == "quadlet":
        for net in svc.attachments:
            wanted.append((f"{unit_dir}/{net.name}.network", render_network(net.name)))
    unit = render_unit(
        svc,
        rendering,
        service_dir,
        bool(scope.user),
        env_file=bool(given),
        podman=_version(st.podman_version),
    )
    wanted.append((own_file, unit))
    changed_files = [p for p, text in wanted if st.file(p).sha1 != _sha1(text)]
    backups = []
    if rendering == "quadlet":
        for path in changed_files:
            if st.file(path).kind == "file":
                backups.append(path)
                commands.append(StringCommand("cp", "-p", path, path + BACKUP_SUFFIX))
    for path, text in wanted:
        add(_put(text, path, scope, "0644", st))
    if rendering == "quadlet" and changed_files:
        units = [f"{n.name}-network.service" for n in svc.attachments] + [unit_name]
        commands.append(_validate_quadlet(quadlet, scope, units, changed_files, backups))

    # A unit of the other rendering (podman was upgraded) would shadow or duplicate ours.
    other_removed = False
    if st.file(other_file).kind != "absent":
        if other_file.endswith(".service") and state.unit_file_state == "enabled":
            commands.append(scope.systemctl("disable", unit_name))
        commands.extend(_collect(_remove_file(other_file, st))[0])
        other_removed = True

    unit_changed = bool(changed_files) or other_removed
    if rendering == "quadlet" and any(t.present for t in svc.timers):
        add(_ensure_unit_dir(scope, scope.unit_dir("plain"), st))  # timers are plain units
    timers_changed, enable_timers = add(_timers(svc, scope, st))
    if unit_changed or timers_changed:
        commands.append(scope.systemctl("daemon-reload"))
    if rendering == "plain" and (state.unit_file_state != "enabled" or other_removed):
        commands.append(scope.systemctl("enable", unit_name))
    running = state.active_state in RUNNING
    # A changed file restarts the service unless it declares a reload and nothing else changed.
    reload = svc.reload is not None and files_changed and not (unit_changed or secrets_changed)
    restart = running and (unit_changed or secrets_changed or (files_changed and not reload))
    record = None
    if restart or not running:
        # First of all: a failed pull leaves the running container and its unit as they are.
        commands[0:0] = timed(f"pull {svc.image}", pull_command(svc, scope))
        commands.append(scope.start("restart" if restart else "start", svc.name))
        record = record_command(svc, scope, service_dir)
    else:
        if reload:
            commands.append(scope.start("reload", svc.name))
        if svc.pull == PullPolicy.always:
            commands[0:0] = timed(f"pull {svc.image}", pull_command(svc, scope))
            commands.append(_moved_restart(svc, scope))
            record = record_command(svc, scope, service_dir)
        else:
            container = st.container(svc.name, svc.user)
            recorded = recorded_images(st.records.get(f"{service_dir}/{IMAGE_RECORD}"))
            if container and recorded.get("current") != container.image_id:
                record = record_command(svc, scope, service_dir)
    if record is not None:
        commands.append(record)
    commands += enable_timers
    rootless = f", rootless as {svc.user}" if svc.user else ""
    noop = f"service {svc.name} is up to date ({rendering} unit, running{rootless})"
    yield from _finish(commands, noop)


def _finish(commands: list, noop: str):
    """Yield the commands, or say why there are none (then the state read for this
    operation stays valid for the next: ``keep_shared_facts``)."""
    if commands:
        yield from commands
    else:
        keep_shared_facts()
        host.noop(noop)


def _remove(
    svc: Service,
    scope: _Scope,
    state,
    service_dir: str,
    unit_files: list[str],
    networks: list[str],
    st: ServicesStateValue,
):
    # Its timers first (the spec lists them): a job must not start on a service going away.
    commands, (timers_changed, _) = _collect(_timers(svc, scope, st))
    if state.active_state in RUNNING:
        commands.append(scope.systemctl("stop", f"{svc.name}.service"))
    if state.unit_file_state == "enabled":
        commands.append(scope.systemctl("disable", f"{svc.name}.service"))
    for network in networks:
        network_file = f"{scope.unit_dir('quadlet')}/{network}.network"
        if st.file(network_file).kind != "absent":
            # The network's generated oneshot unit stays active until stopped.
            unit = f"{network}-network.service"
            stop = scope.systemctl("stop", unit)
            commands.append(StringCommand(stop, "2>/dev/null", "||", "true"))
            unit_files = [*unit_files, network_file]
    removed_units = []
    for path in unit_files:
        removed_units += _collect(_remove_file(path, st))[0]
    commands += removed_units
    if removed_units or timers_changed:
        commands.append(scope.systemctl("daemon-reload"))
    existing = host.get_fact(PodmanNetworks, user=svc.user) if networks else []
    for network in networks:
        if network in existing:
            remove = f"podman network rm {shlex.quote(network)}"
            commands.append(StringCommand(scope.as_user(remove)))
    if state.load_state != "not-found" or state.active_state == "failed":
        # A container stopped by SIGKILL leaves its unit "failed", listed after its file is
        # gone; nothing to reset is fine.
        reset = scope.systemctl("reset-failed", f"{svc.name}.service")
        commands.append(StringCommand(reset, "2>/dev/null", "||", "true"))
    if svc.remove_data:
        if st.dir(service_dir).kind == "dir":
            commands.append(StringCommand("rm", "-rf", QuoteString(service_dir)))
        named = [v.volume for v in svc.volumes if v.volume is not None]
        if named:
            existing = set(host.get_fact(PodmanVolumes, user=svc.user))
            for volume in named:
                if volume in existing:
                    commands.append(
                        StringCommand(scope.as_user(f"podman volume rm {shlex.quote(volume)}"))
                    )
    else:
        # The data stays; what holds secrets goes: the secrets file, files whose template
        # reads secrets.
        private = [SECRETS_FILE] + [f.path for f in svc.files if f.secrets]
        for path in private:
            commands += _collect(_remove_file(f"{service_dir}/{path}", st))[0]
    kept = "" if svc.remove_data else f" ({service_dir} kept: remove_data is false)"
    yield from _finish(commands, f"service {svc.name} is absent{kept}")


@operation()
def prune_images(declared: list[Service | dict | str], root: str = "/srv/containers/apps"):
    """
    Remove the images that no declared service needs, from root's store and from each
    service user's: every image no container uses (running or not), that no present service
    of that store names, and that is neither the current nor the previous image of a
    service's image record (kept for a rollback). Run after the services converged.

    + declared: every service the host declares (the same list ``service`` got)
    + root: the service root (where the image records are)

    Destructive by design (hence off unless ``podman_prune_images``): an image pulled by hand
    and not in use goes too. Untags by name (never ``--force``: no container is touched).
    Idempotent: nothing to remove, no command.
    """
    declared = [_spec(svc) for svc in declared]
    st = gathered_state(declared, root)
    commands = []
    for user in sorted({svc.user or "" for svc in declared}):
        mine = [svc for svc in declared if (svc.user or "") == user]
        scope = st.scope(user or None)
        keep = {c.image_id for c in scope.containers.values()}
        for svc in mine:
            recorded = recorded_images(st.records.get(f"{root}/{svc.name}/{IMAGE_RECORD}"))
            keep |= set(recorded.values())
        wanted = {svc.image for svc in mine if svc.present and svc.image}
        doomed = []
        for image in scope.images:
            named = wanted & set(image.names)
            pinned = any(ref.partition("@")[2] == image.digest for ref in wanted if "@" in ref)
            if image.id in keep or named or pinned:
                continue
            doomed += sorted(image.names) or [image.id]
        if doomed:
            rmi = shlex.join(["podman", "rmi", "--", *doomed])
            commands.append(StringCommand(_Scope(user or None, "", "", "").as_user(rmi)))
    yield from _finish(commands, "no image to prune: each is in use, declared or recorded")
