"""Helpers shared by the operations: distro family table, managed-file rendering and writing
(with pyinfra's ``--diff``), and the progress lines of long steps."""

from __future__ import annotations

import hashlib
import json
import re
import time
from io import StringIO

import tomli_w
from jinja2 import DictLoader, Environment, StrictUndefined
from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, FunctionCommand, QuoteString, StringCommand
from pyinfra.api.output import format_text
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files
from pyinfra.operations.util.files import generate_color_diff

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


# Where shared_fact() keeps what the last operations read (see there).
_SHARED_ATTR = "_podman_standard_shared_facts"


class _Shared:
    def __init__(self, op: str | None, executing):
        self.op = op  # the operation reading through it now
        self.executing = executing  # pyinfra's stage: facts read while planning stay there
        self.kept_after: str | None = None  # the operation that ended changing nothing
        self.facts: dict = {}


def _previous_operation() -> str | None:
    """The operation this host ran just before the current one (None when unknown)."""
    state = host.state
    try:
        ops = state.ops[host]
        order = state.get_op_order()
        index = order.index(host.current_op_hash)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return next((op for op in reversed(order[:index]) if op in ops), None)


def _shared() -> _Shared:
    current, executing = host.current_op_hash, getattr(host.state, "is_executing", None)
    shared = getattr(host, _SHARED_ATTR, None)
    if shared is not None and shared.executing == executing:
        if shared.op == current and current is not None:
            return shared
        if shared.kept_after is not None and shared.kept_after == _previous_operation():
            shared.op, shared.kept_after = current, None
            return shared
    shared = _Shared(current, executing)
    setattr(host, _SHARED_ATTR, shared)
    return shared


def shared_fact(cls, **kwargs):
    """``host.get_fact(cls, **kwargs)``, answered again without a command for the operation
    that runs right after one that read it and changed nothing (``keep_shared_facts``): a
    no-op run of N services reads their state once, not N times. Any operation in between,
    or one that yielded a command, and the next read goes to the host."""
    shared = _shared()
    key = (cls, json.dumps(kwargs, sort_keys=True, default=str))
    if key not in shared.facts:
        shared.facts[key] = host.get_fact(cls, **kwargs)
    return shared.facts[key]


def keep_shared_facts() -> None:
    """The current operation changed nothing: what it read stays true for the next one."""
    shared = getattr(host, _SHARED_ATTR, None)
    if shared is not None and shared.op == host.current_op_hash and shared.op is not None:
        shared.kept_after = shared.op


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


def show_change(
    dest: str,
    content: str | None,
    *,
    exists: bool | None = None,
    metadata: str = "",
    same_content: bool = False,
) -> None:
    """Under pyinfra's ``--diff`` (only then: otherwise nothing is read), log how writing
    ``content`` to ``dest`` changes it, as ``files.put`` does: "Will create" or "Will modify"
    and a unified diff of the current content against the new one in pyinfra's colours.

    ``content=None``: the file holds secrets (a secrets file, an auth.json): only that it
    changes is shown, never a line of it. ``exists``: what a fact already said (``False``
    spares reading the file); ``metadata``: an owner or mode change to name beside it;
    ``same_content``: only the metadata changes (nothing is read). In
    ``--dry`` and in a real run alike (operations are planned before anything runs)."""
    if not state.config.DIFF:
        return
    bold = format_text(dest, bold=True)
    if same_content:
        logger.info(f"{host.print_prefix}Will set {metadata} of {bold}")
        logger.info("")
        return
    read = exists is not False and content is not None
    current = host.get_fact(FileContents, path=dest) if read else None
    if content is None:
        verb = "create" if exists is False else "modify"
        logger.info(f"{host.print_prefix}Will {verb} {bold} (holds secrets: content not shown)")
    elif current is None and exists is not True:
        logger.info(f"{host.print_prefix}Will create {bold}")
        for line in generate_color_diff([], content.splitlines(keepends=True)):
            logger.info("  %s", line)
    else:
        current_lines = [line + "\n" for line in current or []]
        wanted_lines = content.splitlines(keepends=True)
        logger.info(f"{host.print_prefix}Will modify {bold}")
        for line in generate_color_diff(current_lines, wanted_lines):
            logger.info("  %s", line)
    if metadata:
        logger.info(f"{host.print_prefix}Will set {metadata} of {bold}")
    logger.info("")


def write_file(content: str, dest: str, user: str, group: str, mode: str) -> StringCommand:
    """One command that writes ``content`` to ``dest`` with exactly ``user:group`` and ``mode``.

    The content goes to a temporary file beside ``dest`` (``mktemp``: created 0600, same
    filesystem), gets its owner and mode, then is renamed over ``dest``: a reader sees the old
    file or the new one, never a part, and never the wrong mode. A failed step removes the
    temporary file. The content is in the command line (logged by ``--debug``, visible to ps
    for the moment it runs): only for configuration, never for secrets (``upload_private``).
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


def put_file(
    content: StringIO,
    dest: str,
    user: str,
    group: str,
    mode: str,
    **change,
):
    """Write ``content`` to ``dest``: inline (``write_file``, one command) when it is small,
    through ``files.put`` otherwise (which shows its own ``--diff``). ``change``: what the
    caller knows of the file, for ``show_change``."""
    text = content.getvalue()
    if len(text.encode("utf-8")) <= INLINE_LIMIT:
        show_change(dest, text, **change)
        yield write_file(text, dest, user, group, mode)
    else:
        content.seek(0)
        yield from files.put._inner(src=content, dest=dest, user=user, group=group, mode=mode)


def put_files(managed: list[tuple[StringIO, str, str, str, str]], written: list | None = None):
    """Write managed files ``(content, dest, user, group, mode)`` that differ from the host's
    (each one written is appended to ``written`` when given).

    One ``ManagedFiles`` fact reads every destination (stat + checksum) in a single command;
    only a file whose content, owner, group or mode differs is written, in one command each
    (``put_file``). A destination that is not a regular file (a directory, a link) goes
    through ``files.put``, which refuses or handles it as pyinfra does. Under ``--diff`` each
    file that changes shows how (``show_change``; a new file's content without reading it).
    Returns how many files were already as wanted."""
    on_host = host.get_fact(ManagedFiles, paths=[dest for _, dest, *_ in managed])
    in_place = 0
    for content, dest, user, group, mode in managed:
        have = on_host.get(dest)
        wanted_sha1 = hashlib.sha1(content.getvalue().encode("utf-8")).hexdigest()
        if (
            have is not None
            and have.kind == "file"
            and (have.user, have.group, have.sha1) == (user, group, wanted_sha1)
            and int(have.mode, 8) == int(mode, 8)
        ):
            in_place += 1
            continue
        if written is not None:
            written.append(dest)
        if have is not None and have.kind in ("file", "absent"):
            metadata = ""
            if have.kind == "file":
                metadata = ", ".join(
                    f"{what} {old} -> {new}"
                    for what, old, new in (
                        ("owner", f"{have.user}:{have.group}", f"{user}:{group}"),
                        ("mode", f"{int(have.mode, 8):04o}", f"{int(mode, 8):04o}"),
                    )
                    if old != new
                )
            yield from put_file(
                content,
                dest,
                user,
                group,
                mode,
                exists=have.kind == "file",
                metadata=metadata,
                same_content=have.kind == "file" and have.sha1 == wanted_sha1,
            )
        else:
            content.seek(0)
            yield from files.put._inner(src=content, dest=dest, user=user, group=group, mode=mode)
    return in_place


def upload_private(
    content: str, dest: str, user: str, group: str, mode: str, exists: bool | None = None
):
    """Write ``content`` (a secret) to ``dest`` with exactly ``user:group`` and ``mode``,
    never in a command line and never readable by others on the way: the upload goes into a
    file beside ``dest`` created 0600 (and, under sudo, through pyinfra's temporary file,
    created 0600 for the connecting user beforehand: SFTP truncates an existing file and
    keeps its mode), gets its owner and mode, and is renamed over ``dest``. ``--diff`` shows
    only that the file is written, never its content (``show_change``; ``exists``: what a
    fact said). The one way this package writes a secret; writes every time it is called."""
    show_change(dest, None, exists=exists)
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


# Where a step's start time waits for its end, per host and run.
_STEPS_ATTR = "_podman_standard_steps"


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def _step_started(state, host, what: str) -> None:
    if getattr(host, _STEPS_ATTR, None) is None:
        setattr(host, _STEPS_ATTR, {})
    getattr(host, _STEPS_ATTR)[what] = time.monotonic()
    logger.info(f"{host.print_prefix}{what}: started")


def _step_done(state, host, what: str) -> None:
    started = (getattr(host, _STEPS_ATTR, None) or {}).pop(what, None)
    took = "" if started is None else f" in {_elapsed(time.monotonic() - started)}"
    logger.info(f"{host.print_prefix}{what}: done{took}")


def timed(what: str, commands) -> list:
    """``commands`` (one command, or an iterable of them) between two progress lines on
    pyinfra's normal output, printed on the controller while the run executes them:
    ``[host] <what>: started``, then ``[host] <what>: done in 3 min 12 s`` (a failed command
    ends the step without the second line: pyinfra names the failure). For long steps
    (package installs, image pulls, the migration's steps, a compose bring-up): ``yield from
    timed("install podman, crun", [cmd])``. No commands, no lines: a no-op stays a no-op.
    Nothing is printed in ``--dry`` (nothing runs)."""
    if isinstance(commands, StringCommand | FileUploadCommand | FunctionCommand | str):
        commands = [commands]
    commands = list(commands)
    if not commands:
        return []
    return [
        FunctionCommand(_step_started, [what], {}),
        *commands,
        FunctionCommand(_step_done, [what], {}),
    ]
