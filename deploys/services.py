"""Production services (standard §3.1, §5.2, §7.2): every entry of ``podman_services`` as a
systemd-managed Podman container, each after the services it requires.

Run alone: ``pyinfra INVENTORY deploys/services.py``; skipped unless ``podman_phases``
includes ``services`` (the default includes every phase).
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError

from model import HostData, current_host_data
from model.host_data import Phase, network_removers, order_services
from operations import services as service_ops


def _unreadable_secrets(cfg: HostData) -> list[str]:
    """Secrets the controller cannot provide, checked before any command is sent."""
    problems = []
    for svc in cfg.services:
        for key, src in sorted(svc.secrets.items()) if svc.present else ():
            if src.unavailable():
                problems.append(f"{svc.name}: {key}: {src.unavailable()}")
    return problems


@deploy("Services")
def services(cfg: HostData):
    if Phase.services not in cfg.phases or not cfg.services:
        return
    problems = _unreadable_secrets(cfg)
    if problems:
        listed = "\n".join(f"  - {host.name}: podman_services {p}" for p in problems)
        raise DeployError(
            f"Secrets missing on the controller; stopping before any change:\n{listed}"
        )
    ordered = order_services(cfg.services)
    # Removals first, dependents before what they require; then the rest, requirements first.
    removed = [s for s in reversed(ordered) if not s.present]
    removes_network = network_removers(removed, cfg.services)
    for svc in removed + [s for s in ordered if s.present]:
        service_ops.service(
            name=f"Service {svc.name}" if svc.present else f"Remove service {svc.name}",
            service=svc,
            remove_networks=removes_network.get(svc.name, []),
            root=cfg.service_root,
            data=cfg,
            declared=cfg.services,  # their state in one command, reused while nothing changes
        )
    if cfg.prune_images:
        service_ops.prune_images(
            name="Prune images no service needs",
            declared=cfg.services,
            root=cfg.service_root,
        )


if __name__ == "builtins":  # executed by pyinfra as a deploy file
    services(current_host_data())
