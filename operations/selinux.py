"""SELinux labels for a moved container store (standard §2.4, §5.2 on an SELinux host)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from facts.selinux import ENABLED_MODES, SELinux, label_differs
from operations import packages

DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
# semanage comes with the policy tools' Python part, same package name in both families.
SEMANAGE_PACKAGE = "policycoreutils-python-utils"


@operation()
def store_labels(graphroot: str, default: str = DEFAULT_GRAPHROOT):
    """
    Give a graphroot outside ``default`` the labels of ``default`` on an SELinux host: the
    file-context equivalence rule ``semanage fcontext -a -e DEFAULT GRAPHROOT`` (what
    container-selinux documents for a moved store), then ``restorecon -R`` on it, which
    runs only when the rule was just written or a label on disk differs from the policy's.

    + graphroot: the store podman is configured to use
    + default: the store whose labels it gets (the distributions' default graphroot)

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
        yield StringCommand("semanage fcontext -a -e", QuoteString(default), QuoteString(graphroot))
    elif current != default:
        yield StringCommand("semanage fcontext -m -e", QuoteString(default), QuoteString(graphroot))

    label = state.labels.get(graphroot.rstrip("/") or "/")
    if label is None or label.actual is None:
        yield StringCommand("mkdir -p -m 0700 --", QuoteString(graphroot))
        relabel = True
    differing = sorted(
        p for p, lbl in state.labels.items() if label_differs(lbl.actual, lbl.expected)
    )
    if not relabel and not differing:
        host.noop(f"{graphroot} has the labels of {default} (equivalence rule in place)")
        return
    yield StringCommand("restorecon -R --", QuoteString(graphroot))
