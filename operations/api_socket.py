"""The Podman API socket (standard §5.1 responsibility 5, §9.1 "Docker socket")."""

from __future__ import annotations

from pyinfra.api import operation
from pyinfra.operations import systemd


@operation()
def podman_socket(enabled: bool = True):
    """
    Enable and start (or stop and disable) rootful ``podman.socket``, the Docker-compatible
    API at /run/podman/podman.sock. Idempotent: reads systemd's unit state first.
    """
    yield from systemd.service._inner(service="podman.socket", running=enabled, enabled=enabled)
