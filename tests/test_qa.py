"""The QA criteria (facts/qa.py) on real captured probe output, and the verify reports."""

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from deploys.verify import render_table, report_json, report_junit
from facts.qa import CRITERIA, Check, Probe, ProbeResult, criteria_for, evaluate, run_criteria
from model.host_data import HostData

FIXTURES = Path(__file__).parent / "fixtures" / "qa"


def _probe(path: Path) -> ProbeResult:
    return Probe().process(path.read_text().splitlines())


def _captured(host_dir: str):
    """{command: ProbeResult} from files named <criterion>.<key>.txt."""
    by_id = {c.id: c for c in CRITERIA}
    results = {}
    for path in (FIXTURES / host_dir).glob("*.txt"):
        criterion_id, key = path.stem.split(".", 1)
        results[by_id[criterion_id].commands[key]] = _probe(path)
    return results


def test_probe_parses_status_and_output():
    assert Probe().process(["Docker version 28.2.2, build e6534b4", "@@rc=0"]) == ProbeResult(
        0, "Docker version 28.2.2, build e6534b4"
    )
    assert Probe().process([]) == ProbeResult(127, "")
    assert "echo '@@rc='$?" in Probe().command("docker ps")


def test_every_criterion_has_a_hint_and_unique_id():
    ids = [c.id for c in CRITERIA]
    assert len(ids) == len(set(ids))
    assert all(c.hint and (c.commands or c.commands_for) for c in CRITERIA)


def test_criteria_follow_host_class_and_data():
    server = HostData(host_class="server", socket_enabled=True, nvidia_enabled=True)
    workstation = HostData(host_class="workstation", docker_compat="none")
    desktop = HostData(host_class="desktop")
    assert {"api-socket", "gpu-cdi", "graphroot"} <= {c.id for c in criteria_for(server)}
    assert "docker-run" not in {c.id for c in criteria_for(server)}
    ws = {c.id for c in criteria_for(workstation)}
    assert "docker-run" in ws and "compat-layer" not in ws and "gpu-cdi" not in ws
    assert {c.id for c in criteria_for(desktop)} == {"docker-desktop", "desktop-untouched"}


def test_desktop_without_a_running_docker_desktop_fails_with_a_hint():
    # Captured on a machine with Docker's CLI but no daemon.
    results = {
        "docker ps": _probe(FIXTURES / "devhost/docker-ps.txt"),
        "docker --version": _probe(FIXTURES / "devhost/docker-version.txt"),
    }
    checks = run_criteria(HostData(host_class="desktop"), results.__getitem__)
    by_id = {c.id: c for c in checks}
    assert not by_id["docker-desktop"].passed
    assert by_id["docker-desktop"].found.startswith("Cannot connect to the Docker daemon")
    assert "Start Docker Desktop" in by_id["docker-desktop"].hint
    assert by_id["desktop-untouched"].passed
    assert by_id["desktop-untouched"].hint == ""


def test_run_criteria_runs_each_command_once():
    calls = []

    def run(command):
        calls.append(command)
        return ProbeResult(1, "")

    run_criteria(HostData(host_class="server", socket_enabled=True), run)
    assert len(calls) == len(set(calls))
    assert calls.count("podman info --format json") == 1


REPORT = {
    "srv": [
        Check(
            "graphroot",
            "graphRoot as declared",
            "/space/x",
            "/var/lib/containers/storage",
            False,
            "Converge storage.",
        ),
        Check(
            "podman-installed", "Podman installed", "podman version …", "podman version 4.3.1", True
        ),
    ],
    "ws": [Check("docker-cli", "docker --version shows Podman", "podman", "podman", True)],
}


def test_report_table_json_and_junit():
    table = render_table("srv", REPORT["srv"])
    assert table.splitlines()[0] == "srv: 1/2 checks passed"
    assert "FAIL" in table and "Converge storage." in table
    data = json.loads(report_json(REPORT))
    assert data["passed"] is False
    assert data["hosts"]["srv"][0]["found"] == "/var/lib/containers/storage"
    root = ET.fromstring(report_junit(REPORT))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["srv"].get("failures") == "1" and suites["ws"].get("failures") == "0"
    failure = suites["srv"].find("testcase[@name='graphroot']/failure")
    assert failure.get("message") == "expected /space/x, found /var/lib/containers/storage"


def test_evaluate_clears_the_hint_when_passing():
    criterion = next(c for c in CRITERIA if c.id == "docker-cli")
    ok = evaluate(criterion, {"docker": ProbeResult(0, "podman version 4.3.1")}, HostData())
    assert ok.passed and ok.hint == ""


GUESTS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name != "devhost")


@pytest.mark.parametrize("guest", GUESTS)
def test_converged_guest_output_passes_every_criterion(guest):
    meta = json.loads((FIXTURES / guest / "host.json").read_text())
    cfg = HostData.model_validate(meta["data"])
    results = _captured(guest)
    # Criteria added after this guest's capture are named in host.json, never guessed.
    later = set(meta.get("not_captured", []))
    checks = run_criteria(cfg, lambda command: results.get(command, ProbeResult(127, "")))
    failed = {c.id: c.found for c in checks if not c.passed and c.id not in later}
    assert failed == meta["expected_failures"]
    captured = {c.id for c in criteria_for(cfg) if all(v in results for v in c.commands.values())}
    assert not captured & later, "a criterion named not_captured has its capture: drop the name"


def test_registry_logins_one_command_per_credential_as_its_user():
    loc = "10.0.2.2:46365"  # the registry of the captures (tests/fixtures/qa/README.md)
    cfg = HostData.model_validate(
        {
            "rootless_users": [{"name": "vagrant"}],
            "registries": {
                "registries": [{"prefix": loc}],
                "credentials": [
                    {"registry": loc, "username": "a", "password": {"env": "X"}},
                    {"registry": loc, "user": "vagrant", "present": False},
                ],
            },
        }
    )
    (logins,) = [c for c in criteria_for(cfg) if c.id == "registry-logins"]
    # A removed credential is not checked; root's runs as root, without a terminal.
    assert logins.commands == {f"{loc} (root)": f"podman login {loc} </dev/null"}
    assert "registry-logins" not in {c.id for c in criteria_for(HostData())}
    # podman 5.4.2's real answers (tests/realhost/test_registries.py): the deployed login, a
    # stored login the registry refuses, and no stored login (podman prompts, stdin is empty).
    accepted = _probe(FIXTURES / "registry-logins.accepted.txt")
    refused = _probe(FIXTURES / "registry-logins.refused.txt")
    absent = _probe(FIXTURES / "registry-logins.not-logged-in.txt")
    assert (accepted.rc, refused.rc, absent.rc) == (0, 125, 125)
    check = evaluate(logins, {"a (root)": accepted, "b (vagrant)": refused, "c (x)": absent}, cfg)
    assert not check.passed
    assert check.found == (
        "b (vagrant): Username (vagrant-puller): Error: getting username and password: "
        "reading username: EOF; c (x): Username: Error: getting username and password: "
        "reading username: EOF"
    )
    ok = evaluate(logins, {"a (root)": accepted}, cfg)
    assert ok.passed and ok.found == "1 registry login(s) accepted"


def _devhost_check(criterion_id: str, key: str, cfg: HostData):
    criterion = next(c for c in criteria_for(cfg) if c.id == criterion_id)
    return evaluate(criterion, {key: _probe(FIXTURES / f"devhost/{criterion_id}.{key}.txt")}, cfg)


def test_selinux_criteria_without_selinux_and_a_missing_nvidia_repository():
    # Captured on the development machine: Debian without SELinux tools, no NVIDIA source.
    cfg = HostData(
        host_class="server", graphroot="/space/containers/engine/podman", nvidia_enabled=True
    )
    label = _devhost_check("selinux-store-label", "label", cfg)
    assert label.passed and label.found == "SELinux not installed: nothing to label"
    enforcing = _devhost_check("selinux-enforcing-container", "run", cfg)
    assert enforcing.passed and enforcing.found == "SELinux not installed: not enforcing"
    repo = _devhost_check("nvidia-repository", "sources", cfg)
    assert not repo.passed and repo.found == "no source file names it" and repo.hint
    assert "nvidia-repository" not in {c.id for c in criteria_for(HostData(nvidia_enabled="auto"))}
