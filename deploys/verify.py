"""Verify hosts against the standard's QA criteria (§7.3, §8): read-only, no operations.

    pyinfra inventories/home.py deploys/verify.py [--limit motoko]

Prints a table per host (check, expected, found, pass/warn/FAIL, then one line per finding)
once every host is checked, writes ``reports/verify.json`` and ``reports/verify.xml`` (JUnit)
on the controller (the folder: ``PODMAN_STANDARD_REPORT_DIR``), and exits non-zero when any
check fails. Drift (what runs differs from the data) only warns, unless the host's data says
``podman_verify_strict``. The criteria themselves live in ``facts/qa.py``, shared with the
pytest-testinfra suite.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from xml.etree import ElementTree as ET

import click
from pyinfra.api.exceptions import DeployError

from facts.qa import Check

REPORT_DIR_ENV = "PODMAN_STANDARD_REPORT_DIR"
_RESULTS: dict[int, dict[str, list[Check]]] = {}


class VerifyFailed(DeployError):
    """Some QA check failed on some host."""


def render_table(host_name: str, checks: list[Check]) -> str:
    rows = [("check", "expected", "found", "result")] + [
        (c.title, c.expected, c.found, c.result) for c in checks
    ]
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(4)]

    def line(row):
        return "  ".join(cell[:48].ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    warned = sum(not c.passed and not c.failed for c in checks)
    out = [
        f"{host_name}: {sum(c.passed for c in checks)}/{len(checks)} checks passed"
        + (f", {warned} warning(s)" if warned else ""),
        line(rows[0]),
    ]
    out += [line(r) for r in rows[1:]]
    for c in checks:
        out += [f"  {c.id}: {detail}" for detail in c.details]
    out += [f"  {c.title}: {c.hint}" for c in checks if not c.passed and c.hint]
    return "\n".join(out)


def report_json(results: dict[str, list[Check]]) -> str:
    return json.dumps(
        {
            "passed": not any(c.failed for checks in results.values() for c in checks),
            "warnings": sum(
                not c.passed and not c.failed for checks in results.values() for c in checks
            ),
            "hosts": {
                name: [asdict(c) | {"result": c.result} for c in checks]
                for name, checks in sorted(results.items())
            },
        },
        indent=2,
    )


def report_junit(results: dict[str, list[Check]]) -> str:
    suites = ET.Element("testsuites", name="podman-standard verify")
    for name, checks in sorted(results.items()):
        failures = sum(c.failed for c in checks)
        suite = ET.SubElement(
            suites, "testsuite", name=name, tests=str(len(checks)), failures=str(failures)
        )
        for c in checks:
            case = ET.SubElement(suite, "testcase", classname=name, name=c.id)
            lines = list(c.details) + ([c.hint] if c.hint else [])
            if c.failed:
                failure = ET.SubElement(
                    case, "failure", message=f"expected {c.expected}, found {c.found}"
                )
                failure.text = "\n".join(lines)
            elif not c.passed:  # JUnit has no warning: the case passes, its output says it
                out = ET.SubElement(case, "system-out")
                out.text = f"warning: expected {c.expected}, found {c.found}\n" + "\n".join(lines)
            elif c.details:
                ET.SubElement(case, "system-out").text = "\n".join(c.details)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def finish(results: dict[str, list[Check]], report_dir: Path) -> None:
    """Print every host's table, write the reports, raise VerifyFailed on any failure."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "verify.json").write_text(report_json(results) + "\n")
    (report_dir / "verify.xml").write_text(report_junit(results) + "\n")
    for name, checks in sorted(results.items()):
        click.echo("\n" + render_table(name, checks), err=True)
    failed = {n: [c.id for c in cs if c.failed] for n, cs in results.items()}
    failed = {n: ids for n, ids in failed.items() if ids}
    click.echo(f"\nreports: {report_dir / 'verify.json'}, {report_dir / 'verify.xml'}", err=True)
    if failed:
        detail = "; ".join(f"{n}: {', '.join(ids)}" for n, ids in sorted(failed.items()))
        raise VerifyFailed(f"QA checks failed on {len(failed)} host(s): {detail}")


def verify_this_host() -> None:
    """Check the current host; the last host to finish prints and writes the reports."""
    from pyinfra import host, state

    from facts.qa import Probe, run_criteria
    from model import current_host_data

    cfg = current_host_data()
    checks = run_criteria(cfg, lambda command: host.get_fact(Probe, command=command))
    results = _RESULTS.setdefault(id(state), {})
    results[host.name] = checks
    if len(results) == len(list(state.inventory.get_active_hosts())):
        finish(results, Path(os.environ.get(REPORT_DIR_ENV, "reports")))


if __name__ == "builtins":  # executed by pyinfra as a deploy file, once per host
    # Through the imported module, so every host's results land in the one _RESULTS.
    from deploys.verify import verify_this_host as _verify

    _verify()
