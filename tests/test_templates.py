"""Rendered files: headers, real behaviour of the wrapper scripts, TOML that parses back."""

import os
import stat
import subprocess
import tomllib

import pytest

from operations._common import MANAGED_BY, render_template, render_toml
from operations.registries import registries_toml


@pytest.fixture
def fake_tools(tmp_path):
    """podman and podman-compose stand-ins that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("podman", "podman-compose"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\nprintf "{tool}"\nfor a in "$@"; do printf " [%s]" "$a"; done\necho\n'
        )
        script.chmod(0o755)
    return bin_dir


def _install(tmp_path, template, name):
    path = tmp_path / name
    path.write_text(render_template(template, source="test").getvalue())
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ps", "-a"], "podman [ps] [-a]"),
        (["run", "--rm", "alpine", "echo", "a b"], "podman [run] [--rm] [alpine] [echo] [a b]"),
        (["compose", "up", "-d"], "podman-compose [up] [-d]"),
        (["compose"], "podman-compose"),
        ([], "podman"),
        (["--version"], "podman [--version]"),
    ],
)
def test_docker_wrapper_maps_to_podman(tmp_path, fake_tools, argv, expected):
    wrapper = _install(tmp_path, "docker-wrapper.sh.j2", "docker")
    env = {**os.environ, "PATH": f"{fake_tools}:/usr/bin:/bin"}
    out = subprocess.run([str(wrapper), *argv], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_docker_compose_wrapper_maps_to_podman_compose(tmp_path, fake_tools):
    wrapper = _install(tmp_path, "docker-compose-wrapper.sh.j2", "docker-compose")
    env = {**os.environ, "PATH": f"{fake_tools}:/usr/bin:/bin"}
    out = subprocess.run(
        [str(wrapper), "-f", "x.yml", "up", "-d"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "podman-compose [-f] [x.yml] [up] [-d]"


@pytest.mark.parametrize(
    "template", ["docker-wrapper.sh.j2", "docker-compose-wrapper.sh.j2", "nodocker.j2"]
)
def test_every_template_carries_the_managed_by_header(template):
    head = render_template(template, source="operations/x.py").getvalue().splitlines()[:2]
    assert any(line.startswith(f"# {MANAGED_BY} (operations/x.py)") for line in head)


def test_wrapper_is_posix_sh():
    text = render_template("docker-wrapper.sh.j2", source="t").getvalue()
    assert text.startswith("#!/bin/sh\n")
    result = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_registries_toml_round_trips_hostile_values():
    # Values with quotes or newlines must be escaped by the serializer, not break the file.
    doc = registries_toml(
        ["docker.io", "quay.io"],
        "permissive",
        [
            {
                "prefix": 'weird"\nprefix',
                "mirrors": [{"location": "m.example:5000", "insecure": True}],
            }
        ],
    )
    text = render_toml(doc, "t").getvalue()
    parsed = tomllib.loads(text)
    assert parsed["registry"][0]["prefix"] == 'weird"\nprefix'
    assert parsed["registry"][0]["location"] == 'weird"\nprefix'
    assert parsed["registry"][0]["mirror"] == [{"location": "m.example:5000", "insecure": True}]
    assert parsed["unqualified-search-registries"] == ["docker.io", "quay.io"]
    assert text.startswith(f"# {MANAGED_BY} (t)")


def test_template_files_are_not_executable_in_repo():
    from operations._common import TEMPLATES

    for path in TEMPLATES.iterdir():
        assert not path.stat().st_mode & stat.S_IXUSR, path
