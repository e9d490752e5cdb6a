"""operations._common.shared_fact under pyinfra's own execution (@fake connector): a fact read
by an operation that changed nothing is answered again, without a command, for the operation
right after it on that host; a change, or any other operation in between, and it is read
again."""

from pyinfra import host
from pyinfra.api import Config, Inventory, State, StringCommand, operation
from pyinfra.api.connect import connect_all
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.server import Hostname

from operations._common import keep_shared_facts, shared_fact

READ = "uname -n"  # pyinfra's Hostname fact


@operation()
def reads(change: bool = False):
    """Reads the shared fact; yields a command when ``change``, else keeps what it read."""
    shared_fact(Hostname)
    if change:
        yield StringCommand("touch", "/tmp/changed")
    else:
        keep_shared_facts()
        host.noop("nothing to do")


@operation()
def other():
    yield StringCommand("true")


def _executed(plan) -> list[str]:
    inventory = Inventory((["@fake/one"], {"fake_delay": 0, "fake_delay_jitter": 0}))
    state = State(inventory, Config(), check_for_changes=False)
    connect_all(state)
    only = inventory.get_host("@fake/one")
    with ctx_state.use(state), ctx_host.use(only):
        for step in plan:
            step()
    run_ops(state)
    return [c for c in only.connector.executed_commands if READ in c]


def test_operations_that_change_nothing_read_once():
    assert len(_executed([reads, reads, reads])) == 1


def test_a_change_makes_the_next_operation_read_again():
    plan = [reads, lambda: reads(change=True), reads, reads]
    assert len(_executed(plan)) == 2


def test_another_operation_in_between_makes_it_read_again():
    assert len(_executed([reads, other, reads])) == 2
