"""Rootless users (standard §1.1 tenet 4, §5.1 responsibility 7): subordinate ids, linger."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from facts.rootless import RootlessUser

# Below this, ranges would collide with ordinary uids/gids (login.defs SUB_UID_MIN).
FIRST_SUBID = 100000


def _ranges(table) -> list[tuple[int, int]]:
    return [(int(start), int(count)) for entries in table.values() for start, count in entries]


def _overlaps(start: int, count: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start < s + c and s < start + count for s, c in ranges)


def _next_free(count: int, ranges: list[tuple[int, int]]) -> int:
    start = FIRST_SUBID
    for s, c in sorted(ranges):
        if start + count <= s:
            break
        start = max(start, s + c)
    return start


@operation()
def user(
    user: str,
    subid_start: int | None = None,
    subid_count: int = 65536,
    linger: bool = True,
):
    """
    Give an existing user what rootless Podman needs: a subordinate uid and gid range
    that overlaps no other user's, and (``linger``) a systemd user manager that runs
    without a login, so the user's containers and units start at boot.

    + user: the user name (must exist)
    + subid_start: an explicit first subordinate id; default: the first free range
    + subid_count: how many ids (at least 65536)
    + linger: enable (True) or disable (False) lingering

    Ranges are added with ``usermod --add-subuids/--add-subgids``, never edited by hand.
    Idempotent: a user who already has a large enough range keeps it.
    """
    ids = host.get_fact(RootlessUser, user=user)  # account, subids and linger: one command
    if not ids.exists:
        raise OperationError(f"rootless user {user!r} does not exist on this host")

    changed = False
    for kind in ("subuid", "subgid"):
        table = getattr(ids, kind)
        own = [(int(s), int(c)) for s, c in table.get(user, [])]
        if any(c >= subid_count and (subid_start is None or s == subid_start) for s, c in own):
            continue
        others = _ranges({u: r for u, r in table.items() if u != user})
        start = subid_start if subid_start is not None else _next_free(subid_count, _ranges(table))
        if _overlaps(start, subid_count, others):
            raise OperationError(
                f"{kind} range {start}-{start + subid_count - 1} for {user} overlaps "
                "another user's range in /etc/" + kind
            )
        flag = "--add-subuids" if kind == "subuid" else "--add-subgids"
        yield StringCommand(
            "usermod", flag, f"{start}-{start + subid_count - 1}", QuoteString(user)
        )
        changed = True

    lingering = ids.lingering
    if linger and not lingering:
        yield StringCommand("loginctl", "enable-linger", QuoteString(user))
    elif not linger and lingering:
        yield StringCommand("loginctl", "disable-linger", QuoteString(user))
    elif not changed:
        host.noop(f"{user} has subordinate ids and linger={'on' if linger else 'off'}")
