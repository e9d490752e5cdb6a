"""The benchmark's pure parts (bench/run.py): parsing pyinfra's and ansible's own records of real
runs, the A/B order, min/median/max and the table. Times are never asserted."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench import run

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "bench"


def _read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_remote_commands_counts_what_the_connector_ran():
    after = run.remote_commands(_read("pyinfra-debug-noop-server.log"))
    before = run.remote_commands(_read("pyinfra-debug-noop-server-before.log"))
    assert list(after) == ["bookworm-server"]
    assert after["bookworm-server"]["commands"] == 16
    assert before["bookworm-server"]["commands"] == 25
    facts = after["bookworm-server"]["facts"]
    # every command of a no-op run is a fact: one command per loaded fact
    assert len(facts) == 16
    assert facts.count("server.LinuxDistribution") == 1
    assert before["bookworm-server"]["facts"].count("server.LinuxDistribution") == 2
    assert "files.Sha1File" not in facts and "files.Sha1File" in before["bookworm-server"]["facts"]


def test_pyinfra_changes_reads_the_grand_total():
    assert run.pyinfra_changes(_read("pyinfra-noop-nspawn.txt")) == 0
    assert run.pyinfra_changes(_read("pyinfra-converge-nspawn.txt")) == 4
    with pytest.raises(ValueError):
        run.pyinfra_changes("no table here")


def test_ansible_changes_reads_the_recap():
    recap = run.ansible_changes(_read("ansible-recap-noop-server.txt"))
    assert recap == {"bookworm-server": {"ok": 15, "changed": 0, "unreachable": 0, "failed": 0}}


def test_summary_min_median_max():
    assert run.summary([3.0, 1.0, 2.0]) == {"n": 3, "min": 1.0, "median": 2.0, "max": 3.0}
    assert run.summary([4.0, 1.0]) == {"n": 2, "min": 1.0, "median": 2.5, "max": 4.0}
    with pytest.raises(ValueError):
        run.summary([])


def test_alternate_swaps_who_goes_first():
    assert run.alternate(["a", "b"], 3) == ["a", "b", "b", "a", "a", "b"]
    order = run.alternate(["a", "b"], 4)
    assert order.count("a") == order.count("b") == 4


def test_table_and_ratio():
    p = run.summary([10.0, 12.0, 11.0])
    a = run.summary([50.0, 60.0, 55.0])
    text = run.table("No-op", [("pyinfra", p, ""), ("ansible", a, "x")])
    lines = text.splitlines()
    assert lines[0] == "No-op"
    assert lines[2].split()[:5] == ["pyinfra", "3", "10.0", "11.0", "12.0"]
    assert lines[3].split() == ["ansible", "3", "50.0", "55.0", "60.0", "x"]
    assert run.ratio(a, p) == pytest.approx(5.0)


def test_ansible_inventory_carries_the_validated_data():
    hosts = [
        {
            "name": "h1",
            "ssh_host": "127.0.0.1",
            "ssh_port": 2222,
            "ssh_user": "vagrant",
            "ssh_key": "/k",
        }
    ]
    inv = run.ansible_inventory(hosts, {"h1": {"graphroot": "/space/x"}})
    assert inv["all"]["hosts"]["h1"] == {
        "ansible_host": "127.0.0.1",
        "ansible_port": 2222,
        "ansible_user": "vagrant",
        "ansible_ssh_private_key_file": "/k",
        "podman": {"graphroot": "/space/x"},
    }


def _runs(*seconds):
    return [{"seconds": s} for s in seconds]


def test_figures_and_goals_of_an_all_result():
    result = {
        "noop": {
            "runs": {"pyinfra": _runs(10, 12, 11), "ansible": _runs(60, 66, 70)},
            "pyinfra_commands": {"bookworm-server": {"commands": 10, "facts": []}},
        },
        "first": {"runs": {"pyinfra": _runs(300, 320), "apt-get": _runs(250, 250)}},
        "fleet": {"runs": {"1": _runs(3, 3, 3), "4": _runs(4, 4, 4), "8": _runs(5, 5, 5)}},
    }
    values = run.figures(result)
    assert values == {
        "noop_ratio": 6.0,
        "commands": 10,
        "first_ratio": 1.24,
        "fleet_ratio": 5 / 3,
    }
    lines = run.goals_table(values).splitlines()
    assert lines[2].endswith("met") and "6.00x" in lines[2] and "NOT" not in lines[2]
    assert lines[3].split()[-1] == "met" and " 10 " in lines[3]
    assert "1.24x" in lines[4] and "NOT" not in lines[4]
    assert "1.67x" in lines[5] and lines[5].endswith("NOT met")


def test_a_host_ansible_cannot_serve_is_left_out_with_its_reason():
    hosts = [
        {"name": n, "ssh_host": "127.0.0.1", "ssh_port": p, "ssh_user": "vagrant", "ssh_key": "/k"}
        for n, p in (("bookworm-server", 2222), ("trixie-workstation", 2223))
    ]
    inv = run.ansible_inventory(hosts, {"bookworm-server": {}, "trixie-workstation": {}})
    reason = "could not install python3-apt for ansible's modules (rc 2): E: no mirror"
    kept = run.measured(inv, {"trixie-workstation": reason})
    assert list(kept["all"]["hosts"]) == ["bookworm-server"]
    assert list(inv["all"]["hosts"]) == ["bookworm-server", "trixie-workstation"]  # untouched

    saved = json.loads((REPO / "bench/results/noop-20261129T064845Z.json").read_text())
    saved["skipped"] = {"trixie-workstation": reason}
    report = run.noop_report(saved)
    assert report.splitlines()[0].startswith("No-op run on bookworm-server ")
    assert report.splitlines()[-1] == f"not measured: trixie-workstation: {reason}"


def _prepare(tmp_path, installed: str, install_fails_until_update: bool):
    """Run the prepare command against stand-ins for dpkg-query and apt-get that log calls."""
    log = tmp_path / "calls"
    (tmp_path / "dpkg-query").write_text(
        f'#!/bin/sh\ncase " {installed} " in *" $3 "*) printf installed;; *) exit 1;; esac\n'
    )
    fails = "[ -e updated ] || exit 100" if install_fails_until_update else ":"
    (tmp_path / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $*" >> {log}\n'
        f'case "$*" in update*) touch updated;; *install*) {fails};; esac\n'
    )
    for tool in ("dpkg-query", "apt-get"):
        (tmp_path / tool).chmod(0o755)
    command = run.ansible_prepare_command(("python3-apt", "bash"))
    out = subprocess.run(
        ["sh", "-c", command],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    return out, (log.read_text().splitlines() if log.exists() else [])


def test_what_ansible_needs_is_installed_only_when_missing(tmp_path):
    out, calls = _prepare(tmp_path, "python3-apt bash", False)
    assert (out.returncode, out.stdout, calls) == (0, "present: all\n", [])

    out, calls = _prepare(tmp_path, "bash", False)
    assert (out.returncode, out.stdout) == (0, "installed: python3-apt\n")
    assert calls == ["apt-get install -y -q --no-install-recommends python3-apt"]


def test_the_index_is_refreshed_only_when_the_install_fails_without(tmp_path):
    out, calls = _prepare(tmp_path, "bash", True)
    assert (out.returncode, out.stdout) == (0, "installed: python3-apt\n")
    assert [c.split()[1] for c in calls] == ["install", "update", "install"]


@pytest.mark.parametrize("count", [3, 6])
def test_motoko_like_services_are_valid_host_data(count):
    from model.host_data import HostData

    services = run.motoko_like(count)
    data = HostData.model_validate({"services": services})
    assert [s.name for s in data.services] == [s["name"] for s in services]
    # motoko's shapes: a secret, a health check, a dependency, a port and a timer among them
    assert any(s.secrets for s in data.services) and any(s.healthcheck for s in data.services)
    assert any(s.requires and s.ports and s.timers for s in data.services)
