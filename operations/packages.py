"""Install the Podman toolset (standard §5.1 responsibility 1) per distribution family."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.rpm import RpmPackages
from pyinfra.operations import apt, dnf

from operations._common import distro_family, distro_label

# The standard's toolset. On the Debian family Recommends are not installed (they pull
# in criu, a C preprocessor and more, minutes under emulation); instead the table names
# what podman needs from them: newuidmap (uidmap), rootless networks (passt is podman 5's
# default, slirp4netns podman 4's), nft for netavark's firewall rules (Debian 13: without
# it no rootful container starts), a user D-Bus, an init for --init, and CA roots.
PODMAN_PACKAGES = {
    "fedora": ["podman", "podman-compose", "buildah", "skopeo"],
    "debian": [
        "podman",
        "podman-compose",
        "buildah",
        "skopeo",
        "uidmap",
        "passt",
        "slirp4netns",
        "nftables",
        "dbus-user-session",
        "catatonit",
        "ca-certificates",
    ],
}
_INSTALLED_FACT = {"fedora": RpmPackages, "debian": DebPackages}


@operation()
def install(packages: list[str] | None = None, include_podman: bool = True):
    """
    Install the Podman toolset plus ``packages`` with the family's package manager.

    + packages: extra packages to install alongside
    + include_podman: include the standard's toolset (podman, podman-compose, buildah, skopeo)

    Idempotent: when every package is already installed nothing runs, not even a
    package index refresh. Unsupported distributions are a no-op with the reason.
    """
    family = distro_family()
    if family is None:
        host.noop(f"unsupported distribution {distro_label()}: no package table for it")
        return

    wanted = (PODMAN_PACKAGES[family] if include_podman else []) + list(packages or [])
    installed = host.get_fact(_INSTALLED_FACT[family])
    missing = [p for p in dict.fromkeys(wanted) if p not in installed]
    if not missing:
        host.noop(f"all {len(wanted)} packages are installed")
        return

    if family == "debian":
        yield from apt.update._inner(cache_time=3600)
        yield from apt.packages._inner(packages=missing, no_recommends=True)
    else:
        yield from dnf.packages._inner(packages=missing)
