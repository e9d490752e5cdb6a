"""The standard's QA criteria (§8), one test per criterion and host; the same definitions
``deploys/verify.py`` uses (facts/qa.py)."""

from facts.qa import ProbeResult, evaluate


def test_criterion(qa_host, qa_case):
    _, cfg, _, criterion = qa_case
    results = {}
    for name, command in criterion.commands.items():
        out = qa_host.run(command)
        results[name] = ProbeResult(rc=out.rc, output=(out.stdout + out.stderr).strip())
    check = evaluate(criterion, results, cfg)
    assert check.passed, (
        f"{check.title}: expected {check.expected}, found {check.found}. {check.hint}"
    )
