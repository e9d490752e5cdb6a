"""The on-host side of registry credentials: run by the host's ``python3`` (as the user whose
containers-auth.json(5) file it is), never imported by pyinfra's process on the host. Standard
library only. Its source text travels in the command (it holds no secret); a secret only ever
reaches it on stdin, and it never prints one.

    python3 -c SOURCE probe < WANTED      WANTED {key: auth} (may be empty): one JSON line:
                                          the file's state, its keys, and for each WANTED key
                                          the file has "same" or "differs", never a value nor
                                          anything computed from one
    python3 -c SOURCE merge < PAYLOAD     PAYLOAD {"set": {key: auth}, "remove": [key]}:
                                          checks each set entry with ``podman login``, then
                                          writes the merged file 0600 in one rename

The file is the persistent one podman reads for this user: ``~/.config/containers/auth.json``
(``$XDG_RUNTIME_DIR/containers/auth.json``, what ``podman login`` writes, is on a tmpfs).
"""

import grp
import hmac
import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile

RELATIVE = (".config", "containers", "auth.json")


def auth_path(home: str) -> str:
    return os.path.join(home, *RELATIVE)


def compare(auths: dict, wanted: dict) -> dict:
    """For each ``wanted`` key the ``auths`` of a file hold: "same" when its auth value is the
    wanted one, else "differs". Only this answer leaves the host: a digest of a secret in a
    fact's output (which --debug prints) would let a weak password be guessed offline."""
    found = {}
    for key, auth in wanted.items():
        entry = auths.get(key)
        if isinstance(entry, dict):
            stored = str(entry.get("auth", "")).encode()
            found[key] = "same" if hmac.compare_digest(stored, str(auth).encode()) else "differs"
    return found


def merge(doc: dict, set_: dict, remove: list) -> dict:
    """``doc`` (an auth.json document) with the ``set_`` entries replaced or added and the
    ``remove`` keys gone; every other entry and top-level key kept as it is."""
    auths = dict(doc.get("auths") or {})
    for key in remove:
        auths.pop(key, None)
    for key, auth in set_.items():
        auths[key] = {"auth": auth}
    return {**doc, "auths": auths}


def _read(path: str):
    """(state, document) of the file: state is absent, invalid, unreadable or ok."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return "absent", {}
    except PermissionError:
        return "unreadable", {}
    except (ValueError, UnicodeDecodeError):
        return "invalid", {}
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        return "invalid", {}
    return "ok", doc


def probe(wanted: dict) -> dict:
    user = pwd.getpwuid(os.getuid())
    path = auth_path(user.pw_dir)
    state, doc = _read(path)
    found = {"path": path, "state": state, "owner": "", "group": "", "mode": ""}
    found["user_group"] = grp.getgrgid(os.getgid()).gr_name
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            found["owner"] = pwd.getpwuid(st.st_uid).pw_name
            found["group"] = grp.getgrgid(st.st_gid).gr_name
            found["mode"] = format(stat.S_IMODE(st.st_mode), "o")
        else:
            found["state"] = "not a file"
    except FileNotFoundError:
        pass
    auths = doc.get("auths", {})
    found["entries"] = sorted(auths)
    found["compare"] = compare(auths, wanted)
    return found


def _mkdirs(home: str) -> None:
    # Each missing level under the home, the user's own and private (we run as the user).
    path = home
    for part in RELATIVE[:-1]:
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)


def _login_fails(path: str, key: str, secrets: list) -> str:
    """Why ``podman login`` refuses the entry for ``key`` in ``path``; "" when it logs in.
    Podman checks stored credentials against the registry without prompting."""
    try:
        result = subprocess.run(
            ["podman", "login", "--authfile", path, key],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"podman login could not run: {type(error).__name__}"
    if result.returncode == 0:
        return ""
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    reason = next((line for line in lines if "rror" in line), lines[-1] if lines else "")
    for secret in secrets:  # podman prints none; never let one through regardless
        reason = reason.replace(secret, "***")
    return reason or f"podman login exited {result.returncode}"


def main(argv: list) -> int:
    if argv[:1] == ["probe"]:
        wanted = json.loads(sys.stdin.read() or "{}")
        print(json.dumps(probe(wanted), sort_keys=True))
        return 0
    payload = json.load(sys.stdin)
    user = pwd.getpwuid(os.getuid())
    path = auth_path(user.pw_dir)
    state, doc = _read(path)
    if state not in ("absent", "ok"):
        print(f"{path} is {state}: not touched", file=sys.stderr)
        return 1
    _mkdirs(user.pw_dir)
    fd, temp = tempfile.mkstemp(prefix=".auth.json.", dir=os.path.dirname(path))  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(merge(doc, payload["set"], payload["remove"]), f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        secrets = list(payload["set"].values())
        failed = [(k, _login_fails(temp, k, secrets)) for k in sorted(payload["set"])]
        failed = [(k, why) for k, why in failed if why]
        if failed:
            for key, why in failed:
                print(
                    f"registry {key}: the registry refuses the login of {user.pw_name}'s "
                    f"credential ({why}); {path} left as it was",
                    file=sys.stderr,
                )
            return 1
        os.rename(temp, path)
        temp = ""
    finally:
        if temp:
            os.unlink(temp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
