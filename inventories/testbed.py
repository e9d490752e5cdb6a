"""pyinfra inventory for the real-host testbed: the guests described by ``.testbed/hosts.json``
(or the file named by ``PODMAN_STANDARD_TESTBED``), one list per group.

    python -m testbed up --detach
    pyinfra inventories/testbed.py deploys/linux_baseline.py
"""

import json as _json
import os as _os
from pathlib import Path as _Path

_STATE = _Path(
    _os.environ.get("PODMAN_STANDARD_TESTBED")
    or _Path(__file__).resolve().parents[1] / ".testbed" / "hosts.json"
)


def _groups(state: dict) -> dict[str, list[tuple[str, dict]]]:
    """hosts.json -> {group: [(host name, host data)]}: SSH through the 127.0.0.1 forward with
    the image's key, host keys not checked (every guest is new), plus the host's own data."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for host in state["hosts"]:
        data = {
            "ssh_hostname": host["ssh_host"],
            "ssh_port": host["ssh_port"],
            "ssh_user": host["ssh_user"],
            "ssh_key": host["ssh_key"],
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
            **host["data"],
        }
        for group in host["groups"]:
            groups.setdefault(group, []).append((host["name"], data))
    return groups


if not _STATE.exists():
    raise FileNotFoundError(
        f"testbed state {_STATE} not found: run `python -m testbed up --detach` first"
    )
globals().update(_groups(_json.loads(_STATE.read_text())))
