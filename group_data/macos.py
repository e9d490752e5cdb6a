"""macOS hosts (standard §4, §8.3): Docker Desktop stays; only verified, never changed
(unless podman_desktop.enabled: Homebrew, as the login user, no sudo)."""

podman_host_class = "desktop"
podman_desktop_platform = "macos"
_sudo = False  # Homebrew refuses to run as root
