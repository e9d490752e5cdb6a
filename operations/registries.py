"""Container registries (standard §5.1 responsibility 3, §9.2 registry mirrors)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from operations._common import put_files, render_toml

SOURCE = "operations/registries.py"
DROPIN = "/etc/containers/registries.conf.d/50-podman-standard.conf"


def registries_toml(search: list[str], short_name_mode: str, registries: list[dict]) -> dict:
    """The registries.conf (version 2) document for these settings."""
    doc: dict = {
        "unqualified-search-registries": list(search),
        "short-name-mode": short_name_mode,
    }
    tables = []
    for reg in registries:
        table = {"prefix": reg["prefix"]}
        if not reg["prefix"].startswith("*."):
            # A wildcard prefix has no location (containers-registries.conf(5)).
            table["location"] = reg.get("location") or reg["prefix"]
        if reg.get("insecure"):
            table["insecure"] = True
        if reg.get("blocked"):
            table["blocked"] = True
        mirrors = [
            {"location": m["location"], **({"insecure": True} if m.get("insecure") else {})}
            for m in reg.get("mirrors", [])
        ]
        if mirrors:
            table["mirror"] = mirrors
        tables.append(table)
    if tables:
        doc["registry"] = tables
    return doc


@operation()
def configure(
    search: list[str] = ("docker.io", "quay.io", "ghcr.io"),
    short_name_mode: str = "enforcing",
    registries: list[dict] | None = None,
    path: str = DROPIN,
):
    """
    Write the registries drop-in: search list, short-name mode, per-prefix location,
    mirrors, insecure and blocked flags.

    + search: unqualified-search-registries, in order
    + short_name_mode: enforcing, permissive or disabled
    + registries: list of ``{"prefix", "location", "insecure", "blocked",
      "mirrors": [{"location", "insecure"}]}``
    + path: the drop-in file (registries.conf.d is read by every supported podman)

    Idempotent: the file is only uploaded when its content differs.
    """
    doc = registries_toml(list(search), short_name_mode, list(registries or []))
    if (yield from put_files([(render_toml(doc, SOURCE), path, "root", "root", "0644")])):
        host.noop(f"{path} is up to date")
