"""Pure helpers of ``inventories/vagrant.py``: Vagrant's output in, pyinfra hosts out."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

MACHINES_FILE = Path(__file__).with_name("vagrant_machines.json")
MACHINES_ENV = "PODMAN_STANDARD_VAGRANT_MACHINES"  # the Vagrantfile reads the same variable


def parse_status(text: str) -> dict[str, dict[str, str]]:
    """``vagrant status --machine-readable`` -> {machine: {"state": …, "provider-name": …}}.

    Lines are ``timestamp,target,type,data``; a comma inside data is ``%!(VAGRANT_COMMA)``.
    """
    machines: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split(",", 3)
        if len(parts) < 4 or not parts[1]:
            continue
        _, target, kind, data = parts
        if kind in ("state", "provider-name"):
            machines.setdefault(target, {})[kind] = data.replace("%!(VAGRANT_COMMA)", ",")
    return machines


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """``vagrant ssh-config`` -> {host: {option (lower case): value}} in ssh_config's syntax
    (first value of an option wins, as for ssh)."""
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if key.lower() == "host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            words = shlex.split(value) if value.startswith('"') else [value]
            current.setdefault(key.lower(), words[0] if words else "")
    return hosts


def connection_data(options: dict[str, str]) -> dict:
    """pyinfra's SSH connector settings for one ``ssh-config`` host. Vagrant's own choice for
    host keys is kept: each VM is new (and re-created VMs reuse addresses), so its config says
    ``StrictHostKeyChecking no`` with ``/dev/null`` as known-hosts file."""
    data = {
        "ssh_hostname": options["hostname"],
        "ssh_port": int(options.get("port", 22)),
        "ssh_user": options["user"],
        "ssh_key": options["identityfile"],
    }
    if options.get("stricthostkeychecking", "").lower() == "no":
        data["ssh_strict_host_key_checking"] = "no"
    if "userknownhostsfile" in options:
        data["ssh_known_hosts_file"] = options["userknownhostsfile"]
    return data


def groups(
    machines: dict,
    status: dict[str, dict[str, str]],
    ssh_configs: dict[str, dict[str, str]],
    extra: dict | None = None,
) -> dict[str, list[tuple[str, dict]]]:
    """{group: [(machine, host data)]} for the running machines of the Vagrantfile.

    Host data: connection, the machine's own data (vagrant_machines.json), its blank second
    disk as ``/space`` for the provider it runs on, then ``extra`` ({"all": …, NAME: …}).
    """
    extra = extra or {}
    result: dict[str, list[tuple[str, dict]]] = {}
    for name, machine in machines.items():
        if status.get(name, {}).get("state") != "running":
            continue
        provider = status[name].get("provider-name", "")
        data = {**connection_data(ssh_configs[name]), **machine.get("data", {})}
        device = machine.get("space_device", {}).get(provider)
        if device:
            data["podman_storage_device"] = {
                "device": device,
                "mount_point": "/space",
                "fstype": "ext4",
                "format_if_blank": True,
            }
        data.update(extra.get("all", {}))
        data.update(extra.get(name, {}))
        for group in machine["groups"]:
            result.setdefault(group, []).append((name, data))
    return result


def load_machines() -> dict:
    return json.loads(Path(os.environ.get(MACHINES_ENV) or MACHINES_FILE).read_text())
