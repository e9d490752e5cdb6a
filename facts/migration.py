"""A Docker -> Podman migration's rollback bundle on the host (standard §6.1): how far the
migration recorded there got (the on-host script's state file), its plan (manifest.json) and
which of its detached steps (transient systemd units) still run. What the migrate deploy reads
to resume a migration whose SSH connection was lost instead of auditing Docker again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, section, split_sections
from .docker import _parse_systemctl_show

# The steps the script runs detached, and the transient unit each runs as (migrate.sh).
DETACHED_STEPS = ("export", "move", "rollback")
UNIT_PREFIX = "podman-standard-migration"
# States of a migration that started and has not ended: Docker's containers are stopped for
# it (docker-stopped: an export under way; then exported, moved, verified; retired: the point
# of no return was passed). Not: docker-running (put back after a failure), rolled-back.
IN_PROGRESS = ("docker-stopped", "exported", "moved", "verified", "retired")


def unit_name(step: str) -> str:
    return f"{UNIT_PREFIX}-{step}.service"


@dataclass(frozen=True)
class MigrationBundleState(FactValue):
    # The script's state file ("" without one).
    state: str = ""
    # manifest.json, None when absent or not JSON.
    manifest: dict | None = None
    # Detached steps whose unit is active or on its way (a session that lost its connection
    # started them).
    running: list[str] = field(default_factory=list)

    @property
    def in_progress(self) -> bool:
        """A migration recorded here started and has not ended (or one of its steps runs)."""
        return self.manifest is not None and (self.state in IN_PROGRESS or bool(self.running))


class MigrationBundle(FactBase[MigrationBundleState]):
    """
    The bundle directory's state file, manifest and detached step units, in one command:

    .. code:: python

        MigrationBundleState(state="docker-stopped", manifest={...}, running=["export"])
    """

    @staticmethod
    def default() -> MigrationBundleState:
        return MigrationBundleState()

    def command(self, bundle: str) -> StringCommand:
        units = " ".join(unit_name(s) for s in DETACHED_STEPS)
        return StringCommand(
            section("state"),
            "cat",
            QuoteString(f"{bundle}/state"),
            "2>/dev/null;",
            section("manifest"),
            "cat",
            QuoteString(f"{bundle}/manifest.json"),
            "2>/dev/null;",
            section("units"),
            f"systemctl show --property=Id,ActiveState {units} 2>/dev/null; true",
        )

    def process(self, output: list[str]) -> MigrationBundleState:
        sections = split_sections(output)
        state = next((line.strip() for line in sections.get("state", []) if line.strip()), "")
        try:
            manifest = json.loads("\n".join(sections.get("manifest", [])))
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            manifest = None
        units = _parse_systemctl_show(sections.get("units", []))
        running = [
            s
            for s in DETACHED_STEPS
            if units.get(unit_name(s), {}).get("ActiveState") in ("active", "activating")
        ]
        return MigrationBundleState(state=state, manifest=manifest, running=running)
