"""Helpers shared by the operations: distro family table and managed-file rendering."""

from __future__ import annotations

import json
from io import StringIO

import tomli_w
from jinja2 import DictLoader, Environment, StrictUndefined
from pyinfra import host
from pyinfra.facts.server import LinuxDistribution

from model.host_data import TEMPLATES

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


def systemd_escape(value: str) -> str:
    """``value`` as literal text in a systemd command line: ``%`` (specifiers) and ``$``
    (variable expansion) doubled. Line breaks and other control characters cannot be
    expressed on one unit line and are rejected."""
    bad = sorted({repr(c) for c in value if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise ValueError(f"{value!r}: control characters ({', '.join(bad)}) in a unit value")
    return value.replace("%", "%%").replace("$", "$$")


def systemd_word(value: str) -> str:
    """``value`` as ONE word of a systemd command line (``ExecStart=``, and quadlet's
    ``Exec=``, ``Environment=``, ``PodmanArgs=``, which quadlet splits the same way):
    double-quoted, with backslash and double quote escaped, then :func:`systemd_escape`.
    A lone ``;`` separates commands even when quoted: it cannot be one word."""
    if value == ";":
        raise ValueError("a lone ';' separates commands in systemd; it cannot be an argument")
    quoted = systemd_escape(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


# Read once at import: small files, and rendering then needs no filesystem access.
_ENV = Environment(
    loader=DictLoader(
        {
            p.relative_to(TEMPLATES).as_posix(): p.read_text(encoding="utf-8")
            for p in TEMPLATES.rglob("*.j2")
        }
    ),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_ENV.filters["systemd_word"] = systemd_word
# A value written into YAML (compose files) as a JSON scalar or list: JSON is valid YAML, so
# quotes, colons and '#' in data stay data.
_ENV.filters["yaml"] = lambda value: json.dumps(value, ensure_ascii=False)


def render_template(template: str, /, **context) -> StringIO:
    return StringIO(_ENV.get_template(template).render(managed_by=MANAGED_BY, **context))
