"""Windows hosts (standard §4, §8.3): Docker Desktop stays; only verified, never changed
(unless podman_desktop.enabled: winget through the host's POSIX shell over SSH, no sudo)."""

podman_host_class = "desktop"
podman_desktop_platform = "windows"
_sudo = False  # no sudo on Windows: winget runs as the SSH user
