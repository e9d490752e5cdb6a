"""deploys/verify.py and the testinfra QA suite on converged guests; then a guest broken on
purpose (Docker daemon installed and running, graphRoot changed, socket stopped) reports
exactly those failures. Runs last among the modules using the converged guests: it breaks one."""

import json
import subprocess

import pytest

from tests.realhost.conftest import qa_suite
from tests.realhost.test_converge import SERVER, WORKSTATION

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 2  # both cores: runs alone (tests/realhost/tier.py)

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _verify(testbed, tmp_path, *args):
    env = {"PODMAN_STANDARD_REPORT_DIR": str(tmp_path)}
    rc, _, stderr = testbed.pyinfra(*args, deploy="deploys/verify.py", env=env)
    report = json.loads((tmp_path / "verify.json").read_text())
    return rc, report, stderr


def _failed(report, host):
    return sorted(c["id"] for c in report["hosts"][host] if not c["passed"])


def test_verify_passes_on_converged_guests(testbed, converged, tmp_path):
    rc, report, stderr = _verify(testbed, tmp_path)
    assert rc == 0, stderr[-3000:]
    assert report["passed"] is True
    assert {c["id"] for c in report["hosts"][SERVER]} >= {"graphroot", "api-socket", "docker-ps"}
    assert "docker-run" in {c["id"] for c in report["hosts"][WORKSTATION]}
    assert (tmp_path / "verify.xml").read_text().startswith("<?xml")
    assert f"{SERVER}: " in stderr and "checks passed" in stderr


def test_testinfra_suite_passes_on_converged_guests(testbed, converged, ssh_config):
    result = subprocess.run(
        qa_suite([SERVER, WORKSTATION], testbed.inventory_path, ssh_config),
        cwd=REPO,
        env=testbed.pyinfra_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]
    assert "failed" not in result.stdout.splitlines()[-1]


def test_verify_reports_exactly_what_was_broken(testbed, converged, tmp_path):
    guest = testbed.guests[SERVER]
    for command in (
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "docker.io",
        "sudo systemctl enable --now docker.service",
        "sudo sed -i 's#^graphroot = .*#graphroot = \"/var/lib/containers/elsewhere\"#' "
        "/etc/containers/storage.conf",
        "sudo systemctl stop podman.socket",
    ):
        result = guest.run(command, timeout=1800)
        assert result.returncode == 0, (command, result.stderr)
    rc, report, stderr = _verify(testbed, tmp_path, "--limit", SERVER)
    assert rc != 0
    assert _failed(report, SERVER) == ["api-socket", "graphroot", "no-docker-daemon"]
    assert "QA checks failed on 1 host(s)" in stderr
    assert "Migrate the host" in stderr  # the §9 hint is printed with the failure
