"""Every shell script the package ships is shellcheck-clean: the static ones as they are (the
migration's templates/migration/migrate.sh, .ci's, bench's), the Jinja ones (the docker
wrappers) as rendered. shellcheck comes with .ci/setup; under CI a missing one fails."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from operations._common import render_template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
# Not the package's: the virtualenv, git's own files, captured command output.
SKIP = {".venv", ".git", "node_modules", "__pycache__", "fixtures"}
SHELLS = ("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash", "#!/usr/bin/env sh")


def _shell_scripts() -> list[Path]:
    """Files with a shell's #! line, anywhere in the repository (rendered ones: .j2)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                with path.open("rb") as f:
                    first = f.readline(64).decode("ascii", "replace").strip()
            except OSError:
                continue
            if first.startswith(SHELLS):
                found.append(path)
    return sorted(found)


SCRIPTS = _shell_scripts()


def _shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is missing (.ci/setup installs it)")
        pytest.skip("shellcheck is not installed (.ci/setup installs it)")
    return path


def test_the_scripts_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in SCRIPTS}
    assert {
        "templates/migration/migrate.sh",
        "templates/docker-wrapper.sh.j2",
        "templates/docker-compose-wrapper.sh.j2",
        ".ci/setup",
    } <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.relative_to(ROOT).as_posix() for p in SCRIPTS])
def test_shellcheck_clean(path):
    shellcheck = _shellcheck()
    if path.suffix == ".j2":
        text = render_template(path.relative_to(TEMPLATES).as_posix(), source="t").getvalue()
        argv = [shellcheck, "--external-sources", "-"]
    else:
        text, argv = None, [shellcheck, "--external-sources", str(path)]
    result = subprocess.run(argv, input=text, capture_output=True, text=True, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
