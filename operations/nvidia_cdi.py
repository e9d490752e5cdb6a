"""NVIDIA GPUs in containers through CDI (standard §5.1 responsibility 6, §8.1 GPU line)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.operations import systemd

from facts.gpu import NvidiaGpus, NvidiaPresence
from operations import packages

TOOLKIT_PACKAGE = "nvidia-container-toolkit"
# From toolkit 1.18 on, nvidia-cdi-refresh.path regenerates /var/run/cdi/nvidia.yaml
# whenever the driver changes; a second spec of our own would define every device twice.
REFRESH_UNIT = "nvidia-cdi-refresh.path"
REFRESH_SINCE = (1, 18)


def _version_tuple(text: str | None) -> tuple[int, ...]:
    digits = []
    for part in (text or "").split("."):
        num = "".join(ch for ch in part if ch.isdigit())
        if not num:
            break
        digits.append(int(num))
    return tuple(digits)


@operation()
def container_toolkit(enabled: bool | str = "auto", spec_path: str = "/etc/cdi/nvidia.yaml"):
    """
    Install the NVIDIA Container Toolkit and keep a CDI spec that names every GPU, so
    ``podman run --device nvidia.com/gpu=all`` works.

    + enabled: True (a GPU is required: error without one), False, or "auto" (only
      where an NVIDIA GPU is present)
    + spec_path: where to generate the spec when the toolkit does not refresh it itself

    The toolkit package comes from NVIDIA's repository, which must be configured.
    Idempotent: the spec is regenerated only when missing or when a GPU is not in it.
    """
    if enabled is False or enabled == "false":
        host.noop("NVIDIA support is disabled (podman_nvidia_enabled: false)")
        return
    presence = host.get_fact(NvidiaPresence)
    if not (presence.pci_devices or presence.device_nodes):
        if enabled == "auto":
            host.noop("no NVIDIA GPU on this host (podman_nvidia_enabled: auto)")
            return
        raise OperationError(
            "podman_nvidia_enabled is true but this host has no NVIDIA GPU "
            "(no PCI device of vendor 0x10de, no /dev/nvidia*)"
        )
    if not presence.driver_loaded:
        raise OperationError(
            "an NVIDIA GPU is present but its driver is not loaded "
            "(/proc/driver/nvidia/version missing): install the driver first"
        )

    if presence.ctk_version is None:
        yield from packages.install._inner(packages=[TOOLKIT_PACKAGE], include_podman=False)
        # The installed version is only known once installed: choose at run time, once.
        yield StringCommand(
            "if systemctl cat",
            REFRESH_UNIT,
            ">/dev/null 2>&1; then systemctl enable --now",
            REFRESH_UNIT,
            "; else nvidia-ctk cdi generate",
            QuoteString(f"--output={spec_path}"),
            "&& chmod 0644",
            QuoteString(spec_path),
            "; fi",
        )
        return

    if _version_tuple(presence.ctk_version) >= REFRESH_SINCE:
        yield from systemd.service._inner(service=REFRESH_UNIT, running=True, enabled=True)
        return

    gpus = host.get_fact(NvidiaGpus)
    wanted = {"nvidia.com/gpu=all"} | {f"nvidia.com/gpu={g.uuid}" for g in gpus}
    missing = sorted(wanted - set(presence.cdi_devices))
    if spec_path in presence.cdi_spec_files and not missing:
        host.noop(f"CDI spec {spec_path} names all {len(gpus)} GPUs")
        return
    yield StringCommand("nvidia-ctk", "cdi", "generate", QuoteString(f"--output={spec_path}"))
    yield StringCommand("chmod", "0644", QuoteString(spec_path))
