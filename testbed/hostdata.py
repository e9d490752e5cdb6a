"""The host data each testbed guest gets, per role: the deploys' settings that make sense on a
qemu guest (the local registry as the docker.io mirror, the blank second disk as /space)."""

from __future__ import annotations

ROLES = ("server", "workstation")


def testbed_host_data(role: str, registry: str) -> dict:
    """Data for a guest of ``role`` whose registry mirror is at ``registry`` (host:port as the
    guest sees it). Servers also get the second virtual disk as container storage and the API
    socket, as motoko does."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    data = {
        "podman_registries": {
            "search": ["docker.io", "quay.io", "ghcr.io"],
            "short_name_mode": "enforcing",
            "registries": [
                {
                    "prefix": "docker.io",
                    "location": "docker.io",
                    "mirrors": [{"location": registry, "insecure": True}],
                }
            ],
        },
        "podman_nvidia_enabled": "auto",
        "podman_rootless_users": [{"name": "vagrant"}],
        "_sudo": True,
    }
    if role == "server":
        data["podman_storage_device"] = {
            "device": "/dev/vdb",
            "mount_point": "/space",
            "fstype": "ext4",
            "format_if_blank": True,
        }
        data["podman_socket_enabled"] = True
        # The server is in the motoko group: without this it would get motoko's services
        # (public images the local registry lacks, a GPU the guest lacks).
        data["podman_services"] = []
    return data
