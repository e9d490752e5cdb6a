"""NVIDIA Container Toolkit and CDI where a GPU is present and enabled (§5.1 responsibility 6)."""

from pyinfra.api import deploy

from model import HostData, current_host_data
from model.host_data import Phase
from operations import nvidia_cdi


@deploy("NVIDIA GPUs through CDI")
def nvidia(cfg: HostData):
    if Phase.config not in cfg.phases:
        return
    nvidia_cdi.container_toolkit(
        name="NVIDIA Container Toolkit and CDI spec",
        enabled=cfg.nvidia_enabled,
        spec_path=cfg.nvidia_cdi_spec,
        repository=cfg.nvidia_repository.enabled,
        repository_url=cfg.nvidia_repository.url,
    )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    nvidia(current_host_data())
