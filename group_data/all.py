"""Defaults for every host (standard §2, §5.1). Data only: every public name is host data."""

podman_registries = {
    "search": ["docker.io", "quay.io", "ghcr.io"],
    "short_name_mode": "enforcing",
    "registries": [
        {"prefix": "docker.io", "location": "docker.io"},
        {"prefix": "quay.io", "location": "quay.io"},
        {"prefix": "ghcr.io", "location": "ghcr.io"},
    ],
}
podman_graphroot = "/var/lib/containers/storage"
podman_runroot = "/run/containers/storage"
podman_docker_compat = "auto"
podman_nvidia_enabled = "auto"

# Connect as an ordinary user and escalate per command.
_sudo = True
