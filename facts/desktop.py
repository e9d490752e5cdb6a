"""Podman Desktop's prerequisites (standard §3.2 optional GUI, §4): Flatpak remotes on Linux
workstations, podman machines on macOS and Windows, winget packages on Windows."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase

from . import FactValue


class FlatpakRemotes(FactBase[dict[str, str]]):
    """
    The system installation's Flatpak remotes: name -> URL (``flatpak remotes --system
    --columns=name,url``: one tab-separated line each; an empty line when there are none).
    """

    def requires_command(self) -> str:
        return "flatpak"

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self) -> str:
        return "flatpak remotes --system --columns=name,url"

    def process(self, output: list[str]) -> dict[str, str]:
        remotes = {}
        for line in output:
            name, _, url = line.strip().partition("\t")
            if name:
                remotes[name] = url.strip()
        return remotes


@dataclass(frozen=True)
class Machine(FactValue):
    name: str
    running: bool = False
    starting: bool = False


class PodmanMachines(FactBase[list[Machine]]):
    """
    The login user's podman machines (``podman machine list --format json``, podman's JSON:
    Name, Running, Starting, ...); empty when there is none or podman is not installed.
    """

    def requires_command(self) -> str:
        return "podman"

    @staticmethod
    def default() -> list[Machine]:
        return []

    def command(self) -> str:
        return "podman machine list --format json"

    def process(self, output: list[str]) -> list[Machine]:
        items = json.loads("\n".join(output) or "[]") or []
        return [
            Machine(str(i.get("Name", "")), bool(i.get("Running")), bool(i.get("Starting")))
            for i in items
        ]


class WingetPackage(FactBase[bool]):
    """
    Whether winget lists package ``package_id`` as installed, by winget's exit status (0 when
    found; APPINSTALLER_CLI_ERROR_NO_APPLICATIONS_FOUND, 0x8A150014, when not): its table
    output is for people (column widths, truncated names, localised headers).
    """

    def requires_command(self, package_id: str) -> str:
        return "winget"

    @staticmethod
    def default() -> bool:
        return False

    def command(self, package_id: str) -> str:
        return (
            f"winget list --id {shlex.quote(package_id)} --exact --accept-source-agreements"
            ' --disable-interactivity >/dev/null 2>&1; echo "winget-exit=$?"'
        )

    def process(self, output: list[str]) -> bool:
        codes = [
            line.split("=", 1)[1].strip() for line in output if line.startswith("winget-exit=")
        ]
        return bool(codes) and codes[-1] == "0"
