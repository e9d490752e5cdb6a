"""Helpers shared by the operations: distro family table and managed-file rendering."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import tomli_w
from jinja2 import DictLoader, Environment, StrictUndefined
from pyinfra import host
from pyinfra.facts.server import LinuxDistribution

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MANAGED_BY = "managed by podman-standard"

# os-release ID / ID_LIKE → the family whose package manager and names we use.
FAMILY_IDS = {
    "fedora": {"fedora", "rhel", "centos", "rocky", "almalinux"},
    "debian": {"debian", "ubuntu"},
}


def distro_family() -> str | None:
    """'fedora', 'debian', or None when the distribution is not one we support."""
    meta = host.get_fact(LinuxDistribution)["release_meta"]
    ids = [meta.get("ID", "")] + meta.get("ID_LIKE", "").split()
    for family, members in FAMILY_IDS.items():
        if any(i in members for i in ids):
            return family
    return None


def distro_label() -> str:
    dist = host.get_fact(LinuxDistribution)
    return f"{dist['name'] or 'unknown'} {dist['major'] or ''}".strip()


def header(source: str, comment: str = "#") -> str:
    return f"{comment} {MANAGED_BY} ({source}); local changes are overwritten.\n"


def render_toml(data: dict, source: str) -> StringIO:
    """A TOML file with the managed-by header, serialised by tomli_w (never hand-quoted)."""
    return StringIO(header(source) + tomli_w.dumps(data))


# Read once at import: small files, and rendering then needs no filesystem access.
_ENV = Environment(
    loader=DictLoader({p.name: p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.j2")}),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render_template(name: str, **context) -> StringIO:
    return StringIO(_ENV.get_template(name).render(managed_by=MANAGED_BY, **context))
