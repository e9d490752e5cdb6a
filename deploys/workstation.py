"""The Linux workstation pattern (standard §3.2): Podman for dev/test containers, compose
projects brought up with podman-compose (§7.2)."""

from pyinfra.api import deploy

from deploys.compose import compose
from deploys.nvidia import nvidia
from deploys.podman_standard import podman_standard
from model import HostData, current_host_data


@deploy("Linux workstation")
def workstation(cfg: HostData):
    podman_standard(cfg)
    nvidia(cfg)
    compose(cfg)


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    workstation(current_host_data())
