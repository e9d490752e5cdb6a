"""The Podman API socket (standard §5.1 responsibility 5, §9.1 "Docker socket"): root's, and a
rootless user's own with DOCKER_HOST for that user's sessions (§2.3: tools that expect Docker)."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.facts.files import Directory, File

from facts.rootless import UserAccount
from facts.services import SystemdUnit
from operations._common import header, put_files

SOURCE = "operations/api_socket.py"

UNIT = "podman.socket"
# The API service the socket starts. Debian's package enables it (WantedBy=default.target) and
# it Requires= the socket: left enabled, it starts the socket again at every boot.
SERVICE = "podman.service"
# UnitFileState values under which systemd starts the unit at boot.
_ENABLED = ("enabled", "enabled-runtime")


@operation()
def podman_socket(enabled: bool = True):
    """
    Enable and start (or stop and disable) rootful ``podman.socket``, the Docker-compatible
    API at /run/podman/podman.sock. Disabling also disables and stops ``podman.service``, which
    would start the socket again at boot. Idempotent: reads the units' state first
    (``systemctl show``), and only starts, stops, enables or disables what differs.
    """
    unit = host.get_fact(SystemdUnit, unit=UNIT)
    if enabled:
        wanted = _verbs(unit, start=True)
        if not wanted:
            host.noop(f"{UNIT} is enabled and active")
            return
        for verb in wanted:
            yield StringCommand("systemctl", verb, UNIT)
        return
    service = host.get_fact(SystemdUnit, unit=SERVICE)
    commands = [(verb, SERVICE) for verb in _verbs(service, start=False)]
    commands += [(verb, UNIT) for verb in _verbs(unit, start=False)]
    if not commands:
        host.noop(f"{UNIT} is disabled and stopped ({SERVICE} too)")
        return
    for verb, name in commands:
        yield StringCommand("systemctl", verb, name)


def _verbs(unit, start: bool) -> list[str]:
    """What makes ``unit`` active and enabled (``start``) or stopped and disabled."""
    active = unit.active_state in ("active", "activating", "reloading")
    on_at_boot = unit.unit_file_state in _ENABLED
    if start:
        return [
            verb for verb, needed in (("start", not active), ("enable", not on_at_boot)) if needed
        ]
    return [verb for verb, needed in (("stop", active), ("disable", on_at_boot)) if needed]


# Where a rootless user's podman.socket listens (podman-system-service(1): $XDG_RUNTIME_DIR/
# podman/podman.sock; the user manager's XDG_RUNTIME_DIR is /run/user/UID).
def user_socket_path(uid: int | str) -> str:
    return f"/run/user/{uid}/podman/podman.sock"


# DOCKER_HOST for the user's sessions, in the two places sessions read it from:
# environment.d(5) for the user's systemd manager and what it starts (graphical sessions
# import it: GNOME, KDE), profile.d for login shells (SSH, consoles), which never read it.
ENVIRONMENT_D = ".config/environment.d/50-podman-docker-host.conf"
PROFILE_D = "/etc/profile.d/podman-docker-host-{user}.sh"


@operation()
def user_socket(user: str, enabled: bool = True):
    """
    A rootless user's Docker-compatible API: the user's own ``podman.socket`` (a user unit,
    enabled and started in the user's manager, which runs while the user lingers) and
    ``DOCKER_HOST=unix:///run/user/UID/podman/podman.sock`` for the user's sessions
    (``~/.config/environment.d/50-podman-docker-host.conf`` and
    ``/etc/profile.d/podman-docker-host-USER.sh``; a DOCKER_HOST set otherwise wins in a
    login shell). ``enabled=False`` stops and disables the socket and removes both files.
    Idempotent: only what differs is changed.
    """
    entry = host.get_fact(UserAccount, user=user)
    if not entry:
        raise OperationError(f"docker_api of {user}: the user does not exist on this host")
    uid, group, home = entry["uid"], entry["group"], entry["home"]
    scope = ["--user", f"--machine={user}@.host"]
    unit = host.get_fact(SystemdUnit, unit=UNIT, user=user)
    env_file = f"{home}/{ENVIRONMENT_D}"
    profile = PROFILE_D.format(user=user)
    commands: list = []
    if enabled:
        socket = user_socket_path(uid)
        env_text = header(SOURCE) + f"DOCKER_HOST=unix://{socket}\n"
        profile_text = header(SOURCE) + (
            f"# {user}'s own podman API (the user's podman.socket), for Docker clients.\n"
            f'if [ "$(id -u)" = {int(uid)} ] && [ -z "${{DOCKER_HOST-}}" ]; then\n'
            f"    export DOCKER_HOST=unix://{socket}\n"
            "fi\n"
        )
        for path in (f"{home}/.config", f"{home}/.config/environment.d"):
            if not host.get_fact(Directory, path=path):
                commands.append(StringCommand("install", "-d", "-o", user, "-g", group, path))
        commands += put_files(
            [
                (StringIO(env_text), env_file, user, group, "0644"),
                (StringIO(profile_text), profile, "root", "root", "0644"),
            ]
        )
        if unit.unit_file_state not in _ENABLED or unit.active_state != "active":
            commands.append(StringCommand("systemctl", *scope, "enable", "--now", UNIT))
    else:
        if unit.unit_file_state in _ENABLED or unit.active_state in ("active", "activating"):
            commands.append(StringCommand("systemctl", *scope, "disable", "--now", UNIT))
        for path in (env_file, profile):
            if host.get_fact(File, path=path):
                commands.append(StringCommand("rm", "-f", path))
    if not commands:
        state = "enabled, DOCKER_HOST set" if enabled else "disabled"
        host.noop(f"podman.socket of {user} is {state}")
        return
    yield from commands
