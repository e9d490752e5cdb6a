"""Install the Podman toolset (standard §5.1 responsibility 1) per distribution family."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.rpm import RpmPackages
from pyinfra.operations import dnf

from operations._common import distro_family, distro_label, timed

# The standard's toolset. On the Debian family Recommends are not installed (they pull
# in criu, a C preprocessor and more, minutes under emulation); instead the table names
# what podman needs from them: newuidmap (uidmap), rootless networks (passt is podman 5's
# default, slirp4netns podman 4's), nft for netavark's firewall rules (Debian 13: without
# it no rootful container starts), aardvark-dns for container names on netavark's networks
# (Debian 13: without it a compose service cannot reach another by name, and removing a
# container from such a network fails), a user D-Bus, an init for --init, and CA roots.
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
        "aardvark-dns",
        "dbus-user-session",
        "catatonit",
        "ca-certificates",
    ],
}
_INSTALLED_FACT = {"fedora": RpmPackages, "debian": DebPackages}


# apt's own "last successful update" stamp, as pyinfra's apt.update uses it.
APT_STAMP = "/var/lib/apt/periodic/update-success-stamp"
APT_CACHE_MINUTES = 60


def apt_install(packages: list[str], refresh: bool = False) -> StringCommand:
    """One command: refresh the package index unless it was refreshed in the last hour (or
    always, with ``refresh``: a source was just added), then install ``packages`` without
    Recommends, keeping changed configuration files (what pyinfra's
    ``apt.update(cache_time=3600)`` + ``apt.packages(no_recommends=True)`` do in four round
    trips)."""
    stale = "true" if refresh else f'[ -z "$(find "$s" -mmin -{APT_CACHE_MINUTES} 2>/dev/null)" ]'
    return StringCommand(
        "s=" + APT_STAMP + ";",
        f"if {stale}; then",
        'apt-get update && touch "$s" || exit 1; fi;',
        "DEBIAN_FRONTEND=noninteractive apt-get -y",
        '-o Dpkg::Options::="--force-confdef" -o Dpkg::Options::="--force-confold"',
        "install --no-install-recommends",
        *(QuoteString(p) for p in packages),
    )


@operation()
def install(packages: list[str] | None = None, include_podman: bool = True, refresh: bool = False):
    """
    Install the Podman toolset plus ``packages`` with the family's package manager.

    + packages: extra packages to install alongside
    + include_podman: include the standard's toolset (podman, podman-compose, buildah, skopeo)
    + refresh: on apt, refresh the package index before installing even when it is recent
      (a source was just added); dnf reads a new repository's metadata by itself

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

    step = f"install {len(missing)} package(s): {' '.join(missing)}"
    if family == "debian":
        yield from timed(step, apt_install(missing, refresh=refresh))
    else:
        yield from timed(step, dnf.packages._inner(packages=missing))
