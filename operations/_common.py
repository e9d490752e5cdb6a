"""Helpers shared by the operations: distro family table and managed-file rendering."""

from __future__ import annotations

import hashlib
import json
import re
from io import StringIO

import tomli_w
from jinja2 import DictLoader, Environment, StrictUndefined
from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files

from facts.files import ManagedFiles
from model.host_data import TEMPLATES, control_characters

MANAGED_BY = "managed by podman-standard"
# Where _distribution() keeps a host's LinuxDistribution for the rest of the run.
_DISTRO_ATTR = "_podman_standard_distribution"

# os-release ID / ID_LIKE → the family whose package manager and names we use.
FAMILY_IDS = {
    "fedora": {"fedora", "rhel", "centos", "rocky", "almalinux"},
    "debian": {"debian", "ubuntu"},
}


def _distribution() -> dict:
    """``LinuxDistribution``, read once per host and run: pyinfra 3 does not cache facts, and
    the release of a host does not change while a deploy runs."""
    cached = getattr(host, _DISTRO_ATTR, None)
    if cached is None:
        cached = host.get_fact(LinuxDistribution)
        setattr(host, _DISTRO_ATTR, cached)
    return cached


def distro_family() -> str | None:
    """'fedora', 'debian', or None when the distribution is not one we support."""
    meta = _distribution()["release_meta"]
    ids = [meta.get("ID", "")] + meta.get("ID_LIKE", "").split()
    for family, members in FAMILY_IDS.items():
        if any(i in members for i in ids):
            return family
    return None


def distro_label() -> str:
    dist = _distribution()
    return f"{dist['name'] or 'unknown'} {dist['major'] or ''}".strip()


def validation_problems(error) -> str:
    """A pydantic ValidationError as one line: ``field.path: message; ...``."""
    return "; ".join(
        ": ".join(
            filter(None, [".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")])
        )
        for e in error.errors()
    )


def header(source: str, comment: str = "#") -> str:
    return f"{comment} {MANAGED_BY} ({source}); local changes are overwritten.\n"


def render_toml(data: dict, source: str) -> StringIO:
    """A TOML file with the managed-by header, serialised by tomli_w (never hand-quoted)."""
    return StringIO(header(source) + tomli_w.dumps(data))


# What a unit value may hold when written as it is (quadlet's one-value keys such as Image=,
# PublishPort=, Volume=, and the plain unit's option values): nothing systemd or quadlet would
# read as quoting, a specifier, a variable or a separator.
_BARE_RE = re.compile(r"^[A-Za-z0-9_./:@=+,\[\]*~][A-Za-z0-9_./:@=+,\[\]*~-]*$")


def unit_value(value: str, word: bool = False) -> str:
    """``value`` as it must appear in a unit file this package writes: THE one place a value
    meets systemd's syntax (the templates' ``unit`` and ``unit_word`` filters).

    ``word=False``: a value written as it is (one-value keys, option values); it must hold
    only letters, digits and ``_ . / : @ = + , [ ] * ~ -`` (``*`` and ``~``: calendar specs;
    nothing in a unit globs) and must not start with ``-`` (podman
    would read an option). ``word=True``: ONE word of a command line (``ExecStart=``, and
    quadlet's ``Exec=``, ``Environment=``, ``PodmanArgs=``, which quadlet splits the same way):
    double-quoted, backslash and double quote escaped, ``%`` (specifiers) and ``$`` (variables)
    doubled; a lone ``;`` separates commands even when quoted, so it cannot be one word.
    Line breaks and other control characters fit neither (systemd also ends a line at CR)."""
    bad = control_characters(value)
    if bad:
        raise ValueError(f"{value!r}: control characters ({', '.join(bad)}) in a unit value")
    if not word:
        if not _BARE_RE.match(value):
            raise ValueError(f"{value!r} cannot be written unquoted into a unit")
        return value
    if value == ";":
        raise ValueError("a lone ';' separates commands in systemd; it cannot be an argument")
    quoted = value.replace("%", "%%").replace("$", "$$").replace("\\", "\\\\")
    return '"' + quoted.replace('"', '\\"') + '"'


def systemd_word(value: str) -> str:
    return unit_value(value, word=True)


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
_ENV.filters["unit"] = unit_value
_ENV.filters["unit_word"] = systemd_word


def compose_yaml(value) -> str:
    """A value written into a compose file as a JSON scalar or list: JSON is valid YAML, so
    quotes, colons and '#' in data stay data; and every '$' doubled, since compose expands
    ``$VAR``/``${VAR}`` in every string of the file at run time and reads ``$$`` as ``$``."""

    def escaped(v):
        if isinstance(v, str):
            return v.replace("$", "$$")
        if isinstance(v, list | tuple):
            return [escaped(i) for i in v]
        if isinstance(v, dict):
            return {escaped(k): escaped(i) for k, i in v.items()}
        return v

    return json.dumps(escaped(value), ensure_ascii=False)


_ENV.filters["yaml"] = compose_yaml


def pgpass_field(value) -> str:
    """One field of libpq's password file: ``\\`` and ``:`` escaped with a backslash; a line
    break would end the entry, so none may stand in it."""
    text = str(value)
    if control_characters(text):
        raise ValueError("a pgpass field holds no line break or other control character")
    return text.replace("\\", "\\\\").replace(":", "\\:")


# Service files (templates/services/): JSON is valid YAML, and a JSON scalar keeps any text
# one value; libpq's password file has its own escaping.
_ENV.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
_ENV.filters["pgpass"] = pgpass_field


def render_template(template: str, /, **context) -> StringIO:
    return StringIO(_ENV.get_template(template).render(managed_by=MANAGED_BY, **context))


# Content up to this size travels inside the command (one round trip); larger goes through
# files.put (a upload plus a command per attribute). Linux caps one argument at 128 KiB.
INLINE_LIMIT = 64 * 1024


def write_file(content: str, dest: str, user: str, group: str, mode: str) -> StringCommand:
    """One command that writes ``content`` to ``dest`` with exactly ``user:group`` and ``mode``.

    The content goes to a temporary file beside ``dest`` (``mktemp``: created 0600, same
    filesystem), gets its owner and mode, then is renamed over ``dest``: a reader sees the old
    file or the new one, never a part, and never the wrong mode. A failed step removes the
    temporary file. The content is in the command line (logged by ``--debug``, visible to ps
    for the moment it runs): only for configuration, never for secrets.
    """
    return StringCommand(
        StringCommand("d=", QuoteString(dest), _separator=""),
        '; mkdir -p -- "$(dirname -- "$d")" && t=$(mktemp -- "$d.XXXXXX") && {',
        "printf '%s'",
        QuoteString(content),
        '> "$t" &&',
        "chown",
        QuoteString(f"{user}:{group}"),
        '-- "$t" && chmod',
        QuoteString(mode),
        '-- "$t" && mv -f -- "$t" "$d" || { rm -f -- "$t"; false; }; }',
    )


def put_file(content: StringIO, dest: str, user: str, group: str, mode: str):
    """Write ``content`` to ``dest``: inline (``write_file``, one command) when it is small,
    through ``files.put`` otherwise."""
    text = content.getvalue()
    if len(text.encode("utf-8")) <= INLINE_LIMIT:
        yield write_file(text, dest, user, group, mode)
    else:
        content.seek(0)
        yield from files.put._inner(src=content, dest=dest, user=user, group=group, mode=mode)


def put_files(managed: list[tuple[StringIO, str, str, str, str]]):
    """Write managed files ``(content, dest, user, group, mode)`` that differ from the host's.

    One ``ManagedFiles`` fact reads every destination (stat + checksum) in a single command;
    only a file whose content, owner, group or mode differs is written, in one command each
    (``put_file``). A destination that is not a regular file (a directory, a link) goes
    through ``files.put``, which refuses or handles it as pyinfra does. Returns how many files
    were already as wanted."""
    state = host.get_fact(ManagedFiles, paths=[dest for _, dest, *_ in managed])
    in_place = 0
    for content, dest, user, group, mode in managed:
        have = state.get(dest)
        wanted_sha1 = hashlib.sha1(content.getvalue().encode("utf-8")).hexdigest()
        if (
            have is not None
            and have.kind == "file"
            and (have.user, have.group, have.sha1) == (user, group, wanted_sha1)
            and int(have.mode, 8) == int(mode, 8)
        ):
            in_place += 1
            continue
        if have is not None and have.kind in ("file", "absent"):
            yield from put_file(content, dest, user, group, mode)
        else:
            content.seek(0)
            yield from files.put._inner(src=content, dest=dest, user=user, group=group, mode=mode)
    return in_place


def upload_private(content: str, dest: str, user: str, group: str, mode: str):
    """Write ``content`` (a secret) to ``dest`` with exactly ``user:group`` and ``mode``,
    never in a command line and never readable by others on the way: the upload goes into a
    file beside ``dest`` created 0600 (and, under sudo, through pyinfra's temporary file,
    created 0600 for the connecting user beforehand: SFTP truncates an existing file and
    keeps its mode), gets its owner and mode, and is renamed over ``dest``."""
    staged = f"{dest}.podman-standard-new"
    temp_dir = (host.current_op_global_arguments or {}).get("_temp_dir")
    via = host.get_temp_filename(dest, temp_directory=temp_dir)
    yield StringCommand(
        "( umask 077 && rm -f --",
        QuoteString(staged),
        QuoteString(via),
        "&& : >",
        QuoteString(staged),
        "&& : >",
        QuoteString(via),
        '&& chown "${SUDO_UID:-0}" --',
        QuoteString(via),
        ")",
    )
    yield FileUploadCommand(StringIO(content), staged, remote_temp_filename=via)
    yield StringCommand(
        "{ chown",
        QuoteString(f"{user}:{group}"),
        "--",
        QuoteString(staged),
        "&& chmod",
        QuoteString(mode),
        "--",
        QuoteString(staged),
        "&& mv -f --",
        QuoteString(staged),
        QuoteString(dest),
        "; }; rc=$?; rm -f --",
        QuoteString(staged),
        QuoteString(via),
        "; exit $rc",
    )
