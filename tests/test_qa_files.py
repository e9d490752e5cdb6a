"""verify's drift-files (facts/qa.py) for a service's managed files (``files``) and the
masking of environment values in unit-file diffs. The unit files, podman info and quadlet
outputs are a Debian 13 guest's (tests/fixtures/qa/trixie-services, the services as deployed);
the managed files' part of the dump is the criterion's own dump command run here by sh on
files the test writes (the paths under the service root are the test's)."""

import base64
import json
import subprocess
from pathlib import Path

import pytest

from facts import running
from facts.qa import Probe, ProbeResult, criteria_for, evaluate
from model.host_data import HostData
from operations.services import render_files
from tests.test_qa import _captured as guest_captures

GUEST = Path(__file__).parent / "fixtures" / "qa" / "trixie-services"
SECRET_ENV = "PODMAN_STANDARD_TEST_PG_PASSWORD"
PASSWORD = "not-a-real-password-93"
SITE = {"path": "conf/site.conf", "content": "# the site's settings\nlisten 80;\n"}
PGPASS = {
    "path": "conf/pgpass",
    "template": "pgpass.j2",
    "vars": {"user": "app"},
    "mode": "0600",
}
GONE = {"path": "conf/old.conf", "present": False}


def _captured(name: str) -> ProbeResult:
    """One capture of the guest (``<criterion>.<key>.txt``: output, then ``@@rc=``)."""
    return Probe().process((GUEST / name).read_text().splitlines())


def _host(tmp_path: Path, files: list[dict], secrets: bool = True) -> HostData:
    data = json.loads((GUEST / "host.json").read_text())["data"]
    web = data["services"][0] | {"files": files}
    if secrets:
        web["secrets"] = {"POSTGRES_PASSWORD": {"env": SECRET_ENV}}
    return HostData.model_validate(
        data | {"service_root": str(tmp_path), "services": [web, *data["services"][1:]]}
    )


def _write_as_converge(cfg: HostData, tmp_path: Path) -> None:
    """Each present managed file of web as the operation writes it (render_files)."""
    for path, (_, text) in render_files(cfg.services[0], cfg).items():
        target = tmp_path / "web" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _drift_files(cfg: HostData, tmp_path: Path):
    """drift-files judged on the guest's captured unit files with root's managed files'
    records and digests as the dump command prints them here."""
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-files"]
    command = criterion.commands["files root"]
    # The criterion's own dump, of the test's files only: the unit directories are the
    # guest's (captured), this machine's are not read.
    records = command[command.index("; [ ") + 2 :]
    here = running.dump_command(None, [str(tmp_path / "no-units")]).removesuffix("true")
    done = subprocess.run(
        ["sh", "-c", Probe().command(here + records)], capture_output=True, text=True, timeout=60
    )
    ours = Probe().process(done.stdout.splitlines())
    assert ours.rc == 0, done.stderr
    results = _guest_results(cfg, criterion)
    unit_files = results["files root"].output
    if cfg.services[0].secrets:
        unit_files = _edit_unit(
            unit_files,
            "web.container",
            "PublishPort=127.0.0.1:8081:80/tcp\n",
            f"PublishPort=127.0.0.1:8081:80/tcp\nEnvironmentFile={tmp_path}/web/secrets.env\n",
        )
    results["files root"] = ProbeResult(0, unit_files + "\n" + ours.output)
    return evaluate(criterion, results, cfg)


def _edit_unit(dump: str, name: str, old: str, new: str) -> str:
    """The captured files dump with one line of unit ``name`` replaced: web with secrets
    has the ``EnvironmentFile=`` line the template writes after ``PublishPort=``; a hand
    edit adds a line."""
    lines = dump.splitlines()
    at = lines.index(f"@@file /etc/containers/systemd/{name}")
    unit = base64.b64decode(lines[at + 1]).decode()
    assert old in unit
    lines[at + 1] = base64.b64encode(unit.replace(old, new).encode()).decode()
    return "\n".join(lines)


def _guest_results(cfg: HostData, criterion) -> dict[str, ProbeResult]:
    """The criterion's commands answered from the guest's captures; the files dumps by
    their captured output (the commands now name the test's managed files too)."""
    captured = guest_captures(GUEST.name, cfg)
    results = {}
    for key, command in criterion.commands.items():
        owner = key.removeprefix("files ")
        if key.startswith("files "):
            results[key] = _captured(f"drift-containers.files@{owner}.txt")
        else:
            results[key] = captured[command]
    return results


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, PASSWORD)


def test_managed_files_as_converge_writes_them_pass(tmp_path, secret):
    cfg = _host(tmp_path, [SITE, PGPASS, GONE])
    _write_as_converge(cfg, tmp_path)
    check = _drift_files(cfg, tmp_path)
    assert check.passed, check.details
    assert (check.expected, check.found) == (
        "managed files as the data renders them",
        "as the data says",
    )


def test_the_dump_reads_a_file_holding_secrets_by_digest_only(tmp_path, secret):
    cfg = _host(tmp_path, [SITE, PGPASS])
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-files"]
    command = criterion.commands["files root"]
    site, pgpass = (f"{tmp_path}/web/{f['path']}" for f in (SITE, PGPASS))
    assert f'echo "@@record "{site} && base64 -w0 {site}' in command
    assert f"sha256sum < {pgpass}" in command and f"base64 -w0 {pgpass}" not in command


def test_a_managed_file_edited_by_hand_is_named_with_its_first_changed_line(tmp_path, secret):
    cfg = _host(tmp_path, [SITE, PGPASS, GONE])
    _write_as_converge(cfg, tmp_path)
    site = tmp_path / "web" / "conf" / "site.conf"
    site.write_text(site.read_text() + "worker_connections 1;\n")
    (tmp_path / "web" / "conf" / "pgpass").write_text("*:*:*:app:changed-by-hand\n")
    (tmp_path / "web" / "conf" / "old.conf").write_text("left over\n")
    check = _drift_files(cfg, tmp_path)
    assert not check.passed and not check.failed  # drift: a warning unless strict
    assert check.details == (
        f"{site}: changed on the host: '+worker_connections 1;'; the next converge "
        "overwrites it: put the change into the data",
        f"{tmp_path}/web/conf/pgpass: changed on the host (it holds secrets: no diff shown); "
        "the next converge overwrites it: put the change into the data",
        f"{tmp_path}/web/conf/old.conf: declared present: false, still on the host: converge "
        "(deploys/services.py) removes it",
    )
    assert check.found == f"{site}; {tmp_path}/web/conf/pgpass; {tmp_path}/web/conf/old.conf"
    shown = "\n".join(check.details)
    assert PASSWORD not in shown and "changed-by-hand" not in shown
    strict = cfg.model_copy(update={"verify_strict": True})
    assert _drift_files(strict, tmp_path).failed


def test_a_missing_managed_file_and_an_unreadable_secret(tmp_path, secret, monkeypatch):
    cfg = _host(tmp_path, [SITE, PGPASS])
    check = _drift_files(cfg, tmp_path)  # nothing written
    assert check.details == (
        f"{tmp_path}/web/conf/site.conf: missing: converge (deploys/services.py) to write it",
        f"{tmp_path}/web/conf/pgpass: missing: converge (deploys/services.py) to write it",
    )
    monkeypatch.delenv(SECRET_ENV)
    (unrendered,) = _drift_files(cfg, tmp_path).details
    assert unrendered.startswith(f"{tmp_path}/web: its managed files not compared: service web: ")
    assert SECRET_ENV in unrendered


def test_a_unit_file_diff_masks_environment_values():
    """The guest's web.container with an env line added (as a hand edit would), and the
    data declaring another value: neither value is shown, the variable is."""
    cfg = HostData.model_validate(json.loads((GUEST / "host.json").read_text())["data"])
    dump = _captured("drift-containers.files@root.txt").output
    edited = _edit_unit(
        dump, "web.container", "[Container]\n", "[Container]\nEnvironment=GREETING=by-hand-7\n"
    )
    web = cfg.services[0].model_copy(update={"env": {"GREETING": "declared-3"}})
    cfg = cfg.model_copy(update={"services": [web, *cfg.services[1:]]})
    (criterion,) = [c for c in criteria_for(cfg) if c.id == "drift-files"]
    results = _guest_results(cfg, criterion) | {"files root": ProbeResult(0, edited)}
    check = evaluate(criterion, results, cfg)
    (finding,) = check.details
    # The declared line (quoted: unit_word) and the edited one, in the diff's order.
    assert finding.startswith(
        "/etc/containers/systemd/web.container: changed on the host: "
        "'+Environment=GREETING=***' / '-Environment=\"GREETING=***\"'"
    ), finding
    assert "by-hand-7" not in finding and "declared-3" not in finding
