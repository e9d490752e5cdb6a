"""Container registries (standard §5.1 responsibility 3, §9.2 registry mirrors)."""

from __future__ import annotations

import base64
import json
import re
from io import StringIO

from pydantic import TypeAdapter, ValidationError
from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, QuoteString, StringCommand, operation

from facts.registries import AuthFile, MarkedCertificates, SecretStdin, auth_script
from model.host_data import RegistryCredential, UserName, check_pem
from operations._common import header, put_files, render_toml, show_change, validation_problems

SOURCE = "operations/registries.py"
DROPIN = "/etc/containers/registries.conf.d/50-podman-standard.conf"
# containers-certs.d(5): read by root and by rootless podman (the users' own
# ~/.config/containers/certs.d/<host[:port]>, when it exists, is read instead).
CERTS_D = "/etc/containers/certs.d"
_CERT_DIR_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?$")


def _cert_dir(value: str) -> str:
    if not _CERT_DIR_RE.match(value):
        raise ValueError(f"{value!r} is not a registry host[:port]")
    return value


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


@operation()
def certificates(certificates: dict[str, str] | None = None, root: str = CERTS_D):
    """
    Put each registry's CA certificate where podman reads it for root and for every rootless
    user: ``<root>/<host[:port]>/ca.crt`` (containers-certs.d(5); 0644, root's: a CA is
    public), its first line this package's managed-by header. TLS verification stays on.

    + certificates: ``{host[:port]: PEM text}``, each checked to be X.509 PEM before anything
      is written
    + root: the certs.d directory

    Idempotent: a file is only written when its content, owner or mode differs. A CA this
    package placed (its first line the header) that is no longer declared is removed, with
    its directory when nothing else is in it; a CA placed by hand (no header) is never
    touched.
    """
    managed = []
    for where, pem in sorted((certificates or {}).items()):
        try:
            _cert_dir(where)
            check_pem(pem)
        except ValueError as error:
            raise OperationError(f"registry CA for {where}: {error}") from None
        text = header(SOURCE) + pem.rstrip("\n") + "\n"
        managed.append((StringIO(text), f"{root}/{where}/ca.crt", "root", "root", "0644"))
    marked = host.get_fact(MarkedCertificates, root=root, marker=header(SOURCE).rstrip("\n"))
    # A name this package could not have written is not one of its CAs.
    stale = [d for d in marked if d not in (certificates or {}) and _CERT_DIR_RE.match(d)]
    in_place = (yield from put_files(managed)) if managed else 0
    for where in stale:
        directory = f"{root}/{where}"
        yield StringCommand(
            "rm -f --",
            QuoteString(f"{directory}/ca.crt"),
            "&& rmdir --ignore-fail-on-non-empty --",
            QuoteString(directory),
        )
    if stale or in_place < len(managed):
        return
    if managed:
        host.noop(f"{len(managed)} registry CA certificate(s) in {root} are up to date")
    else:
        host.noop("no registry CA certificates declared, none of this package's in place")


@operation()
def credentials(credentials: list[dict] | None = None, user: str | None = None):
    """
    Keep the logins of ``user`` (root: None) in the containers-auth.json(5) file podman reads
    for it persistently, ``~/.config/containers/auth.json``, owned by that user, mode 0600.

    + credentials: ``[{"registry", "username", "password": {"env": VAR} | {"file": path},
      "present": True}]``; ``registry`` is the entry's key (a location or mirror, host[:port]
      [/path]); the password is read on the controller now; ``present: False`` removes the
      entry
    + user: a rootless user, or None for root

    Entries this package does not manage (another ``podman login``) are kept; a removed
    credential removes its entry only. The file is merged on the host, as the user, by
    facts/auth_json.py: the new entries reach it through a 0600 upload on its stdin, never
    in a command line or a fact's output, and each is checked with ``podman login`` against
    its registry before the file is replaced (a refused login leaves the file as it was and
    fails naming the registry and the user). Idempotent: the AuthFile fact compares the
    stored entries with the wanted ones on the host (sent on its stdin, answered "same" or
    "differs"), so an unchanged secret writes nothing and nothing derived from a secret
    leaves the host.

    The secret's upload is made as the connecting user and handed over with sudo (pyinfra's
    ``_sudo``), or made as root; ``_su_user`` and ``_doas`` are not tested with it.
    """
    who = user or "root"
    try:
        wanted = TypeAdapter(list[RegistryCredential]).validate_python(
            [{**c, "user": user} for c in credentials or []]
        )
        if user is not None:
            TypeAdapter(UserName).validate_python(user)
    except ValidationError as error:
        problems = validation_problems(error)
        raise OperationError(f"registry credentials for {who}: {problems}") from None
    auths = {}
    for cred in wanted:
        if cred.present:
            try:
                password = cred.password.read()
            except ValueError as error:
                raise OperationError(
                    f"registry {cred.registry}: credential of {who}: {error}"
                ) from None
            auths[cred.registry] = base64.b64encode(f"{cred.username}:{password}".encode()).decode()
    keys = sorted(c.registry for c in wanted)
    state = host.get_fact(AuthFile, user=user, _stdin=SecretStdin(json.dumps(auths)))
    if user and not state.account:
        raise OperationError(f"registry credentials: user {user} does not exist on this host")
    if state.state not in ("absent", "ok"):
        raise OperationError(
            f"registry credentials of {who}: {state.path} is {state.state}; not touched "
            "(fix or remove it)"
        )
    to_set = {k: a for k, a in auths.items() if state.compare.get(k) != "same"}
    to_remove = sorted(c.registry for c in wanted if not c.present and c.registry in state.entries)
    metadata_ok = (state.owner, state.group, state.mode) == (who, state.user_group, "600")
    if not to_set and not to_remove and (metadata_ok or not auths):
        others = len(set(state.entries) - set(keys))
        host.noop(
            f"{state.path or 'auth.json'}: {len(auths)} credential(s) of {who} up to date"
            + (f", {others} other entr{'y' if others == 1 else 'ies'} left alone" if others else "")
        )
        return
    show_change(state.path or f"the auth.json of {who}", None, exists=state.state == "ok")
    payload = json.dumps({"set": to_set, "remove": to_remove})
    # Both 0600 from creation on: the SFTP upload (as the connecting user, under sudo to the
    # temporary file) truncates a file and keeps its mode.
    dest = host.get_temp_filename(f"podman-standard auth {who}")
    upload = host.get_temp_filename(dest)
    yield StringCommand(
        "( umask 077 && : >",
        QuoteString(dest),
        "&& : >",
        QuoteString(upload),
        '&& chown "${SUDO_UID:-0}"',
        QuoteString(upload),
        ")",
    )
    yield FileUploadCommand(StringIO(payload), dest, remote_temp_filename=upload)
    merge = auth_script(user, "merge")
    yield StringCommand(
        f"rc=0; {merge} <",
        QuoteString(dest),
        "|| rc=$?; rm -f --",
        QuoteString(dest),
        QuoteString(upload),
        "; exit $rc",
    )
