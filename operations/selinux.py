"""SELinux labels for a moved container store (standard §2.4, §5.2 on an SELinux host)."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from facts.selinux import ENABLED_MODES, SELinux, context_type, label_differs
from operations import packages

DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
# The policy's label for a path no rule names (a new top-level directory such as /space, a
# fresh file system's mount point). A confined container engine may not search it: Debian's
# refpolicy denies podman_t ``search`` on default_t (and on unlabeled_t, the label of a fresh
# ext4), so podman in a systemd unit cannot reach a store below it.
UNNAMED_TYPE = "default_t"
# What such a directory on the way to the store gets: the type of /var, which system domains
# may search (refpolicy and Fedora's targeted policy alike); nothing below it changes.
PASSAGE_TYPE = "var_t"
# semanage comes with the policy tools' Python part, same package name in both families.
SEMANAGE_PACKAGE = "policycoreutils-python-utils"
# What ``semanage import`` reads as one argument: it splits its lines on white space and
# strips quotes, so an argument with either goes to a ``semanage fcontext`` call of its own.
_IMPORT_SAFE = re.compile(r"[^\s'\"]+")


@operation()
def store_labels(graphroot: str, default: str = DEFAULT_GRAPHROOT, passages: bool = True):
    """
    Give a graphroot outside ``default`` the labels of ``default`` on an SELinux host: the
    file-context equivalence rule ``semanage fcontext -a -e DEFAULT GRAPHROOT`` (what
    container-selinux documents for a moved store), then ``restorecon -R`` on it, which
    runs only when the rule was just written or a label on disk differs from the policy's.
    Each directory above the graphroot that the policy leaves ``default_t`` (``/space``, a
    new mount point) gets a local rule for that one directory, type ``var_t``, so that
    a confined engine can reach the store; a directory above it whose label on disk differs
    from the policy's (``unlabeled_t`` on a fresh file system) is restored, that directory
    alone. The rules go to the host in one ``semanage import``: one policy rebuild (each
    ``semanage`` call is one), and none written if one fails.

    + graphroot: the store podman is configured to use
    + default: the store whose labels it gets (the distributions' default graphroot)
    + passages: also make the directories above the graphroot searchable (above)

    Nothing on a host without SELinux or with it disabled, nor for the default graphroot.
    Creates the graphroot (0700, as containers/storage does) so it is labelled before podman
    writes into it. A local rule of another kind for the graphroot stops it (OperationError,
    nothing changed). Idempotent.
    """
    state = host.get_fact(SELinux, roots=[graphroot])
    if state.mode not in ENABLED_MODES:
        host.noop(f"SELinux is {state.mode or 'not installed'} on this host: no labels to set")
        return
    if graphroot.rstrip("/") == default.rstrip("/"):
        host.noop(f"{graphroot} is the default store: the policy labels it")
        return

    if not state.semanage:
        yield from packages.install._inner(packages=[SEMANAGE_PACKAGE], include_podman=False)
    foreign = [
        r.spec
        for r in state.rules
        if r.spec == graphroot or r.spec.startswith(graphroot.rstrip("/") + "(")
    ]
    if foreign:
        raise OperationError(
            f"local SELinux file-context rule(s) {', '.join(foreign)} already label {graphroot}; "
            f"remove them (semanage fcontext -d) so the equivalence with {default} applies"
        )

    current = state.equivalences.get(graphroot)
    relabel = current != default
    rules: list[list[str]] = []  # semanage fcontext's arguments, written in one transaction
    if not state.semanage:
        # Installed in this run: the rules are read on the host, not from the facts.
        yield StringCommand(
            "semanage fcontext -l -C | grep -qxF --",
            QuoteString(f"{graphroot} = {default}"),
            "|| semanage fcontext -a -e",
            QuoteString(default),
            QuoteString(graphroot),
        )
    elif current is None:
        rules.append(["-a", "-e", default, graphroot])
    elif current != default:
        rules.append(["-m", "-e", default, graphroot])

    label = state.labels.get(graphroot.rstrip("/") or "/")
    if label is None or label.actual is None:
        yield StringCommand("mkdir -p -m 0700 --", QuoteString(graphroot))
        relabel = True
    restore = _passages(state, rules) if passages else []
    yield from file_contexts(rules)
    for path in restore:
        yield StringCommand("restorecon --", QuoteString(path))
    changed = len(rules) + len(restore)
    differing = sorted(
        p for p, lbl in state.labels.items() if label_differs(lbl.actual, lbl.expected)
    )
    if not relabel and not differing:
        if not changed:
            host.noop(f"{graphroot} has the labels of {default} (equivalence rule in place)")
        return
    yield StringCommand("restorecon -R --", QuoteString(graphroot))


def passage_spec(path: str) -> str:
    """The file-context spec (a regular expression) that names ``path`` alone."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", path)


def file_contexts(rules: list[list[str]]):
    """The commands that write local file-context ``rules`` (``semanage fcontext``'s
    arguments): one ``semanage import`` for them all, a single policy rebuild in one
    transaction (nothing written if a line fails), where ``semanage import`` reads each
    argument whole; else one ``semanage fcontext`` per rule."""
    if len(rules) > 1 and all(_IMPORT_SAFE.fullmatch(arg) for rule in rules for arg in rule):
        lines = [" ".join(["fcontext", *rule]) for rule in rules]
        yield StringCommand(
            "printf '%s\\n'", *(QuoteString(line) for line in lines), "| semanage import"
        )
        return
    for rule in rules:
        yield StringCommand("semanage fcontext", *(QuoteString(arg) for arg in rule))


def _passages(state, rules: list[list[str]]) -> list[str]:
    """The directories above the graphroot, from the top: a ``var_t`` rule (added to
    ``rules``) for each the policy leaves ``default_t``. Returns the directories to restore:
    those, and each whose type on disk is not the policy's."""
    specs = {r.spec for r in state.rules}
    restore = []
    for path in sorted(state.parents, key=len):
        lbl = state.parents[path]
        written = (
            context_type(lbl.expected or "") == UNNAMED_TYPE and passage_spec(path) not in specs
        )
        if written:
            rules.append(["-a", "-t", PASSAGE_TYPE, passage_spec(path)])
        if written or label_differs(lbl.actual, lbl.expected):
            restore.append(path)
    return restore
