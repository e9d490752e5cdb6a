"""Podman as the host runs it (§2.1, §2.4, §8): version, storage it really uses, registries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase

from . import FactValue

_FAILED = "@@podman-info-failed"


@dataclass(frozen=True)
class PodmanInfoState(FactValue):
    version: str
    graph_root: str
    run_root: str
    graph_driver: str
    # store.configFile: the storage.conf podman actually read.
    config_file: str
    cgroup_version: str
    rootless: bool
    search_registries: list[str] = field(default_factory=list)
    image_count: int = 0
    container_count: int = 0
    running_count: int = 0
    # store.volumePath: where named volumes live (graph_root/volumes unless configured).
    volume_path: str = ""
    # Set when podman is installed but `podman info` failed (e.g. a broken storage.conf); the
    # other fields are then empty.
    error: str | None = None


class PodmanInfo(FactBase["PodmanInfoState | None"]):
    """
    ``podman info --format json`` of the connecting user (root under sudo), or ``None`` when
    podman is not installed. Reads the field names of podman 4.3 (Debian 12) and 5.x alike.
    """

    def requires_command(self) -> str:
        return "podman"

    def command(self) -> str:
        # A failing `podman info` must not fail the host: report it as a value instead.
        return f"podman info --format json || echo '{_FAILED}' $?"

    def process(self, output: list[str]) -> PodmanInfoState | None:
        failed = [line for line in output if line.startswith(_FAILED)]
        if failed:
            code = failed[-1][len(_FAILED) :].strip()
            return _empty(f"podman info failed (exit {code or '?'})")
        text = "\n".join(output).strip()
        if not text:
            return None
        try:
            info = json.loads(text)
        except ValueError as error:
            return _empty(f"podman info printed no JSON: {error}")
        if not isinstance(info, dict):
            return _empty("podman info printed no JSON object")
        return _from_info(info)


def _empty(error: str) -> PodmanInfoState:
    return PodmanInfoState(
        version="",
        graph_root="",
        run_root="",
        graph_driver="",
        config_file="",
        cgroup_version="",
        rootless=False,
        error=error,
    )


def _get(data: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _from_info(info: dict[str, Any]) -> PodmanInfoState:
    store = info.get("store") or {}
    host = info.get("host") or {}
    # Podman 4 and 5 both put rootless under host.security; early 4.x also had host.rootless.
    rootless = _get(host, "security", "rootless", default=host.get("rootless", False))
    search = _get(info, "registries", "search", default=[]) or []
    return PodmanInfoState(
        version=str(_get(info, "version", "Version", default="")),
        graph_root=store.get("graphRoot", ""),
        run_root=store.get("runRoot", ""),
        graph_driver=store.get("graphDriverName", ""),
        config_file=store.get("configFile", ""),
        cgroup_version=host.get("cgroupVersion", ""),
        rootless=bool(rootless),
        search_registries=[str(r) for r in search],
        image_count=int(_get(store, "imageStore", "number", default=0) or 0),
        container_count=int(_get(store, "containerStore", "number", default=0) or 0),
        running_count=int(_get(store, "containerStore", "running", default=0) or 0),
        volume_path=store.get("volumePath", ""),
    )
