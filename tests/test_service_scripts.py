"""The on-host shell of services.service, run for real against a stand-in podman: the health
gate a unit waits in (podman without Notify=healthy) and the bounded pull before a restart."""

import os
import subprocess
import time

from operations.services import HEALTH_GATE, PULL


def _fake_podman(tmp_path, healthy_after: int | None):
    """A podman whose `healthcheck run` fails ``healthy_after`` times (None: always), and
    whose `logs` prints two lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    count = tmp_path / "count"
    count.write_text("0")
    limit = -1 if healthy_after is None else healthy_after
    return _stand_in(
        bin_dir,
        f'if [ "$1" = logs ]; then echo "log: $*"; echo "FATAL: no pg_hba.conf entry"; exit 0; fi\n'
        f"n=$(cat {count}); echo $((n + 1)) > {count}\n"
        f'[ {limit} -ge 0 ] && [ "$n" -ge {limit} ] && exit 0\n'
        "exit 1\n",
    ), count


def _stand_in(bin_dir, script: str) -> dict:
    """``script`` as ``podman`` in ``bin_dir``: the environment that finds it first."""
    (bin_dir / "podman").write_text("#!/bin/sh\n" + script)
    (bin_dir / "podman").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _sh(script: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    """``script`` as a unit runs it: ``/bin/sh -c SCRIPT NAME ARGS...``."""
    return subprocess.run(
        ["/bin/sh", "-c", script, "test", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _gate(env, budget: int) -> subprocess.CompletedProcess:
    return _sh(HEALTH_GATE, env, "db", str(budget))


def test_the_health_gate_waits_until_the_check_passes(tmp_path):
    env, count = _fake_podman(tmp_path, healthy_after=1)
    run = _gate(env, budget=10)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "health gate: db is healthy\n"
    assert count.read_text().strip() == "2"


def test_a_health_gate_that_never_passes_fails_in_its_budget_naming_the_service(tmp_path):
    env, _ = _fake_podman(tmp_path, healthy_after=None)
    started = time.monotonic()
    run = _gate(env, budget=1)
    assert time.monotonic() - started < 5
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "health gate: db is not healthy after 1s; its last log lines:",
        "log: logs --tail 20 db",
        "FATAL: no pg_hba.conf entry",
    ]


def _pull_podman(tmp_path, present: bool, fails: int):
    """A podman that has the image (``present``) or pulls it after ``fails`` failures,
    recording each call."""
    bin_dir = tmp_path / "pbin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    calls.write_text("")
    return _stand_in(
        bin_dir,
        f'echo "$*" >> {calls}\n'
        f'if [ "$1 $2" = "image exists" ]; then exit {0 if present else 1}; fi\n'
        f'[ "$(grep -c "^pull" {calls})" -gt {fails} ] && exit 0\n'
        'echo "Error: initializing source docker://$3: connection refused" >&2; exit 125\n',
    ), calls


def _pull(env, tries=3):
    return _sh(PULL, env, "docker.io/library/postgres:16.6", str(tries), "0", "5")


def test_an_image_the_host_has_is_not_pulled(tmp_path):
    env, calls = _pull_podman(tmp_path, present=True, fails=0)
    assert _pull(env).returncode == 0
    assert calls.read_text().splitlines() == ["image exists docker.io/library/postgres:16.6"]


def test_a_failed_pull_is_retried(tmp_path):
    env, calls = _pull_podman(tmp_path, present=False, fails=2)
    run = _pull(env)
    assert run.returncode == 0, run.stderr
    assert calls.read_text().splitlines()[1:] == ["pull -q docker.io/library/postgres:16.6"] * 3


def test_a_pull_that_keeps_failing_stops_naming_the_image(tmp_path):
    env, calls = _pull_podman(tmp_path, present=False, fails=99)
    run = _pull(env, tries=2)
    assert run.returncode == 1
    assert len(calls.read_text().splitlines()) == 1 + 2
    assert run.stderr.splitlines()[-1] == (
        "image docker.io/library/postgres:16.6: pull failed 2 times; the running container, "
        "if any, is left as it is"
    )


# pull: always: the restart decision after the pull (_moved_restart), run as the operation
# sends it, with `systemctl` a stand-in that records the restart.
def _moved(tmp_path, image_id: str | None, container_image: str) -> subprocess.CompletedProcess:
    from model.host_data import Service
    from operations.services import _moved_restart, _Scope

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    inspect_image = f"echo {image_id}" if image_id else "echo 'Error: no such image' >&2; exit 125"
    env = _stand_in(
        bin_dir,
        f'if [ "$1 $2" = "image inspect" ]; then {inspect_image}; fi\n'
        f'if [ "$1 $2" = "container inspect" ]; then echo {container_image}; fi\n',
    )
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/restarted\n')
    (bin_dir / "systemctl").chmod(0o755)
    svc = Service(name="web", image="docker.io/library/nginx:1.27.3", pull="always")
    command = _moved_restart(svc, _Scope(None, "root", "root", "/root")).get_raw_value()
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True)


def test_pull_always_restarts_when_the_tag_moved(tmp_path):
    result = _moved(tmp_path, "bbb", "aaa")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "restarted").read_text() == "restart web.service\n"
    assert "now names image bbb; restarting" in result.stdout


def test_pull_always_leaves_the_service_when_the_tag_did_not_move(tmp_path):
    result = _moved(tmp_path, "aaa", "aaa")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "restarted").exists()


def test_pull_always_fails_when_the_pulled_image_cannot_be_read(tmp_path):
    result = _moved(tmp_path, None, "aaa")
    assert result.returncode == 2
    assert not (tmp_path / "restarted").exists()
    assert "service web: podman image inspect docker.io/library/nginx:1.27.3 failed" in (
        result.stderr
    )
