"""The QA criteria (facts/qa.py) on real captured probe output, and the verify reports."""

import hashlib
import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from deploys.verify import render_table, report_json, report_junit
from facts.qa import CRITERIA, Check, Probe, ProbeResult, criteria_for, evaluate, run_criteria
from model.host_data import HostData

FIXTURES = Path(__file__).parent / "fixtures" / "qa"


def _probe(path: Path) -> ProbeResult:
    return Probe().process(path.read_text().splitlines())


def _captured(host_dir: str, cfg: HostData):
    """{command: ProbeResult} from files named <criterion>.<key>.txt (a key's first space
    written '@': ``services-running.ps@vagrant.txt``); a command several criteria run is
    captured once, under the first."""
    by_id = {c.id: c for c in CRITERIA} | {c.id: c for c in criteria_for(cfg)}
    results = {}
    for path in (FIXTURES / host_dir).glob("*.txt"):
        criterion_id, key = path.stem.split(".", 1)
        results[by_id[criterion_id].commands[key.replace("@", " ", 1)]] = _probe(path)
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


GUESTS = sorted(p.parent.name for p in FIXTURES.glob("*/host.json"))
# What a criterion reads from a command several criteria share, where a capture made before it
# lacks that part: drift-images and drift-compose read the files dump's records (image records,
# compose projects' applied records).
READS = {"drift-images": "@@record ", "drift-compose": "@@record "}


def _has_captured(criterion, results) -> bool:
    outputs = [results.get(command) for command in criterion.commands.values()]
    if any(output is None for output in outputs):
        return False
    marker = READS.get(criterion.id)
    return marker is None or any(marker in output.output for output in outputs)


@pytest.mark.parametrize("guest", GUESTS)
def test_captured_guest_output_gives_the_expected_checks(guest):
    meta = json.loads((FIXTURES / guest / "host.json").read_text())
    cfg = HostData.model_validate(meta["data"])
    results = _captured(guest, cfg)
    # Criteria newer than a capture: named in its host.json, and truly without their output.
    later = set(meta.get("not_captured", []))
    for criterion in criteria_for(cfg):
        assert _has_captured(criterion, results) != (criterion.id in later), criterion.id
    checks = [
        evaluate(c, {k: results[v] for k, v in c.commands.items()}, cfg)
        for c in criteria_for(cfg)
        if c.id not in later
    ]
    assert {c.id: c.found for c in checks if c.failed} == meta["expected_failures"]
    warned = {c.id: c.found for c in checks if not c.passed and not c.failed}
    assert warned == meta.get("expected_warnings", {})


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


# ---- services, users, drift, exposure (captured on the testbed: see each host.json) ----------


def _drift_case(guest: str, **changes):
    meta = json.loads((FIXTURES / guest / "host.json").read_text())
    cfg = HostData.model_validate(meta["data"] | changes)
    results = _captured(guest, cfg)
    later = set(meta.get("not_captured", []))
    return cfg, {
        c.id: evaluate(c, {k: results[v] for k, v in c.commands.items()}, cfg)
        for c in criteria_for(cfg)
        if c.id not in later
    }


def test_drift_warns_unless_the_host_is_strict():
    _, checks = _drift_case("trixie-drift")
    drift = {"drift-containers", "drift-files", "drift-ports"}
    assert {i for i, c in checks.items() if not c.passed and not c.failed} == drift
    _, strict = _drift_case("trixie-drift", verify_strict=True)
    assert {i for i, c in strict.items() if c.failed} == drift | {"services-running"}
    # Not drift: §8.1's lines fail whatever the data says.
    assert checks["services-running"].failed and checks["services-running"].details == (
        "worker: unit failed (failed), container missing: see `systemctl status worker.service`",
    )


def test_drift_names_each_finding_with_what_to_do():
    _, checks = _drift_case("bookworm-drift")
    assert checks["drift-containers"].details == (
        "root's extra (docker.io/library/alpine:latest, running) is not declared: declare it in "
        "podman_services, or remove it (`podman rm -f extra`)",
        "vagrant's exposed (docker.io/library/nginx:alpine, running) is not declared: declare "
        "it in podman_services, or remove it (`podman rm -f exposed` as vagrant)",
    )
    (edited,) = checks["drift-files"].details
    assert edited.startswith("/etc/systemd/system/web.service: changed on the host: ")
    assert "'-\\t--publish 127.0.0.1:8081:80/tcp \\\\' / '+\\t--publish 8081:80/tcp \\\\'" in edited
    # Bound wider than declared: a failure, strict or not, saying what the data said.
    assert checks["exposure"].failed
    assert checks["exposure"].details[0] == (
        "root's web 0.0.0.0:8081->80/tcp is bound to all interfaces, declared on 127.0.0.1: "
        "converge (deploys/services.py) re-creates it"
    )
    listing = checks["exposure"].details[1:]
    assert "vagrant's exposed 0.0.0.0:8090->80/tcp: all interfaces, NOT declared" in listing
    assert (
        "vagrant's userweb 0.0.0.0:8082->80/tcp: all interfaces, declared (no host_ip: all "
        "interfaces)" in listing
    )
    assert "root's podman.socket listens on /run/podman/podman.sock" in listing
    assert checks["drift-ports"].details == (
        "vagrant's exposed publishes 0.0.0.0:8090->80/tcp (all interfaces) that the data does "
        "not declare: declare it (with host_ip) or stop publishing it",
    )


def test_a_clean_converge_has_no_drift_and_lists_its_exposure():
    for guest in ("bookworm-services", "trixie-services"):
        _, checks = _drift_case(guest)
        assert all(c.passed for c in checks.values()), guest
        assert checks["exposure"].found == "3 published (1 on all interfaces)"
        assert (
            "vagrant's devstack_web_1 127.0.0.1:8088->80/tcp: one address, declared (compose "
            "project devstack's file)" in checks["exposure"].details
        )
        assert checks["services-running"].found == "3/3 active and running"
        assert checks["timers-scheduled"].found == "1/1 scheduled"
        assert checks["compose-projects"].found == "1/1 up"


# `systemctl show` of a timer whose (oneshot) service runs: SubState running, no next elapse.
# Captured on a Debian 12 testbed guest (systemd 252), cap-tick.timer (OnCalendar=*:*:0/30)
# starting `sleep 40`.
TIMER_RUNNING = Path(__file__).parent / "fixtures" / "systemd" / "timer-running.bookworm.txt"


def _with_running_timer(monkeypatch, tmp_path, sub_state: str = "running"):
    """The trixie-services case with its worker-tick.timer block replaced by the captured
    running timer's block (renamed; its SubState set to ``sub_state``): timers-scheduled."""
    running = TIMER_RUNNING.read_text().split("\n\n")[1]  # the timer's block
    assert "SubState=running" in running and "NextElapseUSecRealtime=\n" in running
    block = running.replace("Id=cap-tick.timer", "Id=worker-tick.timer").replace(
        "SubState=running", f"SubState={sub_state}"
    )
    case = tmp_path / "trixie-services"
    case.mkdir()
    for path in (FIXTURES / "trixie-services").iterdir():
        (case / path.name).write_text(path.read_text())
    units = case / "services-running.units@root.txt"
    text = units.read_text()
    start = text.index("NextElapseUSecRealtime=")
    end = text.index("@@rc=")
    assert "Id=worker-tick.timer" in text[start:end]
    units.write_text(text[:start] + block.rstrip("\n") + "\n" + text[end:])
    monkeypatch.setitem(globals(), "FIXTURES", tmp_path)
    return _drift_case("trixie-services")[1]["timers-scheduled"]


def test_a_timer_whose_service_runs_now_counts_as_scheduled(monkeypatch, tmp_path):
    check = _with_running_timer(monkeypatch, tmp_path)
    assert check.passed and check.found == "1/1 scheduled"


def test_an_active_timer_with_no_next_run_that_is_not_running_fails(monkeypatch, tmp_path):
    # An elapsed timer (a monotonic one that fired once) is active and has no next run.
    check = _with_running_timer(monkeypatch, tmp_path, sub_state="elapsed")
    assert not check.passed
    assert check.details == (
        "worker-tick.timer: active (elapsed), next run none: "
        "`systemctl list-timers worker-tick.timer`",
    )


def test_drift_from_data_that_changed_since_the_converge():
    data = json.loads((FIXTURES / "trixie-services" / "host.json").read_text())["data"]
    services = data["services"]
    web = services[0] | {
        "image": "docker.io/library/nginx:1.27",
        "ports": services[0]["ports"] + [{"host": 8443, "container": 443, "host_ip": "::1"}],
    }
    _, checks = _drift_case("trixie-services", services=[web, services[2]])
    assert checks["drift-containers"].details == (
        "root's web runs docker.io/library/nginx:alpine, the data says "
        "docker.io/library/nginx:1.27: converge (deploys/services.py) to re-create it",
        "root's worker (docker.io/library/alpine:latest, running) is not declared: declare it "
        "in podman_services, or remove it (`podman rm -f worker`)",
    )
    files = checks["drift-files"].details
    assert files[0].startswith("/etc/containers/systemd/web.container: changed on the host: ")
    assert files[1:] == (
        "/etc/containers/systemd/worker.container: written by podman-standard for nothing "
        "declared now: declare its service with present: false to remove it",
        "/etc/systemd/system/worker-tick.service: written by podman-standard for nothing "
        "declared now: declare its service with present: false to remove it",
        "/etc/systemd/system/worker-tick.timer: written by podman-standard for nothing "
        "declared now: declare its service with present: false to remove it",
    )
    assert checks["drift-ports"].details == (
        "root's web: declared port [::1]:8443:443/tcp is not published",
    )


def test_unhealthy_service_fails_with_how_to_see_the_check():
    cfg = HostData.model_validate(
        json.loads((FIXTURES / "trixie-services" / "host.json").read_text())["data"]
    )
    (health,) = [c for c in criteria_for(cfg) if c.id == "services-health"]
    ps = _probe(FIXTURES / "probes" / "trixie-unhealthy.ps.txt")
    check = evaluate(health, {"ps root": ps}, cfg)
    assert check.failed and check.found == "0/1 healthy"
    assert check.details == (
        "web: unhealthy: `podman healthcheck run web` shows the check's output",
    )


def test_user_socket_answers_ping_where_the_data_asks_for_one():
    from types import SimpleNamespace

    assert "user-sockets" not in {
        c.id for c in criteria_for(HostData(rootless_users=[{"name": "vagrant"}]))
    }
    # RootlessUser.docker_api (the user's podman.socket) comes with the workstation pattern;
    # a stand-in with the field gives the criterion its command.
    cfg = HostData.model_construct(
        host_class="workstation",
        rootless_users=[SimpleNamespace(name="vagrant", docker_api=True)],
        services=[],
        compose_projects=[],
    )
    (sockets,) = [c for c in criteria_for(cfg) if c.id == "user-sockets"]
    assert list(sockets.commands) == ["vagrant"]
    assert "runuser -u vagrant" in sockets.commands["vagrant"]
    assert "/_ping" in sockets.commands["vagrant"]
    ok = _probe(FIXTURES / "probes" / "trixie-user-ping.ok.txt")
    assert evaluate(sockets, {"vagrant": ok}, cfg).passed
    stopped = _probe(FIXTURES / "probes" / "trixie-user-ping.stopped.txt")
    check = evaluate(sockets, {"vagrant": stopped}, cfg)
    assert check.failed
    assert check.found == (
        "vagrant: /_ping ConnectionRefusedError: [Errno 111] Connection refused: "
        "`systemctl --user -M vagrant@ status podman.socket`"
    )


def _commands(services: int, users: int) -> set[str]:
    names = [f"u{i}" for i in range(users)]
    svcs = [
        {
            "name": f"s{i}",
            "image": "docker.io/library/nginx:alpine",
            "user": names[(i // 2) % users] if users and i % 2 else None,
            "healthcheck": {"command": "true"},
            "timers": [{"name": "t", "on_calendar": "daily", "command": ["true"]}],
        }
        for i in range(services)
    ]
    cfg = HostData.model_validate(
        {"host_class": "server", "rootless_users": [{"name": n} for n in names], "services": svcs}
    )
    return {cmd for c in criteria_for(cfg) for cmd in c.commands.values()}


def test_verify_costs_a_fixed_number_of_commands_per_owner():
    assert len(_commands(2, 1)) == len(_commands(12, 1))
    assert len(_commands(4, 2)) == len(_commands(12, 2))
    # One more user: the same fixed set once more (podman ps, docker ps, units, files, socket).
    assert len(_commands(4, 2)) - len(_commands(4, 1)) == 5


def test_warnings_in_the_table_json_and_junit():
    warned = Check(
        "drift-files",
        "Managed files",
        "as rendered",
        "/etc/x",
        False,
        "Put it in the data.",
        "warn",
        ("/etc/x: changed on the host",),
    )
    results = {"srv": [warned, REPORT["srv"][1]]}
    table = render_table("srv", results["srv"])
    assert table.splitlines()[0] == "srv: 1/2 checks passed, 1 warning(s)"
    assert " warn" in table and "FAIL" not in table
    assert "  drift-files: /etc/x: changed on the host" in table
    data = json.loads(report_json(results))
    assert data["passed"] is True and data["warnings"] == 1
    assert data["hosts"]["srv"][0]["result"] == "warn"
    suite = ET.fromstring(report_junit(results)).find("testsuite")
    assert suite.get("failures") == "0"
    out = suite.find("testcase[@name='drift-files']/system-out").text
    assert out.startswith("warning: expected as rendered, found /etc/x\n/etc/x: changed")


def test_finish_fails_only_for_failures(tmp_path):
    from deploys.verify import VerifyFailed, finish

    warned = Check("drift-files", "t", "e", "f", False, "h", "warn")
    finish({"srv": [warned]}, tmp_path)  # a warning alone: no failure
    with pytest.raises(VerifyFailed, match="srv: drift-files"):
        finish({"srv": [Check("drift-files", "t", "e", "f", False, "h", "fail")]}, tmp_path)


def test_the_testinfra_suite_warns_for_drift_and_fails_for_failures():
    from types import SimpleNamespace

    from tests.qa.test_standard import DriftWarning, test_criterion

    cfg, _ = _drift_case("trixie-drift")
    results = _captured("trixie-drift", cfg)
    by_command = {command: result for command, result in results.items()}

    def run(command):
        result = by_command[command]
        return SimpleNamespace(rc=result.rc, stdout=result.output, stderr="")

    host = SimpleNamespace(run=run)
    by_id = {c.id: c for c in criteria_for(cfg)}
    with pytest.warns(DriftWarning, match="root's extra"):
        test_criterion(host, (None, cfg, True, by_id["drift-containers"]))
    with pytest.raises(AssertionError, match="worker: unit failed"):
        test_criterion(host, (None, cfg, True, by_id["services-running"]))
    strict = cfg.model_copy(update={"verify_strict": True})
    with pytest.raises(AssertionError, match="root's extra"):
        test_criterion(host, (None, strict, True, by_id["drift-containers"]))


# ---- drift against the image record and the declared mounts -------------------------------
# A bench guest's real ServicesState output (tests/fixtures/facts/README.md, guest-debian12):
# its image records (operations/services.py writes them) and `podman ps -a --format json` of
# root's and vagrant's stores (podman 4.3.1), in one capture.
SERVICES_STATE = Path(__file__).parent / "fixtures" / "facts" / "guest-debian12"


def _state_sections(name: str) -> dict[str, str]:
    """{"record <path>": text, "containers <owner>": JSON} of a ServicesState capture."""
    sections, key = {}, None
    for line in (SERVICES_STATE / f"ServicesState.{name}.txt").read_text().splitlines():
        if line.startswith("@@"):
            key = line[2:]
            sections[key] = ""
        elif key:
            sections[key] += line + "\n"
    return {k: (v.split("\n", 1)[1] if k.startswith("record ") else v) for k, v in sections.items()}


def _place_records(tmp_path: Path, records: dict[str, str | None]) -> None:
    """The image records {service: text} under ``tmp_path`` (a service root); None: none."""
    for name, text in records.items():
        path = tmp_path / name / "image-record"
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)


def _run_here(criterion, keys=("files root", "files vagrant")) -> dict[str, ProbeResult]:
    """The criterion's own files dumps, run here by sh as the Probe fact sends them (read
    only; the paths it reads under the service and compose roots are the test's)."""
    results = {}
    for key in keys:
        if key in criterion.commands:
            command = Probe().command(criterion.commands[key])
            done = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
            results[key] = Probe().process(done.stdout.splitlines())
    return results


def _ps(text: str) -> ProbeResult:
    return ProbeResult(0, text)


def _criterion(cfg: HostData, criterion_id: str):
    (criterion,) = [c for c in criteria_for(cfg) if c.id == criterion_id]
    return criterion


def test_services_on_the_image_their_converge_recorded(tmp_path, monkeypatch):
    from bench.run import SECRET_ENV, motoko_like

    monkeypatch.setenv(SECRET_ENV, "bench-only-not-a-secret")
    state = _state_sections("motoko-like-6")
    cfg = HostData(service_root=str(tmp_path), services=motoko_like(6))
    names = [s.name for s in cfg.services]
    _place_records(
        tmp_path, {n: state[f"record /space/containers/apps/{n}/image-record"] for n in names}
    )
    images = _criterion(cfg, "drift-images")
    assert images.drift and "files root" in images.commands
    check = evaluate(images, {"ps root": _ps(state["containers -"])} | _run_here(images), cfg)
    assert check.passed, check.details
    assert (check.expected, check.found) == ("6 containers on their recorded image", "as recorded")


def test_a_container_on_another_image_than_recorded_is_named_with_both_ids(tmp_path):
    """The real records of web (nginx:alpine) and uweb (busybox) swapped: each service's
    container runs another image than its record says, as after a pull and restart by hand;
    then one record missing."""
    state = _state_sections("root-and-rootless")
    web = state["record /space/containers/apps/web/image-record"]
    uweb = state["record /space/containers/apps/uweb/image-record"]
    cfg = HostData(
        service_root=str(tmp_path),
        rootless_users=[{"name": "vagrant"}],
        services=[
            {"name": "web", "image": "docker.io/library/nginx:alpine"},
            {"name": "uweb", "image": "docker.io/library/busybox:latest", "user": "vagrant"},
        ],
    )
    images = _criterion(cfg, "drift-images")
    ps = {"ps root": _ps(state["containers -"]), "ps vagrant": _ps(state["containers vagrant"])}
    _place_records(tmp_path, {"web": uweb, "uweb": web})
    check = evaluate(images, ps | _run_here(images), cfg)
    assert not check.passed and not check.failed  # drift: a warning unless strict
    assert check.found == "root's web; vagrant's uweb"
    assert check.details[0] == (
        "root's web runs image 7dec26ce8666, the last converge recorded 30485221bc53: it was "
        "re-created outside a converge (a pull and restart by hand, podman auto-update): "
        "converge (deploys/services.py) to record it, or set the service's pull policy "
        "(pull: always re-pulls on each converge)"
    )
    assert check.details[1].startswith("vagrant's uweb runs image 30485221bc53, the last ")
    _place_records(tmp_path, {"web": web, "uweb": None})
    check = evaluate(images, ps | _run_here(images), cfg)
    assert check.details == (
        f"vagrant's uweb: no image record ({tmp_path}/uweb/image-record): converge "
        "(deploys/services.py) records the image it runs",
    )
    strict = cfg.model_copy(update={"verify_strict": True})
    assert evaluate(images, ps | _run_here(images), strict).failed


# ---- compose projects against their files and the helper's record --------------------------
HELPER = Path(__file__).resolve().parent.parent / "templates" / "podman-standard-compose.py"


def _helper_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compose_helper", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compose_case(tmp_path, monkeypatch, guest: str, **changes):
    """The guest's data and its vagrant's real `podman ps` (the devstack project's two
    containers), the project's directory under ``tmp_path`` holding the compose file the data
    renders and the record the helper writes after bringing it up from it (its own
    ``service_digests``; the inputs digest as the operation computes it)."""
    from operations.compose import input_paths, inputs_digest, render_compose

    meta = json.loads((FIXTURES / guest / "host.json").read_text())
    cfg = HostData.model_validate(meta["data"] | {"compose_root": str(tmp_path)} | changes)
    (project,) = cfg.compose_projects
    directory = tmp_path / project.name
    directory.mkdir(exist_ok=True)
    compose = directory / "compose.yaml"
    compose.write_text(render_compose(project))
    monkeypatch.chdir(directory)  # the helper reads .env from the project's directory
    digests = {str(compose): hashlib.sha256(compose.read_bytes()).hexdigest()}
    assert input_paths(project, str(directory)) == [str(compose)]
    record = {
        "inputs": inputs_digest(digests),
        "services": _helper_module().service_digests(compose),
    }
    (directory / ".podman-standard-applied").write_text(json.dumps(record, sort_keys=True) + "\n")
    ps = _probe(FIXTURES / guest / "docker-ps-users.ps@vagrant.txt")
    return cfg, directory, ps


def _compose_check(cfg, ps, directory):
    criterion = _criterion(cfg, "drift-compose")
    assert criterion.drift and "files vagrant" in criterion.commands
    return evaluate(criterion, {"ps vagrant": ps} | _run_here(criterion, ["files vagrant"]), cfg)


@pytest.mark.parametrize("guest", ["bookworm-services", "trixie-services"])
def test_a_compose_project_as_brought_up_has_no_drift(tmp_path, monkeypatch, guest):
    cfg, directory, ps = _compose_case(tmp_path, monkeypatch, guest)
    check = _compose_check(cfg, ps, directory)
    assert check.passed, check.details
    assert (check.expected, check.found) == ("1 projects as their files", "as their files")


def test_a_compose_file_edited_on_the_host_is_named(tmp_path, monkeypatch):
    cfg, directory, ps = _compose_case(tmp_path, monkeypatch, "trixie-services")
    with open(directory / "compose.yaml", "a") as f:
        f.write("# a line added by hand\n")
    check = _compose_check(cfg, ps, directory)
    assert not check.passed and not check.failed
    assert check.found == "compose project devstack (vagrant's)"
    assert check.details == (
        f"compose project devstack (vagrant's): {directory}/compose.yaml differs from what the "
        "data renders (edited on the host, or the data changed): the next converge overwrites "
        "it and re-creates the services it changes: put the change into the data",
        "compose project devstack (vagrant's): its files on the host are not those it was last "
        "brought up from: converge (deploys/compose.py) brings it up from them",
    )


def test_compose_data_changed_since_the_bring_up(tmp_path, monkeypatch):
    cfg, directory, ps = _compose_case(tmp_path, monkeypatch, "trixie-services")
    data = cfg.model_dump(mode="json")
    data["compose_projects"][0]["vars"]["greeting"] = "hello"
    (finding,) = _compose_check(HostData.model_validate(data), ps, directory).details
    assert finding.startswith(
        f"compose project devstack (vagrant's): {directory}/compose.yaml differs from what the "
        "data renders"
    )


def test_compose_containers_that_are_not_the_files_services(tmp_path, monkeypatch):
    cfg, directory, ps = _compose_case(tmp_path, monkeypatch, "bookworm-services")
    # The real listing without devstack_worker_1, as after `podman rm -f devstack_worker_1`.
    listed = json.loads(ps.output)
    without_worker = ProbeResult(
        0, json.dumps([c for c in listed if c["Names"] != ["devstack_worker_1"]])
    )
    check = _compose_check(cfg, without_worker, directory)
    assert check.details == (
        "compose project devstack (vagrant's): its file's service worker has no container: "
        "converge (deploys/compose.py) creates it",
    )
    # Brought up last from a file without the worker (the record of that file), the worker's
    # container is one its file no longer has.
    record = directory / ".podman-standard-applied"
    data = json.loads(record.read_text())
    del data["services"]["worker"]
    record.write_text(json.dumps(data, sort_keys=True) + "\n")
    check = _compose_check(cfg, ps, directory)
    assert check.details == (
        "compose project devstack (vagrant's): container devstack_worker_1 is of service "
        "worker, not in its file: converge (deploys/compose.py) removes it",
    )
    record.unlink()
    (finding,) = _compose_check(cfg, ps, directory).details
    assert finding == (
        f"compose project devstack (vagrant's): no record of its last bring-up "
        f"({directory}/.podman-standard-applied): converge (deploys/compose.py) brings it up "
        "and records it"
    )


def test_new_drift_findings_reach_the_table_json_and_junit(tmp_path, monkeypatch):
    cfg, directory, ps = _compose_case(tmp_path, monkeypatch, "trixie-services")
    (directory / ".podman-standard-applied").unlink()
    check = _compose_check(cfg, ps, directory)
    (finding,) = check.details
    results = {"ws": [check]}
    assert f"  drift-compose: {finding}" in render_table("ws", results["ws"])
    data = json.loads(report_json(results))
    assert data["passed"] is True and data["warnings"] == 1
    assert data["hosts"]["ws"][0]["result"] == "warn"
    case = ET.fromstring(report_junit(results)).find("testsuite/testcase[@name='drift-compose']")
    assert finding in case.find("system-out").text


def test_selinux_criteria_on_an_enforcing_host_with_and_without_the_store_rules():
    # Captured by tests/realhost/test_selinux.py (Debian 13, refpolicy, enforcing, graphroot on
    # /space): after the converge, and after all local file-context rules were deleted and
    # /space restored to the policy's default_t.
    cfg = HostData(host_class="server", graphroot="/space/containers/engine/podman")
    by_id = {c.id: c for c in criteria_for(cfg)}

    def check(state: str, criterion_id: str, key: str):
        probe = _probe(FIXTURES / "trixie-selinux" / state / f"{criterion_id}.{key}.txt")
        return evaluate(by_id[criterion_id], {key: probe}, cfg)

    label = check("labelled", "selinux-store-label", "label")
    assert label.passed and label.found.split(":")[2] == "container_var_lib_t"
    confined = check("labelled", "selinux-enforcing-container", "run")
    assert confined.passed and confined.found.startswith("system_u:system_r:container_t:s0:c")

    label = check("without-rules", "selinux-store-label", "label")
    assert not label.passed and label.found.split(":")[2] == "default_t" and label.hint
    confined = check("without-rules", "selinux-enforcing-container", "run")
    assert not confined.passed and confined.found.startswith("Error: ")
    assert "/space" in confined.found
