"""What an operator sees: the real pyinfra CLI on the local host (``@local``, a file under a
temporary directory) with a managed file and a timed step: ``--dry --diff`` prints the diff
and changes nothing; a run without ``--diff`` reads no file content and prints the step's
progress lines."""

import getpass
import grp
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEPLOY = """
from io import StringIO
from pyinfra.api import StringCommand, operation
from operations._common import put_files, timed

@operation()
def managed(dest: str, user: str, group: str):
    content = StringIO("# header\\nkey = 2\\nother = 1\\n")
    yield from put_files([(content, dest, user, group, "0644")])
    yield from timed("a long step", StringCommand("sleep", "0.2"))

managed(dest=DEST, user=USER, group=GROUP)
"""


def _pyinfra(tmp_path, *args):
    dest = tmp_path / "managed.conf"
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    (tmp_path / "deploy.py").write_text(
        f"DEST, USER, GROUP = {str(dest)!r}, {user!r}, {group!r}\n" + DEPLOY
    )
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", *args, "@local", "deploy.py"],
        cwd=tmp_path,  # not the repository: its group_data would ask for sudo
        env={**os.environ, "PYTHONPATH": str(REPO), "PYINFRA_PROGRESS": "off"},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dest, [line.strip() for line in (result.stdout + result.stderr).splitlines()]


def test_dry_diff_prints_the_diff_and_changes_nothing(tmp_path):
    (tmp_path / "managed.conf").write_text("# header\nkey = 1\nother = 1\n")
    dest, out = _pyinfra(tmp_path, "--dry", "--diff")
    assert f"[@local] Will modify {dest}" in out
    assert "- key = 1" in out and "+ key = 2" in out
    assert dest.read_text() == "# header\nkey = 1\nother = 1\n"
    assert not any("a long step" in line for line in out)  # nothing ran


def test_a_run_without_diff_reads_no_content_and_shows_its_progress(tmp_path):
    (tmp_path / "managed.conf").write_text("old\n")
    dest, out = _pyinfra(tmp_path, "-y", "--debug")
    assert dest.read_text() == "# header\nkey = 2\nother = 1\n"
    assert not any("FileContents" in line for line in out)
    assert not any(line.startswith(("- ", "+ ")) for line in out)
    started = out.index("[@local] a long step: started")
    done = [line for line in out[started + 1 :] if line.startswith("[@local] a long step: ")]
    assert len(done) == 1 and re.fullmatch(r"\[@local\] a long step: done in \d+\.\d s", done[0])
