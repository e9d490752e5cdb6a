"""A dedicated device for the container store (the seed's ``container_storage_device``, §5.2).

Run alone: ``pyinfra INVENTORY deploys/container_storage.py`` (a no-op for hosts whose
data names no ``podman_storage_device``).
"""

from pyinfra.api import deploy

from model import HostData, current_host_data
from model.host_data import Phase
from operations import storage


@deploy("Container storage device")
def container_storage(cfg: HostData):
    dev = cfg.storage_device
    if dev is None or Phase.storage not in cfg.phases:
        return
    storage.device(
        name=f"Mount {dev.device} at {dev.mount_point}",
        device=dev.device,
        mount_point=dev.mount_point,
        fstype=dev.fstype,
        format_if_blank=dev.format_if_blank,
    )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    container_storage(current_host_data())
