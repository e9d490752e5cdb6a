"""Compose projects (standard §2.3, §7.2): the containers podman-compose made for a project and
what this package last brought up there."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from . import FactValue, section, split_sections

# podman-compose labels every container it creates with its project's name.
PROJECT_LABEL = "io.podman.compose.project"
# ... and with its service's name in the compose file.
SERVICE_LABEL = "com.docker.compose.service"
# Beside the compose file: what the project was last brought up from (written by the on-host
# helper after a successful `up`, so a failed one is retried on the next run): JSON with
# "inputs" (the sha256 over the project's files) and "services" (each service's own digest).
APPLIED_FILE = ".podman-standard-applied"


def parse_applied(text: str | None) -> tuple[str, dict[str, str] | None]:
    """(inputs digest, {service: digest} or None) of a project's applied record: the helper's
    JSON, or the digest alone that an earlier version wrote; ("", None) without a record."""
    text = (text or "").strip()
    if not text.startswith("{"):
        return text.split("\n", 1)[0].strip(), None
    try:
        data = json.loads(text)
        return str(data.get("inputs", "")), dict(data.get("services") or {})
    except (ValueError, AttributeError, TypeError):
        return "", None


def as_user(user: str | None, command: str) -> str:
    """``command`` (one shell command line) run as ``user`` with the runtime directory its
    systemd gives it, from / (the connecting user's directory may be closed to it); as is for
    root."""
    if not user:
        return command
    name = shlex.quote(user)
    return (
        f'cd / && runuser -u {name} -- env XDG_RUNTIME_DIR="/run/user/$(id -u {name})" '
        f"sh -c {shlex.quote(command)}"
    )


def all_running(containers: dict[str, str]) -> bool:
    """A project is up when it has containers and every one of them runs."""
    return bool(containers) and all(state == "running" for state in containers.values())


@dataclass(frozen=True)
class ComposeProjectState(FactValue):
    # container name -> podman's State word (running, exited, created, paused, ...)
    containers: dict[str, str] = field(default_factory=dict)
    # the inputs digest the project was last brought up from, "" when never (or not by this
    # package); a record of an earlier version (one sha256 line) reads as that line
    applied: str = ""
    # podman could not be asked (not installed, or the user's runtime directory missing)
    error: str = ""


class ComposeProject(FactBase[ComposeProjectState]):
    """
    The containers of compose project ``project`` (by podman-compose's project label, as root
    or as the rootless ``user``) and the applied-file beside ``directory/compose.yaml``.

    .. code:: python

        ComposeProjectState(containers={"devstack_web_1": "running"}, applied="9f86d0…", error="")
    """

    @staticmethod
    def default() -> ComposeProjectState:
        return ComposeProjectState()

    def command(self, project: str, directory: str, user: str | None = None) -> str:
        # JSON: `--format {{.State}}` prints "Up 5 seconds ago" on podman 4.3, "running" on 5.
        ps = (
            f"podman ps -a --filter label={shlex.quote(f'{PROJECT_LABEL}={project}')} --format json"
        )
        applied = shlex.quote(f"{directory}/{APPLIED_FILE}")
        return (
            f"{section('ps')} {as_user(user, ps)} 2>&1 || echo '@@error';"
            f" {section('applied')} cat {applied} 2>/dev/null; true"
        )

    def process(self, output: list[str]) -> ComposeProjectState:
        parts = split_sections(output)
        ps = parts.get("ps", [])
        if "error" in parts:
            return ComposeProjectState(error=" ".join(line.strip() for line in ps)[:300])
        text = "\n".join(line for line in ps if not line.startswith(("time=", "WARN")))
        containers = {}
        for item in json.loads(text) if text.strip() else []:
            names = item.get("Names") or [item.get("Id", "?")[:12]]
            name = names[0] if isinstance(names, list) else str(names)
            containers[name] = str(item.get("State", "")).lower()
        applied, _ = parse_applied("\n".join(parts.get("applied", [])))
        return ComposeProjectState(containers=containers, applied=applied)
