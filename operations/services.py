"""Production services as systemd-managed Podman containers (standard §3.1, §5.2, §7.2).

One model (``model.host_data.Service``), two renderings chosen by the facts: a quadlet
``.container`` (and ``.network``) where podman has its quadlet generator (>= 4.4), a plain
systemd unit running ``podman run`` where it has not (Debian 12's podman 4.3).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import PurePosixPath

from pydantic import TypeAdapter, ValidationError
from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, StringCommand, operation
from pyinfra.facts.files import Directory, File, Sha1File
from pyinfra.facts.server import Users
from pyinfra.operations import files
from pyinfra.operations.util import files as file_utils

from facts.podman import PodmanInfo
from facts.services import PodmanNetworks, PodmanVolumes, Quadlet, SystemdUnit
from model.host_data import SECRETS_FILE, EnvName, Service, ServiceRoot, UnitText
from operations._common import header, render_template, validation_problems

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
    users = host.get_fact(Users)
    if user not in users:
        raise OperationError(f"service {name}: rootless user {user} does not exist on this host")
    return _Scope(user, user, users[user]["group"], users[user]["home"])


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


def _rendering(name: str, info) -> tuple[str, str | None]:
    """('quadlet', path of the generator) or ('plain', None), from the host's podman."""
    if not info:
        raise OperationError(f"service {name}: podman is not installed")
    if info.error:
        raise OperationError(f"service {name}: {info.error}; cannot tell the podman version")
    generator = host.get_fact(Quadlet)
    if generator and _version(info.version) >= QUADLET_SINCE:
        return "quadlet", generator
    return "plain", None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _port(port) -> str:
    ip = ""
    if port.host_ip is not None:
        ip = f"[{port.host_ip}]:" if port.host_ip.version == 6 else f"{port.host_ip}:"
    return f"{ip}{port.host}:{port.container}/{port.protocol}"


def _volume(volume, service_dir: str) -> str:
    if volume.source is not None:
        # Z: a private SELinux label for the service's own directory (ignored without SELinux).
        options = "ro,Z" if volume.read_only else "Z"
        return f"{service_dir}/{volume.source}:{volume.target}:{options}"
    return f"{volume.volume}:{volume.target}" + (":ro" if volume.read_only else "")


def render_unit(
    svc: Service, rendering: str, service_dir: str, rootless: bool, env_file: bool = False
) -> str:
    """The unit file of ``svc`` in ``rendering`` ('quadlet': the ``.container``, 'plain': the
    ``.service``); every value is escaped for systemd's syntax by the templates' filters. The
    secrets file is referenced when ``svc`` has secrets or ``env_file`` says so."""
    template = "service.container.j2" if rendering == "quadlet" else "service.service.j2"
    return render_template(
        template,
        source=SOURCE,
        name=svc.name,
        image=svc.image,
        command=svc.command,
        env=sorted(svc.env.items()),
        env_file=f"{service_dir}/{SECRETS_FILE}" if svc.secrets or env_file else None,
        ports=[_port(p) for p in svc.ports],
        volumes=[_volume(v, service_dir) for v in svc.volumes],
        devices=svc.devices,
        restart=svc.restart.value,
        requires=svc.requires,
        network=svc.network,
        health_cmd=svc.healthcheck.command if svc.healthcheck else None,
        health_interval=svc.healthcheck.interval if svc.healthcheck else None,
        user_mode=rootless,
        wanted_by="default.target" if rootless else "multi-user.target",
    ).getvalue()


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


def _put(content: str, dest: str, scope: _Scope, mode: str):
    """Upload ``content`` when it differs. Yields the commands; returns whether the content
    changed (a metadata fix alone is no change)."""
    changed = host.get_fact(Sha1File, path=dest) != _sha1(content)
    yield from files.put._inner(
        src=StringIO(content),
        dest=dest,
        user=scope.owner,
        group=scope.group,
        mode=mode,
        create_remote_dir=False,  # made by _ensure_unit_dir
    )
    return changed


def _put_secret(content: str, dest: str, scope: _Scope):
    """Write the secrets file 0600 from its creation on, never printing it (files.put would
    show it with --diff). Returns whether the content changed."""
    current = host.get_fact(File, path=dest)
    changed = host.get_fact(Sha1File, path=dest) != _sha1(content)
    if changed:
        if not current:
            # `cp` onto an existing file keeps its mode: the upload never widens it.
            yield StringCommand(
                "install", "-m", "600", "-o", scope.owner, "-g", scope.group, "/dev/null", dest
            )
        temp_dir = (host.current_op_global_arguments or {}).get("_temp_dir")
        yield FileUploadCommand(
            StringIO(content),
            dest,
            remote_temp_filename=host.get_temp_filename(dest, temp_directory=temp_dir),
        )
    if changed or not current or (current["user"], current["group"]) != (scope.owner, scope.group):
        yield file_utils.chown(dest, scope.owner, scope.group)
    if changed or not current or current["mode"] != 600:
        yield file_utils.chmod(dest, 600)
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


def _ensure_dirs(svc: Service, scope: _Scope, root: str, service_dir: str):
    yield from files.directory._inner(path=root, user="root", group="root", mode="0755")
    yield from files.directory._inner(
        path=service_dir, user=scope.owner, group=scope.group, mode="0750"
    )
    # Bind-mount sources are created once; afterwards they belong to the container (an
    # image such as postgres chowns its data directory to its own uid on first start).
    made = set()
    for volume in svc.volumes:
        if volume.source is None:
            continue
        parts = PurePosixPath(volume.source).parts
        for depth in range(1, len(parts) + 1):
            path = f"{service_dir}/{'/'.join(parts[:depth])}"
            if path in made or host.get_fact(Directory, path=path):
                continue
            made.add(path)
            yield from files.directory._inner(
                path=path, user=scope.owner, group=scope.group, mode="0750"
            )


def _ensure_unit_dir(scope: _Scope, unit_dir: str):
    """The directory the unit goes in; for a rootless user each level under the home is the
    user's own (``mkdir -p`` as root would leave ~/.config root-owned)."""
    if not scope.user:
        yield from files.directory._inner(path=unit_dir, user="root", group="root")
        return
    relative = PurePosixPath(unit_dir).relative_to(scope.home)
    for depth in range(1, len(relative.parts) + 1):
        path = f"{scope.home}/{'/'.join(relative.parts[:depth])}"
        yield from files.directory._inner(path=path, user=scope.owner, group=scope.group)


@operation()
def service(
    service: str,
    image: str = "",
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    secrets: dict[str, dict] | None = None,
    ports: list[dict] | None = None,
    volumes: list[dict] | None = None,
    devices: list[str] | None = None,
    restart: str = "always",
    requires: list[str] | None = None,
    network: str | None = None,
    healthcheck: dict | None = None,
    user: str | None = None,
    present: bool = True,
    remove_data: bool = False,
    remove_network: bool = False,
    root: str = "/srv/containers/apps",
    secret_values: dict[str, str] | None = None,
):
    """
    Run a container as a systemd service, or remove it.

    + service: the service's name: its unit, container and directory name
    + image: fully qualified image with a tag or digest (docker.io/library/redis:7.4.1);
      not needed with present=False
    + command: arguments after the image
    + env: environment variables, written into the unit
    + secrets: ``{VAR: {"env": "CONTROLLER_VAR"} | {"file": "/path/on/controller"}}``, read on
      the controller at deploy time, written to ``<root>/<service>/secrets.env`` (0600)
    + ports: ``[{"host", "container", "protocol": tcp|udp, "host_ip"}]``
    + volumes: ``[{"source": "data", "target": "/data", "read_only"}]`` (a directory under
      ``<root>/<service>/``) or ``[{"volume": "pgdata", "target": ...}]`` (a named volume)
    + devices: device nodes or CDI names (``nvidia.com/gpu=all``)
    + restart: always, on-failure or no
    + requires: services started before this one (and stopped with it)
    + network: a podman network shared by the services that name it
    + healthcheck: ``{"command", "interval": "30s"}``
    + user: a rootless user whose systemd runs the service (it must linger)
    + present: False stops, disables and removes the unit and the secrets file
    + remove_data: with present=False, also delete ``<root>/<service>/`` and the named volumes
    + remove_network: with present=False, also remove ``network`` (its quadlet file and the
      podman network): for the last service that used it (deploys/services.py decides)
    + root: the service root (``podman_service_root``)
    + secret_values: ``{VAR: value}`` the caller holds already (the migration: a Docker
      container's environment), written into the same 0600 secrets file as ``secrets``

    Quadlet (podman >= 4.4 with its generator): ``<service>.container`` (+ ``<network>.network``)
    in /etc/containers/systemd (rootless: ~/.config/containers/systemd), checked with the
    generator's dry-run before daemon-reload (a rejected file is put back as it was). Older
    podman: ``<service>.service`` in /etc/systemd/system (~/.config/systemd/user), enabled.
    Starts the service when it is not running, restarts it only when its unit or secrets
    changed. Idempotent: no change, no command. Destructive only with remove_data.
    """
    try:
        svc = Service.model_validate(
            {
                "name": service,
                "image": image,
                "command": list(command or []),
                "env": dict(env or {}),
                "secrets": dict(secrets or {}),
                "ports": list(ports or []),
                "volumes": list(volumes or []),
                "devices": list(devices or []),
                "restart": restart,
                "requires": list(requires or []),
                "network": network,
                "healthcheck": healthcheck,
                "user": user,
                "present": present,
                "remove_data": remove_data,
            }
        )
        root = TypeAdapter(ServiceRoot).validate_python(root)
        given = TypeAdapter(dict[EnvName, UnitText]).validate_python(dict(secret_values or {}))
    except ValidationError as error:
        raise OperationError(f"service {service}: {validation_problems(error)}") from None

    clash = sorted(set(given) & (set(svc.env) | set(svc.secrets)))
    if clash:
        raise OperationError(f"service {svc.name}: {', '.join(clash)} given twice")
    scope = _scope(svc.name, svc.user)
    service_dir = f"{root}/{svc.name}"
    unit_name = f"{svc.name}.service"
    # pyinfra also runs operations while planning, before earlier ones (installing podman,
    # enabling linger) have run: what they will provide is only required when this one runs.
    executing = host.state.is_executing
    state = host.get_fact(SystemdUnit, unit=unit_name, user=svc.user)
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
        network = svc.network if remove_network else None
        yield from _remove(svc, scope, state, service_dir, [quadlet_file, plain_file], network)
        return

    info = host.get_fact(PodmanInfo)
    if (not info or info.error) and not executing:
        # Planned before podman is installed: the service will be set up; its rendering is
        # chosen when the operation runs.
        yield from _collect(_ensure_dirs(svc, scope, root, service_dir))[0]
        return
    rendering, quadlet = _rendering(svc.name, info)
    unit_dir = scope.unit_dir(rendering)
    own_file, other_file = (
        (quadlet_file, plain_file) if rendering == "quadlet" else (plain_file, quadlet_file)
    )
    commands: list = []

    def add(sub):
        new, value = _collect(sub)
        commands.extend(new)
        return value

    add(_ensure_dirs(svc, scope, root, service_dir))
    add(_ensure_unit_dir(scope, unit_dir))

    secrets_file = f"{service_dir}/{SECRETS_FILE}"
    if svc.secrets or given:
        content = render_secrets(svc, {**resolve_secrets(svc), **given})
        secrets_changed = add(_put_secret(content, secrets_file, scope))
    else:
        removed, _ = _collect(files.file._inner(path=secrets_file, present=False))
        commands.extend(removed)
        secrets_changed = bool(removed)

    # The files of this rendering: the network first, so the container's reference resolves.
    wanted = []
    if rendering == "quadlet" and svc.network:
        wanted.append((f"{unit_dir}/{svc.network}.network", render_network(svc.network)))
    unit = render_unit(svc, rendering, service_dir, bool(scope.user), env_file=bool(given))
    wanted.append((own_file, unit))
    changed_files = [p for p, text in wanted if host.get_fact(Sha1File, path=p) != _sha1(text)]
    backups = []
    if rendering == "quadlet":
        for path in changed_files:
            if host.get_fact(File, path=path):
                backups.append(path)
                commands.append(StringCommand("cp", "-p", path, path + BACKUP_SUFFIX))
    for path, text in wanted:
        add(_put(text, path, scope, "0644"))
    if rendering == "quadlet" and changed_files:
        units = ([f"{svc.network}-network.service"] if svc.network else []) + [unit_name]
        commands.append(_validate_quadlet(quadlet, scope, units, changed_files, backups))

    # A unit of the other rendering (podman was upgraded) would shadow or duplicate ours.
    other_removed = False
    if host.get_fact(File, path=other_file):
        if other_file.endswith(".service") and state.unit_file_state == "enabled":
            commands.append(scope.systemctl("disable", unit_name))
        commands.extend(_collect(files.file._inner(path=other_file, present=False))[0])
        other_removed = True

    unit_changed = bool(changed_files) or other_removed
    if unit_changed:
        commands.append(scope.systemctl("daemon-reload"))
    if rendering == "plain" and (state.unit_file_state != "enabled" or other_removed):
        commands.append(scope.systemctl("enable", unit_name))
    if state.active_state in RUNNING and (unit_changed or secrets_changed):
        commands.append(scope.systemctl("restart", unit_name))
    elif state.active_state not in RUNNING:
        commands.append(scope.systemctl("start", unit_name))

    if commands:
        yield from commands
    else:
        host.noop(
            f"service {svc.name} is up to date ({rendering} unit, running"
            f"{', rootless as ' + svc.user if svc.user else ''})"
        )


def _remove(
    svc: Service,
    scope: _Scope,
    state,
    service_dir: str,
    unit_files: list[str],
    network: str | None = None,
):
    commands: list = []
    if state.active_state in RUNNING:
        commands.append(scope.systemctl("stop", f"{svc.name}.service"))
    if state.unit_file_state == "enabled":
        commands.append(scope.systemctl("disable", f"{svc.name}.service"))
    network_file = f"{scope.unit_dir('quadlet')}/{network}.network" if network else None
    if network_file and host.get_fact(File, path=network_file):
        # The network's generated oneshot unit stays active until stopped.
        unit = f"{network}-network.service"
        commands.append(StringCommand(scope.systemctl("stop", unit), "2>/dev/null", "||", "true"))
        unit_files = [*unit_files, network_file]
    removed_units = []
    for path in unit_files:
        removed_units += _collect(files.file._inner(path=path, present=False))[0]
    commands += removed_units
    if removed_units:
        commands.append(scope.systemctl("daemon-reload"))
    if network and network in host.get_fact(PodmanNetworks, user=svc.user):
        commands.append(StringCommand(scope.as_user(f"podman network rm {shlex.quote(network)}")))
    if state.load_state != "not-found" or state.active_state == "failed":
        # A container stopped by SIGKILL leaves its unit "failed", listed after its file is
        # gone; nothing to reset is fine.
        reset = scope.systemctl("reset-failed", f"{svc.name}.service")
        commands.append(StringCommand(reset, "2>/dev/null", "||", "true"))
    if svc.remove_data:
        commands += _collect(files.directory._inner(path=service_dir, present=False))[0]
        named = [v.volume for v in svc.volumes if v.volume is not None]
        if named:
            existing = set(host.get_fact(PodmanVolumes, user=svc.user))
            for volume in named:
                if volume in existing:
                    commands.append(
                        StringCommand(scope.as_user(f"podman volume rm {shlex.quote(volume)}"))
                    )
    else:
        commands += _collect(
            files.file._inner(path=f"{service_dir}/{SECRETS_FILE}", present=False)
        )[0]

    if commands:
        yield from commands
    else:
        kept = "" if svc.remove_data else f" ({service_dir} kept: remove_data is false)"
        host.noop(f"service {svc.name} is absent{kept}")
