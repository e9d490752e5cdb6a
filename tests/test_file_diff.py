"""pyinfra's ``--diff`` for the files this package writes itself (operations/_common.py
``show_change``): facts in, commands and diff lines out, on the operations' own case files.

Each test runs a case of tests/operations/ once more with ``--diff`` on: the commands must be
the case's, and the log must hold the diff pyinfra's ``files.put`` would print. Without
``--diff`` the cases themselves pass without a ``files.FileContents`` fact: the fake host
raises on a fact it was not given, so no case reads a file's content when the flag is off.
"""

import copy
import json
import logging
import os
from pathlib import Path

import click
import pytest
from pyinfra import logger
from pyinfra.api import output
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.operations import parse_commands
from pyinfra_testing.util import FakeHost, FakeState, create_host, parse_value

import facts.registries
import tests.test_operations  # noqa: F401  (its fake-fact attribute access and secret env)
from operations import docker_compat, migration, registries, services, storage

CASES = Path(__file__).parent / "operations"
REGISTRIES_D = "/etc/containers/registries.conf.d/50-podman-standard.conf"


def _case(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def _run(op, case: dict, diff: bool, caplog, extra_facts: dict | None = None):
    state = FakeState()
    state.config.DIFF = diff
    host = create_host(state, facts={**case.get("facts", {}), **(extra_facts or {})})
    caplog.set_level(logging.INFO, logger="pyinfra")
    caplog.clear()
    with ctx_state.use(state), ctx_host.use(host):
        commands = parse_commands(
            list(op._inner(*parse_value(case.get("args", [])), **parse_value(case["kwargs"])))
        )
    # pyinfra indents diff lines by two spaces; the messages are compared without them.
    log = [r.getMessage().removeprefix("  ") for r in caplog.records]
    return json.loads(json.dumps(commands)), log


@pytest.fixture(autouse=True)
def _auth_script_by_name(monkeypatch):
    monkeypatch.setattr(facts.registries, "AUTH_SCRIPT", "AUTH_SCRIPT")
    # files.put logs "Will create" through host.log, which the fake host lacks.
    monkeypatch.setattr(
        FakeHost,
        "log",
        lambda self, message, log_func=logger.info: log_func(message),
        raising=False,
    )


def test_a_changed_drop_in_shows_its_diff_and_runs_the_same_commands(caplog):
    case = _case("registries.configure/edited_by_hand")
    # What the file holds now: the managed file with another mirror, as `cat` prints it.
    wanted = json.loads(json.dumps(case["commands"]))
    old = [
        "# managed by podman-standard (operations/registries.py); local changes are overwritten.",
        "unqualified-search-registries = [",
        '    "docker.io",',
        '    "quay.io",',
        "]",
        'short-name-mode = "enforcing"',
        "",
        "[[registry]]",
        'prefix = "docker.io"',
        'location = "docker.io"',
        "mirror = [",
        '    { location = "10.0.2.2:5999", insecure = true },',
        "]",
    ]
    contents = {"files.FileContents": {f"path={REGISTRIES_D}": old}}
    commands, log = _run(registries.configure, case, True, caplog, contents)
    assert commands == wanted
    assert log[0] == f"Will modify {REGISTRIES_D}"
    changed = [line for line in log if line.startswith(("- ", "+ "))]
    assert changed == [
        '-     { location = "10.0.2.2:5999", insecure = true },',
        '+     { location = "10.0.2.2:5000", insecure = true },',
        "+ ",
        "+ [[registry]]",
        '+ prefix = "evil.example"',
        '+ location = "evil.example"',
        "+ blocked = true",
    ]
    assert any(line.startswith("@@ -") for line in log)


def test_without_diff_nothing_is_read_or_logged(caplog):
    case = _case("registries.configure/edited_by_hand")
    commands, log = _run(registries.configure, case, False, caplog)  # no FileContents given
    assert commands == case["commands"]
    assert log == []


def test_the_diff_lines_carry_pyinfras_colours(caplog, monkeypatch):
    monkeypatch.setattr(output, "_format_text", click.style)  # what pyinfra's CLI installs
    case = _case("docker_compat.docker_cli/debian_wrapper_fresh")
    _, log = _run(docker_compat.docker_cli, case, True, caplog)
    assert log[0] == f"Will create {click.style('/usr/local/bin/docker', bold=True)}"
    assert click.style("+ #!/bin/sh", "green") in log


def test_a_new_file_shows_its_content_without_reading_the_host(caplog):
    case = _case("docker_compat.docker_cli/debian_wrapper_fresh")
    commands, log = _run(docker_compat.docker_cli, case, True, caplog)  # no FileContents given
    assert commands == case["commands"]
    creates = [line for line in log if line.startswith("Will ")]
    assert creates == [
        "Will create /usr/local/bin/docker",
        "Will create /usr/local/bin/docker-compose",
    ]
    assert "+ #!/bin/sh" in log
    assert not any(line.startswith("- ") for line in log)


def test_a_mode_change_alone_is_named_without_reading_the_file(caplog):
    case = _case("docker_compat.docker_cli/debian_wrapper_wrong_mode")
    commands, log = _run(docker_compat.docker_cli, case, True, caplog)
    assert commands == case["commands"]
    assert [line for line in log if line] == ["Will set mode 0777 -> 0755 of /usr/local/bin/docker"]


def test_storage_conf_shows_the_setting_that_changes(caplog):
    case = copy.deepcopy(_case("storage.configure/already_configured"))
    case["kwargs"]["runroot"] = "/run/containers/other"
    main = "/etc/containers/storage.conf"
    old = [
        "# managed by podman-standard (operations/storage.py); local changes are overwritten.",
        "[storage]",
        'driver = "overlay"',
        'runroot = "/run/containers/storage"',
        'graphroot = "/space/containers/engine/podman"',
    ]
    facts = {
        "files.FileContents": {f"path={main}": old},
        "podman.PodmanInfo": {"graph_root": "/space/containers/engine/podman"},
    }
    commands, log = _run(storage.configure, case, True, caplog, facts)
    assert len(commands) == 1 and commands[0].startswith(f"d={main} ;")
    assert log[0] == f"Will modify {main}"
    assert [line for line in log if line.startswith(("- ", "+ "))] == [
        '- runroot = "/run/containers/storage"',
        '+ runroot = "/run/containers/other"',
    ]


def test_a_secrets_file_says_only_that_it_changes(caplog):
    case = _case("services.service/secrets_changed_restarts")
    commands, log = _run(services.service, case, True, caplog)
    assert commands == case["commands"]
    assert [line for line in log if line.startswith("Will ")] == [
        "Will modify /srv/containers/apps/db/secrets.env (holds secrets: content not shown)"
    ]
    secret = os.environ["PODMAN_STANDARD_TEST_SECRET"]
    assert not any(secret in line or "API_KEY" in line for line in log)


def test_an_auth_file_says_only_that_it_changes(caplog):
    case = _case("registries.credentials/root_fresh")
    commands, log = _run(registries.credentials, case, True, caplog)
    assert commands == case["commands"]
    assert [line for line in log if line.startswith("Will ")] == [
        "Will create /root/.config/containers/auth.json (holds secrets: content not shown)"
    ]
    secret = os.environ["PODMAN_STANDARD_TEST_SECRET"]
    assert not any(secret in line for line in log)


def test_the_migration_bundle_never_shows_dockers_environment(caplog):
    case = _case("migration.export/fresh_bundle")
    commands, log = _run(migration.export, case, True, caplog)
    assert commands == case["commands"]
    bundle = case["kwargs"]["bundle"]
    shown = [line for line in log if line.startswith("Will ")]
    assert f"Will modify {bundle}/manifest.json (holds secrets: content not shown)" in shown
    env = case["kwargs"]["plan"]["containers"][1]["secret_env"]
    assert env == {"GREETING": "hello", "MULTI": "a b"}
    # The names appear in the manifest and the compose file only, which are not shown.
    assert not any("GREETING" in line or "MULTI" in line for line in log)
    assert any(line.startswith("+ ") for line in log), "migrate.sh (no secrets) is shown"
