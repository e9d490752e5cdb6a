"""Podman Desktop, an opt-in (standard §3.2 "optional", §4): Flatpak on Linux workstations,
Homebrew on macOS, winget on Windows, and a podman machine for the login user where
containers need a VM (macOS, Windows: WSL2)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from facts.desktop import FlatpakRemotes, PodmanMachines, WingetPackage

FLATPAK_APP = "io.podman_desktop.PodmanDesktop"
BREW_FORMULA = "podman"
BREW_CASK = "podman-desktop"
WINGET_PODMAN = "RedHat.Podman"
WINGET_DESKTOP = "RedHat.Podman-Desktop"


@operation()
def flatpak_remote(remote: str, url: str):
    """
    Add Flatpak remote ``remote`` (from the ``.flatpakrepo`` file at ``url``) to the system
    installation unless a remote of that name exists (its URL is then left as it is).
    """
    if remote in host.get_fact(FlatpakRemotes):
        host.noop(f"flatpak remote {remote} exists")
        return
    yield StringCommand("flatpak", "remote-add", "--system", "--if-not-exists", remote, url)


@operation()
def winget_package(package_id: str):
    """
    Install ``package_id`` with winget (exact id, silent, agreements accepted) unless winget
    lists it as installed. Reached through the host's POSIX shell over SSH.
    """
    if host.get_fact(WingetPackage, package_id=package_id):
        host.noop(f"winget package {package_id} is installed")
        return
    yield StringCommand(
        "winget",
        "install",
        "--id",
        package_id,
        "--exact",
        "--silent",
        "--accept-package-agreements",
        "--accept-source-agreements",
        "--disable-interactivity",
    )


@operation()
def machine():
    """
    The login user's podman machine, running: ``podman machine init`` when the user has none
    (podman's default provider: applehv/libkrun on macOS, WSL2 on Windows), then ``podman
    machine start`` of the first one unless one runs or is starting.
    """
    machines = host.get_fact(PodmanMachines)
    if any(m.running or m.starting for m in machines):
        host.noop(
            f"podman machine {next(m.name for m in machines if m.running or m.starting)} runs"
        )
        return
    if not machines:
        yield StringCommand("podman", "machine", "init")
        yield StringCommand("podman", "machine", "start")
        return
    yield StringCommand("podman", "machine", "start", machines[0].name)
