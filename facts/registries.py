"""Registries (standard §5.1 responsibility 3): the containers-auth.json(5) file podman reads
for root or a rootless user, as far as it may be shown: never a secret."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue
from . import auth_json as _auth_json
from .compose import as_user

# The on-host script (facts/auth_json.py), sent as its source text.
AUTH_SCRIPT = Path(_auth_json.__file__).read_text(encoding="utf-8")
merge = _auth_json.merge


def auth_script(user: str | None, *args: str) -> str:
    """The shell command running facts/auth_json.py with ``args`` as ``user`` (root: None)."""
    words = " ".join(shlex.quote(a) for a in ("python3", "-c", AUTH_SCRIPT, *args))
    return as_user(user, words)


class SecretStdin:
    """Text for a command's stdin (pyinfra's ``_stdin`` global argument) that pyinfra's logs
    show as ``(secret, not shown)``: they print a fact's arguments with ``str()``."""

    def __init__(self, text: str):
        self._text = text

    def readlines(self) -> list[str]:
        return [self._text]

    def __iter__(self):
        return iter(self.readlines())

    def __repr__(self) -> str:
        return "(secret, not shown)"

    __str__ = __repr__


@dataclass(frozen=True)
class AuthFileState(FactValue):
    # False: the account does not exist on the host.
    account: bool = False
    path: str = ""
    # absent, ok, invalid (not an auth.json document), unreadable (by its user), not a file
    state: str = "absent"
    owner: str = ""
    group: str = ""
    mode: str = ""  # octal as stat prints it, e.g. "600"
    user_group: str = ""  # the user's primary group: the file's group when podman writes it
    entries: list[str] = field(default_factory=list)  # every entry's key, managed or not
    # For each wanted key the file has: "same" (its auth is the wanted one) or "differs".
    compare: dict[str, str] = field(default_factory=dict)


class AuthFile(FactBase[AuthFileState]):
    """
    The persistent auth.json of ``user`` (root: None), read as that user: whether it exists
    and parses, its owner, group and mode, the keys of its entries, and for each wanted entry
    whether the file holds it as wanted. The wanted entries (``{key: auth}``) reach the host
    on the command's stdin, ``_stdin=SecretStdin(json.dumps(wanted))``, and are compared
    there: the answer is "same" or "differs", so neither a secret nor anything computed from
    one (a digest could be guessed offline) is in the command, its output or ``--debug``.
    Without ``_stdin`` nothing is compared.
    """

    def requires_command(self, *args, **kwargs) -> str:
        return "python3"

    @staticmethod
    def default() -> AuthFileState:
        return AuthFileState()

    def command(self, user: str | None) -> str:
        probe = auth_script(user, "probe")
        if not user:
            return probe
        return f"if id -u {shlex.quote(user)} >/dev/null 2>&1; then {probe}; else echo '{{}}'; fi"

    def process(self, output: list[str]) -> AuthFileState:
        data = json.loads("\n".join(output) or "{}")
        if not data:
            return AuthFileState()
        return AuthFileState(account=True, **data)


class MarkedCertificates(FactBase[list[str]]):
    """
    The ``<root>/<dir>/ca.crt`` files whose first line is ``marker`` (the managed-by header this
    package writes first in each CA it places), as the sorted ``<dir>`` names (``host[:port]``).
    A CA placed by hand has no such line, so it is never listed.
    """

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, root: str, marker: str) -> StringCommand:
        return StringCommand(
            "if cd",
            QuoteString(root),
            "2>/dev/null; then for f in */ca.crt; do",
            'if [ -f "$f" ] && [ ! -L "$f" ] && IFS= read -r first < "$f" && [ "$first" =',
            QuoteString(marker),
            ']; then printf "%s\\n" "${f%/ca.crt}"; fi; done; fi',
        )

    def process(self, output: list[str]) -> list[str]:
        return sorted(line for line in output if line)
