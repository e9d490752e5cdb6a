"""SELinux where containers live: the mode, the local file-context rules and the labels of a
store (a moved graphroot needs the labels of /var/lib/containers/storage)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, section, split_sections

_LABEL = "label "
_PARENT = "parent "
# The label of "$p" on disk and the policy's, one line each (Label).
_LABEL_OF_P = (
    'echo "actual $(stat -c %C -- "$p" 2>/dev/null)";',
    'echo "expected $(matchpathcon -n -- "$p" 2>/dev/null)";',
)
# semanage-fcontext(8) -f: how `semanage fcontext -l` names each file type.
FILE_TYPES = (
    "all files",
    "regular file",
    "directory",
    "character device",
    "block device",
    "socket",
    "symbolic link",
    "named pipe",
)
_RULE_RE = re.compile(rf"^(?P<spec>\S+)\s+(?P<ftype>{'|'.join(FILE_TYPES)})\s+(?P<context>\S+)\s*$")
_EQUIV_RE = re.compile(r"^(?P<target>\S+) = (?P<source>\S+)\s*$")


@dataclass(frozen=True)
class FileContextRule(FactValue):
    spec: str  # a path regular expression, e.g. "/srv/web(/.*)?"
    file_type: str  # one of FILE_TYPES
    context: str  # "system_u:object_r:httpd_sys_content_t:s0", or "<<None>>"


@dataclass(frozen=True)
class Label(FactValue):
    # The context on disk (``stat -c %C``), None when the path does not exist.
    actual: str | None
    # The context the policy gives the path (``matchpathcon -n``), None without a rule.
    expected: str | None


ENABLED_MODES = ("enforcing", "permissive")


def label_differs(actual: str | None, expected: str | None) -> bool:
    """restorecon would change the label: the types differ (restorecon without -F resets the
    type only, so another user or MCS level is no difference to it)."""
    return bool(actual and expected) and context_type(actual) != context_type(expected)


def context_type(context: str) -> str:
    """The type of ``user:role:type:level`` (the whole text when it has no type field)."""
    parts = context.split(":")
    return parts[2] if len(parts) >= 3 else context


@dataclass(frozen=True)
class SELinuxState(FactValue):
    # "enforcing", "permissive" or "disabled" (getenforce); None: no SELinux tools.
    mode: str | None = None
    # semanage (policycoreutils-python-utils) is installed: local rules are known.
    semanage: bool = False
    # Local equivalence rules (`semanage fcontext -a -e SOURCE TARGET`): target -> source.
    equivalences: dict[str, str] = field(default_factory=dict)
    # Local type rules (`semanage fcontext -a -t TYPE SPEC`).
    rules: list[FileContextRule] = field(default_factory=list)
    # For each root asked for and each directory right under it: its label.
    labels: dict[str, Label] = field(default_factory=dict)
    # For each directory above a root (``/`` excluded): its label. A confined engine
    # (refpolicy's podman_t) must be allowed to search each of them to reach the store.
    parents: dict[str, Label] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.mode in ENABLED_MODES


def parse_fcontext_local(lines: list[str]) -> tuple[dict[str, str], list[FileContextRule]]:
    """``semanage fcontext -l -C``: its type rules (a heading, then ``SPEC FILE-TYPE CONTEXT``
    columns) and its equivalences (after "SELinux Local fcontext Equivalence": ``TARGET =
    SOURCE``)."""
    equivalences: dict[str, str] = {}
    rules: list[FileContextRule] = []
    in_equivalences = False
    for line in lines:
        if "fcontext Equivalence" in line:
            in_equivalences = True
            continue
        if in_equivalences:
            match = _EQUIV_RE.match(line.strip())
            if match:
                equivalences[match["target"]] = match["source"]
            continue
        match = _RULE_RE.match(line.strip())
        if match and not line.startswith("SELinux fcontext"):
            rules.append(FileContextRule(match["spec"], match["ftype"], match["context"]))
    return equivalences, rules


class SELinux(FactBase[SELinuxState]):
    """
    The SELinux mode, the local file-context rules, and the labels (on disk and expected) of
    each of ``roots``, of the directories right under it and of those above it (``/``
    excluded), in one command. Without SELinux
    tools the value says so (``mode`` None), it is not an error.
    """

    @staticmethod
    def default() -> SELinuxState:
        return SELinuxState()

    def command(self, roots: list[str] | None = None) -> StringCommand:
        parts: list = [
            section("mode"),
            "getenforce 2>/dev/null;",
            "if command -v semanage >/dev/null 2>&1; then",
            section("local"),
            "semanage fcontext -l -C 2>/dev/null; fi;",
        ]
        for root in roots or []:
            parts += [
                StringCommand("r=", QuoteString(root), _separator=""),
                '; for p in "$r" "$r"/*/; do [ "$p" = "$r" ] || [ -d "$p" ] || continue;',
                'p=${p%/}; [ "$p" = "" ] && p=/;',
                f'echo "@@{_LABEL}$p";',
                *_LABEL_OF_P,
                "done;",
                'p=$r; while p=${p%/*}; [ -n "$p" ]; do',
                f'echo "@@{_PARENT}$p";',
                *_LABEL_OF_P,
                "done;",
            ]
        return StringCommand(*parts, "true")

    def process(self, output: list[str]) -> SELinuxState:
        sections = split_sections(output)
        mode_lines = [line.strip().lower() for line in sections.get("mode", []) if line.strip()]
        mode = mode_lines[0] if mode_lines else None
        equivalences, rules = parse_fcontext_local(sections.get("local", []))
        labels: dict[str, Label] = {}
        parents: dict[str, Label] = {}
        for key, lines in sections.items():
            for prefix, found in ((_LABEL, labels), (_PARENT, parents)):
                if key.startswith(prefix):
                    found[key[len(prefix) :]] = _label(lines)
        return SELinuxState(
            mode=mode if mode in ("enforcing", "permissive", "disabled") else None,
            semanage="local" in sections,
            equivalences=equivalences,
            rules=rules,
            labels=labels,
            parents=parents,
        )


def _label(lines: list[str]) -> Label:
    values = {}
    for line in lines:
        name, _, value = line.partition(" ")
        # stat prints "?" for a file without a label (SELinux off).
        values[name] = value.strip() if value.strip() not in ("", "?") else None
    return Label(values.get("actual"), values.get("expected"))
