"""The run's exit status under ``pyinfra --no-wait``.

pyinfra 3 (checked on 3.10) runs each host's operations in one greenlet under ``--no-wait`` and
stops a host at its first error, but never counts that host as failed: the run prints the error
and exits 0. A deploy in CI, or an operator's script, would take a failed run for a good one.
``count_failures`` adds a state callback that marks such a host failed, so ``--no-wait`` exits 1
like a run without it. An error the operation ignores (``_ignore_errors``) fails nothing.
"""

from __future__ import annotations

from pyinfra.api.state import BaseStateCallback

_MARK = "_podman_standard_counts_failures"


class _FailedHosts(BaseStateCallback):
    @staticmethod
    def operation_host_error(state, host, op_hash, retry_count=0, max_retries=0):
        try:
            arguments = state.get_op_data_for_host(host, op_hash).global_arguments
        except KeyError:
            arguments = {}
        if not arguments.get("_ignore_errors"):
            state.failed_hosts.add(host)


def count_failures(state) -> None:
    """Add the callback to ``state`` once (a mark on the state itself)."""
    if getattr(state, _MARK, False) or not isinstance(
        getattr(state, "callback_handlers", None), list
    ):
        return  # marked already, or not an initialised pyinfra state
    state.add_callback_handler(_FailedHosts())
    setattr(state, _MARK, True)


def count_failures_of_current_run() -> None:
    """The same for the run in progress, where there is one (the CLI sets its state before it
    loads a deploy file or an ad hoc operation's module)."""
    from pyinfra.context import ctx_state

    if ctx_state.isset():
        count_failures(ctx_state.get())
