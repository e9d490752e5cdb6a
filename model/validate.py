"""Validate host data for every host before anything touches a host.

pyinfra loads a deploy file once per host, concurrently; the first load validates the
whole inventory (pure CPU, no I/O, so no other host's load can interleave), and a bad
value anywhere stops the run before a fact is gathered or a command sent.
"""

from __future__ import annotations

import difflib

from pydantic import ValidationError
from pyinfra.api.exceptions import DeployError

from model.host_data import NAMESPACE, HostData


class HostDataError(DeployError):
    """One message naming every host, key, source and what was expected."""


_FIELDS = set(HostData.model_fields)


def _source(host, key: str) -> str:
    """Where a key's value comes from, in pyinfra's precedence order."""
    inventory = host.inventory
    if key in inventory.get_override_data():
        return "--data override"
    if key in inventory.get_host_data(host.name):
        return "host data in the inventory"
    for group in reversed(host.groups):
        if key in inventory.get_group_data(group):
            return f"group_data/{group}.py"
    return "group_data/all.py"


def _namespaced(data: dict) -> dict:
    return {k[len(NAMESPACE) :]: v for k, v in data.items() if k.startswith(NAMESPACE)}


def parse_host(host) -> HostData:
    """The validated data of one host; raises HostDataError naming each problem."""
    errors = host_errors(host)
    if errors:
        raise HostDataError(_format(errors))
    return HostData.model_validate(_namespaced(host.data.dict()))


def host_errors(host) -> list[str]:
    raw = _namespaced(host.data.dict())
    errors = []
    for key in sorted(set(raw) - _FIELDS):
        hint = difflib.get_close_matches(key, _FIELDS, n=1)
        known = f"did you mean {NAMESPACE}{hint[0]}?" if hint else "not a known key"
        errors.append(f"{host.name}: {NAMESPACE}{key} ({_source(host, NAMESPACE + key)}): {known}")
    try:
        HostData.model_validate({k: v for k, v in raw.items() if k in _FIELDS})
    except ValidationError as e:
        for err in e.errors():
            loc = err["loc"]
            key = NAMESPACE + str(loc[0]) if loc else "(host data)"
            path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in loc[1:2])
            path += _item_name(raw, loc)
            path += "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in loc[2:])
            where = _source(host, key) if loc else "host data"
            shown = repr(err["input"])
            # Structured input (a table, a list of tables) is where the user wrote it: the
            # path says which one, repeating it would bury the message.
            structured = isinstance(err["input"], dict) or (
                isinstance(err["input"], list) and any(isinstance(i, dict) for i in err["input"])
            )
            got = "" if structured or shown in err["msg"] else f", got {shown}"
            errors.append(f"{host.name}: {key}{path} ({where}): {err['msg']}{got}")
    return errors


def _item_name(raw: dict, loc: tuple) -> str:
    """``(name)`` after the index of an error inside a list of named items (services), so
    the message names the service and not only its position."""
    if len(loc) < 2 or not isinstance(loc[1], int):
        return ""
    items = raw.get(loc[0])
    try:
        name = items[loc[1]].get("name")
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""
    return f"({name})" if isinstance(name, str) else ""


def validate_inventory(inventory) -> None:
    """Validate every host's data; raise one HostDataError listing all problems."""
    errors = [e for host in inventory for e in host_errors(host)]
    if errors:
        raise HostDataError(_format(errors))


def _format(errors: list[str]) -> str:
    lines = "\n".join(f"  - {e}" for e in errors)
    return f"Invalid host data, nothing was run on any host:\n{lines}"


# Set on a pyinfra State once its whole inventory was validated.
_VALIDATED = "_podman_standard_validated"


def current_host_data() -> HostData:
    """Validate the whole inventory (once per run), then return this host's data."""
    from pyinfra import host, state

    from operations._run_status import count_failures

    count_failures(state)  # a failed host exits 1 under --no-wait too
    # A mark on the state itself: an id() of a state is reused once that state is gone.
    if not getattr(state, _VALIDATED, False):
        validate_inventory(state.inventory)
        setattr(state, _VALIDATED, True)
    return parse_host(host)
