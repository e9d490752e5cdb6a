"""Entry point: ``pyinfra inventories/home.py deploys/linux_baseline.py``.

Validates every host's data first (a bad value stops the run before anything reaches a
host), then dispatches on the class each host's group data declares:
servers (linux_servers) get the motoko pattern, workstations (linux_workstations) the
workstation pattern, Windows/macOS hosts (desktop) nothing at all unless their Podman
Desktop opt-in is on.
"""

from pyinfra import host, logger

from deploys.desktop import podman_desktop
from deploys.motoko import motoko
from deploys.workstation import workstation
from model import current_host_data
from model.host_data import HostClass

cfg = current_host_data()

if cfg.host_class is HostClass.server:
    motoko(cfg)
elif cfg.host_class is HostClass.workstation:
    workstation(cfg)
elif cfg.desktop.enabled:
    podman_desktop(cfg)  # the opt-in: Homebrew (macOS) or winget (Windows), a podman machine
else:
    logger.info(
        f"{host.print_prefix}{cfg.host_class.value} host: left untouched "
        "(Docker Desktop stays, standard §4/§8.3); check it with deploys/verify.py"
    )
