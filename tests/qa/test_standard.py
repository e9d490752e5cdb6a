"""The standard's QA criteria (§8), one test per criterion and host; the same definitions
``deploys/verify.py`` uses (facts/qa.py). A drift finding on a host whose data is not
``verify_strict`` is a pytest warning (listed in the summary), as verify prints it."""

import warnings

from facts.qa import ProbeResult, evaluate


class DriftWarning(UserWarning):
    """What runs differs from the host's data (not a failure: the host is not strict)."""


def test_criterion(qa_host, qa_case):
    _, cfg, _, criterion = qa_case
    results = {}
    for name, command in criterion.commands.items():
        out = qa_host.run(command)
        results[name] = ProbeResult(rc=out.rc, output=(out.stdout + out.stderr).strip())
    check = evaluate(criterion, results, cfg)
    findings = "".join(f"\n  {line}" for line in check.details)
    message = f"{check.title}: expected {check.expected}, found {check.found}. {check.hint}"
    assert not check.failed, message + findings
    if not check.passed:
        warnings.warn(DriftWarning(message + findings), stacklevel=1)
