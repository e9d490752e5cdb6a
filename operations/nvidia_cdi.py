"""NVIDIA GPUs in containers through CDI (standard §5.1 responsibility 6, §8.1 GPU line)."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.operations import systemd

from facts.gpu import Gpu, NvidiaGpus, NvidiaPresence, PackageSources
from operations import packages
from operations._common import distro_family, distro_label, header, put_files

SOURCE = "operations/nvidia_cdi.py"
TOOLKIT_PACKAGE = "nvidia-container-toolkit"
# From toolkit 1.18 on, nvidia-cdi-refresh.path regenerates /var/run/cdi/nvidia.yaml
# whenever the driver changes; a second spec of our own would define every device twice.
REFRESH_UNIT = "nvidia-cdi-refresh.path"
REFRESH_SINCE = (1, 18)
CDI_PREFIX = "nvidia.com/gpu="
DEFAULT_REPOSITORY = "https://nvidia.github.io/libnvidia-container"
# Where NVIDIA's install guide puts the source; apt reads an ASCII-armoured key named *.asc
# in signed-by (apt >= 1.4), so no gpg is needed on the host.
SOURCE_FILE = {
    "fedora": "/etc/yum.repos.d/nvidia-container-toolkit.repo",
    "debian": "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
}
APT_KEY = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
# What the key download needs on the Debian family (not in a minimal install).
FETCH_PACKAGES = ["curl", "ca-certificates"]


def _version_tuple(text: str | None) -> tuple[int, ...]:
    digits = []
    for part in (text or "").split("."):
        num = "".join(ch for ch in part if ch.isdigit())
        if not num:
            break
        digits.append(int(num))
    return tuple(digits)


def spec_problems(cdi_devices: list[str], gpus: list[Gpu]) -> list[str]:
    """What the CDI devices (``nvidia-ctk cdi list``) lack or name in vain for ``gpus``: [] when
    the spec is current. A GPU counts as covered by its UUID or by its index, whichever naming
    strategy generated the spec (1.14's index-only, 1.17's both); ``all`` must be there. A
    whole-GPU name that is neither a present index nor a present UUID is a GPU that is gone
    (its device node would make ``--device nvidia.com/gpu=all`` fail). MIG devices (``0:1``)
    are not judged."""
    names = {d[len(CDI_PREFIX) :] for d in cdi_devices if d.startswith(CDI_PREFIX)}
    problems = [] if "all" in names else [f"{CDI_PREFIX}all missing"]
    known = {"all"}
    for gpu in gpus:
        known |= {str(gpu.index), gpu.uuid}
        if str(gpu.index) not in names and gpu.uuid not in names:
            problems.append(f"GPU {gpu.index} ({gpu.uuid}) missing")
    if gpus:
        gone = sorted(n for n in names - known if ":" not in n)
        problems += [f"{CDI_PREFIX}{n} names no GPU present" for n in gone]
    return problems


def _source_content(family: str, url: str) -> StringIO:
    """NVIDIA's own source (libnvidia-container's stable/rpm/nvidia-container-toolkit.repo and
    stable/deb/nvidia-container-toolkit.list, the stable channel), with the key in signed-by."""
    if family == "fedora":
        body = (
            "[nvidia-container-toolkit]\n"
            "name=nvidia-container-toolkit\n"
            f"baseurl={url}/stable/rpm/$basearch\n"
            "repo_gpgcheck=1\n"
            "gpgcheck=0\n"
            "enabled=1\n"
            f"gpgkey={url}/gpgkey\n"
        )
    else:
        body = f"deb [signed-by={APT_KEY}] {url}/stable/deb/$(ARCH) /\n"
    return StringIO(header(SOURCE) + body)


def _unreachable(url: str) -> str:
    return f"NVIDIA's container toolkit repository {url} cannot be reached from this host"


def _repository(family: str, url: str, installing: bool):
    """The repository's source file (and apt key) as NVIDIA documents them, unless another
    source file already names ``url``; before an install, a bounded probe that fails naming
    the repository. Returns whether apt must refresh its index."""
    ours = SOURCE_FILE[family]
    current = host.get_fact(PackageSources, url=url, key=APT_KEY if family == "debian" else "")
    others = [f for f in current.files if f != ours]
    if others:
        host.noop(f"{', '.join(others)} already name(s) {url}: no source of ours written")
        return False
    if family == "debian":
        yield from packages.install._inner(packages=FETCH_PACKAGES, include_podman=False)
    probe = f"{url}/gpgkey"
    if family == "debian" and not current.key_present:
        # The key comes from the repository itself (as NVIDIA's guide fetches it), into a
        # temporary file renamed into place only when it is an armoured public key.
        yield StringCommand(
            StringCommand("k=", QuoteString(APT_KEY), _separator=""),
            '; mkdir -p -- "$(dirname -- "$k")" && t=$(mktemp -- "$k.XXXXXX") && {',
            'curl -fsSL --max-time 60 -o "$t" --',
            QuoteString(probe),
            '&& grep -q "BEGIN PGP PUBLIC KEY BLOCK" "$t" && chmod 0644 "$t" && mv -f "$t" "$k"',
            '|| { rm -f "$t"; echo',
            QuoteString(f"{_unreachable(url)} (its key {probe} could not be fetched)"),
            ">&2; false; }; }",
        )
    elif installing:
        yield StringCommand(
            "curl -fsS --max-time 60 -o /dev/null --",
            QuoteString(probe),
            "|| { echo",
            QuoteString(f"{_unreachable(url)} ({probe} did not answer)"),
            ">&2; false; }",
        )
    in_place = yield from put_files([(_source_content(family, url), ours, "root", "root", "0644")])
    return family == "debian" and (in_place == 0 or not current.key_present)


@operation()
def container_toolkit(
    enabled: bool | str = "auto",
    spec_path: str = "/etc/cdi/nvidia.yaml",
    repository: bool = True,
    repository_url: str = DEFAULT_REPOSITORY,
):
    """
    Install the NVIDIA Container Toolkit from NVIDIA's repository and keep a CDI spec that
    covers every GPU, so ``podman run --device nvidia.com/gpu=all`` works.

    + enabled: True (a GPU is required: error without one), False, or "auto" (only
      where an NVIDIA GPU is present)
    + spec_path: where to generate the spec when the toolkit does not refresh it itself
    + repository: write NVIDIA's dnf .repo file or apt source (and its key) where none names
      ``repository_url`` yet; False when the host has a source of its own
    + repository_url: the repository's base URL (NVIDIA's, or a mirror of it)

    Idempotent: the source file is rewritten only when it differs, the key fetched only when
    missing, and the spec regenerated only when it lacks ``all`` or a present GPU (by UUID or
    by index) or names a GPU that is gone.
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

    installing = presence.ctk_version is None
    refresh = False
    if repository:
        family = distro_family()
        if family is None:
            raise OperationError(
                f"no NVIDIA repository source for {distro_label()}: configure one and set "
                "podman_nvidia_repository.enabled: false"
            )
        refresh = yield from _repository(family, repository_url, installing)

    if installing:
        yield from packages.install._inner(
            packages=[TOOLKIT_PACKAGE], include_podman=False, refresh=refresh
        )
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
    problems = spec_problems(list(presence.cdi_devices), list(gpus))
    if spec_path in presence.cdi_spec_files and not problems:
        host.noop(f"CDI spec {spec_path} covers all {len(gpus)} GPUs")
        return
    yield StringCommand("nvidia-ctk", "cdi", "generate", QuoteString(f"--output={spec_path}"))
    yield StringCommand("chmod", "0644", QuoteString(spec_path))
