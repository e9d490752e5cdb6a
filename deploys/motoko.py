"""The server pattern (standard §3.1, §5.2), as motoko runs it: storage device, Podman
standard, NVIDIA, then the production services. Every ``linux_servers`` host gets it;
motoko's specifics (and its services) are data (``group_data/motoko.py``)."""

from pyinfra.api import deploy

from deploys.container_storage import container_storage
from deploys.nvidia import nvidia
from deploys.podman_standard import podman_standard
from deploys.services import services
from model import HostData, current_host_data


@deploy("Linux server (motoko pattern)")
def motoko(cfg: HostData):
    container_storage(cfg)  # the mount must exist before podman's store points into it
    podman_standard(cfg)
    nvidia(cfg)
    services(cfg)  # after NVIDIA: a GPU service needs the CDI spec


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    motoko(current_host_data())
