"""The progress lines of long steps (operations/_common.py ``timed``): what the run prints
when a step starts and when it ends, and that a step without commands prints nothing."""

import logging
from types import SimpleNamespace

from pyinfra.api import FunctionCommand, StringCommand

from operations import _common
from operations._common import timed


def test_a_step_is_its_commands_between_a_start_and_an_end_line(caplog, monkeypatch):
    command = StringCommand("apt-get", "install", "podman")
    step = timed("install 1 package(s): podman", command)
    assert step[1] is command and len(step) == 3
    assert all(isinstance(c, FunctionCommand) for c in (step[0], step[2]))

    clock = iter([100.0, 292.4])
    monkeypatch.setattr(_common.time, "monotonic", lambda: next(clock))
    host = SimpleNamespace(print_prefix="[guest] ")
    caplog.set_level(logging.INFO, logger="pyinfra")
    for callback in (step[0], step[2]):  # as pyinfra runs a FunctionCommand: (state, host, *args)
        callback.function(None, host, *callback.args, **callback.kwargs)
    assert [r.getMessage() for r in caplog.records] == [
        "[guest] install 1 package(s): podman: started",
        "[guest] install 1 package(s): podman: done in 3 min 12 s",
    ]


def test_a_short_step_in_seconds_and_steps_on_two_hosts_apart(caplog, monkeypatch):
    clock = iter([10.0, 11.0, 14.25, 31.0])
    monkeypatch.setattr(_common.time, "monotonic", lambda: next(clock))
    a, b = SimpleNamespace(print_prefix="[a] "), SimpleNamespace(print_prefix="[b] ")
    start, _, end = timed("pull docker.io/library/redis:7", StringCommand("podman", "pull"))
    caplog.set_level(logging.INFO, logger="pyinfra")
    start.function(None, a, *start.args)
    start.function(None, b, *start.args)
    end.function(None, a, *end.args)
    end.function(None, b, *end.args)
    done = [r.getMessage() for r in caplog.records if "done" in r.getMessage()]
    assert done == [
        "[a] pull docker.io/library/redis:7: done in 4.2 s",
        "[b] pull docker.io/library/redis:7: done in 20.0 s",
    ]


def test_no_commands_no_lines():
    assert timed("install 0 package(s)", []) == []
    assert timed("generator", iter(())) == []
