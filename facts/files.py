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


class ManagedFiles(FactBase[dict[str, ManagedFileState]]):
    """
    Owner, group, mode and SHA-1 of each of ``paths`` (``stat`` + ``sha1sum``), or its kind when
    it is not a regular file.

    .. code:: python

        {"/usr/local/bin/docker": ManagedFileState(kind="file", user="root", group="root",
                                                   mode="755", sha1="3f2a..."),
         "/usr/local/bin/docker-compose": ManagedFileState(kind="absent")}
    """

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, paths: list[str]) -> StringCommand:
        parts: list = []
        for path in paths:
            quoted = QuoteString(path)
            parts += [
                StringCommand("echo", QuoteString(f"@@{_FILE}{path}"), ";", _separator=" "),
                StringCommand("p=", quoted, _separator=""),
                '; if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then echo other;',
                'elif [ -f "$p" ]; then echo file; stat -c "%U %G %a" -- "$p";',
                'sha1sum -- "$p" | cut -d " " -f 1;',
                "else echo absent; fi;",
            ]
        return StringCommand(*parts, "true")

    def process(self, output: list[str]) -> dict[str, ManagedFileState]:
        files: dict[str, ManagedFileState] = {}
        for key, lines in split_sections(output).items():
            if not key.startswith(_FILE) or not lines:
                continue
            path, kind = key[len(_FILE) :], lines[0].strip()
            if kind == "file" and len(lines) >= 3 and len(lines[1].split()) == 3:
                user, group, mode = lines[1].split()
                files[path] = ManagedFileState("file", user, group, mode, lines[2].strip())
            elif kind == "file":  # unreadable: treat as unknown, the operation re-puts it
                files[path] = ManagedFileState("other")
            else:
                files[path] = ManagedFileState(kind if kind in ("absent", "other") else "other")
        return files
