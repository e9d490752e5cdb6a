"""Files this package manages, read in ONE command however many there are (pyinfra's
``files.put`` reads a file's stat, its directory's stat and its checksum: three round trips per
file, even when nothing changes)."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, split_sections

_FILE = "file "


@dataclass(frozen=True)
class ManagedFileState(FactValue):
    # "file" (a regular file, not a link), "other" (a directory, link, socket ...) or "absent".
    kind: str
    user: str | None = None
    group: str | None = None
    # Permission bits as stat prints them in octal, e.g. "755".
    mode: str | None = None
    sha1: str | None = None
    # The numeric owner and group: an owner given as a number (a container's uid such as 999,
    # which may have no name on the host: stat's name is then "UNKNOWN") compares with these.
    uid: str | None = None
    gid: str | None = None


class ManagedFiles(FactBase[dict[str, ManagedFileState]]):
    """
    Owner and group (by name and by number), mode and SHA-1 of each of ``paths`` (``stat`` +
    ``sha1sum``), or its kind when it is not a regular file.

    .. code:: python

        {"/usr/local/bin/docker": ManagedFileState(kind="file", user="root", group="root",
                                                   mode="755", sha1="3f2a...", uid="0",
                                                   gid="0"),
         "/usr/local/bin/docker-compose": ManagedFileState(kind="absent")}
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, paths: list[str]) -> StringCommand:
        return StringCommand(*(part for path in paths for part in file_probe(path)), "true")

    def process(self, output: list[str]) -> dict[str, ManagedFileState]:
        return {
            key[len(_FILE) :]: file_state(lines)
            for key, lines in split_sections(output).items()
            if key.startswith(_FILE) and lines
        }


def file_probe(path: str) -> list:
    """The shell snippet printing section ``@@file PATH``: the file's kind, then (a regular
    file) ``stat``'s numeric owner and group, their names and the mode, and its SHA-1 (other
    facts gather files too)."""
    return [
        StringCommand("echo", QuoteString(f"@@{_FILE}{path}"), ";", _separator=" "),
        StringCommand("p=", QuoteString(path), _separator=""),
        '; if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then echo other;',
        'elif [ -f "$p" ]; then echo file; stat -c "%u %g %U %G %a" -- "$p";',
        'sha1sum -- "$p" | cut -d " " -f 1;',
        "else echo absent; fi;",
    ]


def file_state(lines: list[str]) -> ManagedFileState:
    """The value of one ``file_probe`` section."""
    kind = lines[0].strip() if lines else "other"
    if kind == "file" and len(lines) >= 3 and len(lines[1].split()) == 5:
        uid, gid, user, group, mode = lines[1].split()
        return ManagedFileState("file", user, group, mode, lines[2].strip(), uid, gid)
    if kind == "file":  # unreadable: treat as unknown, the operation re-puts it
        return ManagedFileState("other")
    return ManagedFileState(kind if kind in ("absent", "other") else "other")
