"""Operations: facts in, commands out — one case file per behaviour (pyinfra's own style)."""

import os
from pathlib import Path

import pytest
from pyinfra_testing import util
from pyinfra_testing.operations import make_operation_tests

import facts.registries
from facts.services import ServicesState, ServicesStateValue

TESTS_BASE = Path(__file__).parent / "operations"


def _fact_getattr(self, key):
    # pyinfra-testing gives attribute access to fact values fetched with arguments
    # only; ours are dataclasses read by attribute, with or without arguments.
    data = self.__dict__.get("data")
    if isinstance(data, dict) and key in data:
        return util._wrap_fact_value(data[key])
    return getattr(data, key)


util.FakeFact.__getattr__ = _fact_getattr
util.FakeFact.__iter__ = lambda self: iter(util._wrap_fact_value(self.data))
util.FakeFact.__len__ = lambda self: len(self.data)
# A fact that is None (tool missing) must be falsy, as the real value is.
util.FakeFact.__bool__ = lambda self: self.data is not None and bool(self.data)

_fake_get_fact = util.FakeHost.get_fact


def _get_fact(self, fact_cls, *args, **kwargs):
    # ServicesState's value is a tree of dataclasses: the cases write its to_json form.
    value = _fake_get_fact(self, fact_cls, *args, **kwargs)
    if fact_cls is ServicesState:
        return ServicesStateValue.from_json(dict(value))
    return value


util.FakeHost.get_fact = _get_fact

# The controller-side secret the services.service cases read ({"env": ...}); the cases that
# need an unset one use PODMAN_STANDARD_TEST_UNSET.
os.environ["PODMAN_STANDARD_TEST_SECRET"] = 's3cr"et $x %h'
os.environ.pop("PODMAN_STANDARD_TEST_UNSET", None)



@pytest.fixture(autouse=True)
def _auth_script_by_name(monkeypatch):
    # The cases show facts/auth_json.py (tested on its own and on real hosts) by name, not
    # its whole source: what they check is where it runs, as whom, and what reaches it.
    monkeypatch.setattr(facts.registries, "AUTH_SCRIPT", "AUTH_SCRIPT")


for _path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_path] = make_operation_tests("operations", _path, TESTS_BASE / _path)
