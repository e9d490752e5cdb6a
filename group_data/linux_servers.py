"""Linux servers (standard §3.1): headless, services as systemd units, API socket on."""

podman_host_class = "server"
podman_socket_enabled = True
