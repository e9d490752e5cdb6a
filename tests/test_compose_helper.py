"""The on-host compose helper (templates/podman-standard-compose.py), executed against stand-in
``podman`` and ``podman-compose`` that keep their containers in a JSON file: what it runs, what
it records, and that no stand-in that hangs can hold it past its timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parent.parent / "templates" / "podman-standard-compose.py"

# Containers: {name: {"service", "state", "status"}}; every call is appended to calls.log.
PODMAN = """\
import json, os, sys
state_file = os.environ["FAKE_STATE"]
state = json.load(open(state_file))
open(os.environ["FAKE_CALLS"], "a").write("podman " + " ".join(sys.argv[1:]) + "\\n")
cmd = sys.argv[1]
if cmd == "ps":
    print(json.dumps([
        {"Names": [n], "State": c["state"], "Status": c["status"],
         "Labels": {"com.docker.compose.service": c["service"]}}
        for n, c in state.items()
    ]))
elif cmd == "rm":
    for name in sys.argv[3:]:
        state.pop(name, None)
elif cmd == "start":
    for name in sys.argv[2:]:
        state[name].update(state="running", status="Up 1 second")
elif cmd == "logs":
    print(f"log line of {sys.argv[-1]}")
json.dump(state, open(state_file, "w"))
"""
COMPOSE = """\
import json, os, subprocess, sys
state_file = os.environ["FAKE_STATE"]
open(os.environ["FAKE_CALLS"], "a").write("podman-compose " + " ".join(sys.argv[5:]) + "\\n")
project, action = sys.argv[2], sys.argv[5]
state = json.load(open(state_file))
if action == "up":
    exits = os.environ.get("FAKE_EXITS", "").split(",")
    for service in sys.argv[7:] or os.environ["FAKE_SERVICES"].split(","):
        dead = service in exits
        state[f"{project}_{service}_1"] = {
            "service": service,
            "state": "exited" if dead else "running",
            "status": "Exited (3) 1 second ago" if dead else "Up 1 second",
        }
json.dump(state, open(state_file, "w"))
if action == "up" and os.environ.get("FAKE_HANG"):
    # As podman-compose 1.3.0 waiting for a dependency that exited: a child that never ends.
    child = subprocess.Popen(["sleep", "1000"])
    open(os.environ["FAKE_CHILD"], "w").write(str(child.pid))
    child.wait()
"""
COMPOSE_FILE = """\
services:
  web:
    image: docker.io/library/nginx:alpine
    environment:
      GREETING: ${GREETING}
  worker:
    image: docker.io/library/alpine:latest
"""


@pytest.fixture
def project(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("podman", PODMAN), ("podman-compose", COMPOSE)):
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n{body}")
        tool.chmod(0o755)
    work = tmp_path / "project"
    work.mkdir()
    (work / "compose.yaml").write_text(COMPOSE_FILE)
    (work / ".env").write_text("GREETING=one\n")
    (tmp_path / "state.json").write_text("{}")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(tmp_path / "state.json"),
        "FAKE_CALLS": str(tmp_path / "calls.log"),
        "FAKE_CHILD": str(tmp_path / "child.pid"),
        "FAKE_SERVICES": "web,worker",
    }
    return work, env, tmp_path


def helper(project, *args, timeout=60, **env):
    work, base, _ = project
    return subprocess.run(
        [sys.executable, str(HELPER), *args],
        cwd=work,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def calls(project) -> list[str]:
    path = project[2] / "calls.log"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [line for line in lines if not line.startswith("podman ps")]


def up(project, **env):
    args = ["up", "dev", "compose.yaml", "20", "--record", ".rec", "--inputs", "abc"]
    return helper(project, *args, **env)


def test_first_up_brings_the_project_up_and_records_it(project):
    result = up(project)
    assert result.returncode == 0, result.stderr
    assert calls(project) == ["podman-compose up -d"]
    record = json.loads((project[0] / ".rec").read_text())
    assert record["inputs"] == "abc" and sorted(record["services"]) == ["web", "worker"]
    # Again with nothing changed: nothing but podman ps.
    assert up(project).returncode == 0
    assert calls(project) == []


def test_a_changed_env_recreates_only_the_service_that_reads_it(project):
    assert up(project).returncode == 0
    calls(project)
    (project[0] / ".env").write_text("GREETING=two\n")
    result = up(project)
    assert result.returncode == 0, result.stderr
    assert calls(project) == ["podman rm -f dev_web_1", "podman-compose up -d web"]
    assert "re-creating web" in result.stderr


LINKED_FILE = """\
services:
  web:
    image: docker.io/library/nginx:alpine
    environment:
      GREETING: ${GREETING}
  worker:
    image: docker.io/library/alpine:latest
    depends_on:
      web:
        condition: service_started
  reporter:
    image: docker.io/library/alpine:latest
    links: ["worker:w"]
  cache:
    image: docker.io/library/alpine:latest
"""


def test_a_changed_service_takes_its_linked_services_along_dependents_first(project):
    # podman-compose >= 1.1 creates worker with --requires on web's container: podman will not
    # remove web while worker exists, so worker (and reporter, linked to worker) go too.
    (project[0] / "compose.yaml").write_text(LINKED_FILE)
    env = {"FAKE_SERVICES": "web,worker,reporter,cache"}
    assert up(project, **env).returncode == 0
    calls(project)
    (project[0] / ".env").write_text("GREETING=two\n")
    result = up(project, **env)
    assert result.returncode == 0, result.stderr
    assert calls(project) == [
        "podman rm -f dev_reporter_1",
        "podman rm -f dev_worker_1",
        "podman rm -f dev_web_1",
        "podman-compose up -d reporter web worker",
    ]
    assert "re-creating web (and, linked to it, reporter, worker)" in result.stderr
    # cache, linked to nothing, kept its container; the next run changes nothing.
    assert up(project, **env).returncode == 0
    assert calls(project) == []


def test_a_stopped_container_is_started_not_recreated(project):
    assert up(project).returncode == 0
    state_file = project[2] / "state.json"
    state = json.loads(state_file.read_text())
    state["dev_worker_1"].update(state="exited", status="Exited (137) 5 seconds ago")
    state_file.write_text(json.dumps(state))
    calls(project)
    assert up(project).returncode == 0
    assert calls(project) == ["podman start dev_worker_1"]


def test_a_container_that_exits_fails_naming_it_with_its_log(project):
    result = up(project, FAKE_EXITS="worker")
    assert result.returncode == 1
    assert "compose project dev: up failed (timeout 20s)" in result.stderr
    assert "container dev_worker_1 (Exited (3) 1 second ago) is not running" in result.stderr
    assert "log line of dev_worker_1" in result.stderr
    assert not (project[0] / ".rec").exists()  # retried by the next run


def test_a_hanging_podman_compose_is_stopped_at_the_timeout_with_its_children(project):
    args = ["up", "dev", "compose.yaml", "3", "--record", ".rec", "--inputs", "abc"]
    started = time.monotonic()
    result = helper(project, *args, FAKE_HANG="1", FAKE_EXITS="web")
    took = time.monotonic() - started
    assert result.returncode == 1
    assert "podman-compose up did not finish within the project's timeout" in result.stderr
    assert "not running: dev_web_1 (Exited (3) 1 second ago)" in result.stderr
    assert "log line of dev_web_1" in result.stderr
    assert took < 3 + 10, took  # the timeout, then SIGTERM answered at once
    child = int((project[2] / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in _proc_state(child)


def _proc_state(pid: int) -> str:
    return textwrap.dedent(Path(f"/proc/{pid}/stat").read_text().split(")")[-1]).split()[0]
