"""The Podman API socket (standard §5.1 responsibility 5, §9.1 "Docker socket")."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from facts.services import SystemdUnit

UNIT = "podman.socket"
# UnitFileState values under which systemd starts the unit at boot.
_ENABLED = ("enabled", "enabled-runtime")


@operation()
def podman_socket(enabled: bool = True):
    """
    Enable and start (or stop and disable) rootful ``podman.socket``, the Docker-compatible
    API at /run/podman/podman.sock. Idempotent: reads the unit's state first, in one command
    (``systemctl show``), and only starts, stops, enables or disables what differs.
    """
    unit = host.get_fact(SystemdUnit, unit=UNIT)
    active = unit.active_state in ("active", "activating", "reloading")
    on_at_boot = unit.unit_file_state in _ENABLED
    if enabled:
        commands = [("start", not active), ("enable", not on_at_boot)]
    else:
        commands = [("stop", active), ("disable", on_at_boot)]
    wanted = [verb for verb, needed in commands if needed]
    if not wanted:
        host.noop(f"{UNIT} is {'enabled and active' if enabled else 'disabled and stopped'}")
        return
    for verb in wanted:
        yield StringCommand("systemctl", verb, UNIT)
