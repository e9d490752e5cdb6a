"""Linux workstations (standard §3.2): Podman for dev/test containers."""

podman_host_class = "workstation"
