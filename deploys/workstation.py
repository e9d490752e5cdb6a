"""The Linux workstation pattern (standard §3.2): Podman for dev/test containers, compose
projects brought up with podman-compose and started at boot (§7.2), Podman Desktop opt-in."""

from pyinfra.api import deploy

from deploys.compose import compose
from deploys.desktop import podman_desktop
from deploys.nvidia import nvidia
from deploys.podman_standard import podman_standard
from model import HostData, current_host_data


@deploy("Linux workstation")
def workstation(cfg: HostData):
    podman_standard(cfg)
    nvidia(cfg)
    compose(cfg)
    podman_desktop(cfg)  # opt-in (podman_desktop.enabled): the Flatpak


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    workstation(current_host_data())
