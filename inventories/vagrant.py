"""pyinfra inventory for the VMs of the repository's Vagrantfile that are running, in the groups
``inventories/home.py`` uses (``inventories/vagrant_machines.json``), reached as ``vagrant
ssh-config`` says.

    vagrant up debian
    pyinfra inventories/vagrant.py deploys/linux_baseline.py

``PODMAN_STANDARD_VAGRANT_DATA`` may name a JSON file of extra host data, ``{"all": {…},
"<machine>": {…}}`` (e.g. a registry mirror), applied last.
"""

import json as _json
import os as _os
import subprocess as _subprocess
from pathlib import Path as _Path

from inventories._vagrant import groups as _groups
from inventories._vagrant import load_machines as _load_machines
from inventories._vagrant import parse_ssh_config as _parse_ssh_config
from inventories._vagrant import parse_status as _parse_status

_ROOT = _Path(__file__).resolve().parents[1]


def _vagrant(*args: str) -> str:
    result = _subprocess.run(
        ["vagrant", *args], cwd=_ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"`vagrant {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


_machines = _load_machines()
_status = _parse_status(_vagrant("status", "--machine-readable"))
_running = [name for name in _machines if _status.get(name, {}).get("state") == "running"]
if not _running:
    raise RuntimeError("no VM of the Vagrantfile is running: `vagrant up` first")
_extra_path = _os.environ.get("PODMAN_STANDARD_VAGRANT_DATA")
globals().update(
    _groups(
        _machines,
        _status,
        _parse_ssh_config(_vagrant("ssh-config", *_running)),
        _json.loads(_Path(_extra_path).read_text()) if _extra_path else None,
    )
)
