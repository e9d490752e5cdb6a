"""Podman Desktop, opt-in (``podman_desktop.enabled``, off by default): on a Linux workstation
the Flatpak ``io.podman_desktop.PodmanDesktop``; on macOS Homebrew's ``podman`` and cask
``podman-desktop``; on Windows winget's ``RedHat.Podman`` and ``RedHat.Podman-Desktop``; on
both a running podman machine for the login user. Off, it runs nothing at all (no fact either).

Run alone: ``pyinfra INVENTORY deploys/desktop.py``.
"""

from pyinfra.api import deploy
from pyinfra.operations import brew, flatpak

from model import HostData, current_host_data
from model.host_data import HostClass
from operations import desktop, packages


@deploy("Podman Desktop")
def podman_desktop(cfg: HostData):
    wanted = cfg.desktop
    if not wanted.enabled:
        return
    if cfg.host_class is HostClass.workstation:
        packages.install(name="Install Flatpak", packages=["flatpak"], include_podman=False)
        desktop.flatpak_remote(
            name=f"Flatpak remote {wanted.flatpak_remote}",
            remote=wanted.flatpak_remote,
            url=wanted.flatpak_remote_url,
        )
        flatpak.packages(
            name="Install Podman Desktop (Flatpak)",
            packages=[desktop.FLATPAK_APP],
            remote=wanted.flatpak_remote,
        )
        return
    if cfg.desktop_platform == "macos":
        brew.packages(name="Install podman (Homebrew)", packages=[desktop.BREW_FORMULA])
        brew.casks(name="Install Podman Desktop (Homebrew cask)", casks=[desktop.BREW_CASK])
    else:
        desktop.winget_package(name="Install podman (winget)", package_id=desktop.WINGET_PODMAN)
        desktop.winget_package(
            name="Install Podman Desktop (winget)", package_id=desktop.WINGET_DESKTOP
        )
    if wanted.machine:
        desktop.machine(name="Podman machine of the login user")


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    podman_desktop(current_host_data())
