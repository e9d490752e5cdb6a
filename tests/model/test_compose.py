"""podman_compose_projects: what a project may say, what is rejected, and the rendered file."""

import json

import pytest
from pydantic import ValidationError

from model.host_data import HostData
from operations.compose import render_compose

WEB = {"web_image": "docker.io/library/nginx:alpine", "port": 8088}
OWN = {"host_path": "/home/alice/shop/docker-compose.yml"}


def _projects(*projects, **data):
    return HostData.model_validate({"compose_projects": list(projects), **data})


def test_a_project_with_defaults():
    cfg = _projects({"name": "devstack", "template": "web-stack.yaml.j2", "vars": WEB})
    project = cfg.compose_projects[0]
    assert (project.directory, project.user, project.present) == (None, None, True)
    assert cfg.compose_root == "/srv/containers/compose"


@pytest.mark.parametrize(
    ("project", "data", "needle"),
    [
        ({"name": "dev stack", "template": "web-stack.yaml.j2"}, {}, "name (a-z"),
        ({"name": "dev", "template": "../../etc/passwd.j2"}, {}, "template file name"),
        ({"name": "dev", "template": "nope.yaml.j2"}, {}, "not in templates/compose/"),
        ({"name": "dev", "template": "web-stack.yaml.j2", "directory": "rel/dir"}, {}, "absolute"),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "directory": "/srv/my dir"},
            {},
            "service root",
        ),
        ({"name": "dev", "template": "web-stack.yaml.j2", "vars": {"a-b": 1}}, {}, "variable"),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": WEB, "user": "alice"},
            {},
            "rootless_users",
        ),
        # vars checked against what the template reads (templates/compose/*.vars.json), so
        # rendering never stops on a traceback.
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": {**WEB, "project": "x"}},
            {},
            "vars.project: reserved",
        ),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": {**WEB, "managed_by": 1}},
            {},
            "vars.managed_by: reserved",
        ),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": {**WEB, "port": "8088"}},
            {},
            "vars.port: web-stack.yaml.j2 expects int, got '8088'",
        ),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": {**WEB, "port": True}},
            {},
            "expects int",
        ),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": {"port": 1}},
            {},
            "vars.web_image: required by web-stack.yaml.j2 (str)",
        ),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": {**WEB, "colour": "red"}},
            {},
            "vars.colour: not a variable of web-stack.yaml.j2",
        ),
        ({"name": "dev", "template": "web-stack.yaml.j2", "colour": "red"}, {}, "Extra inputs"),
        # The user's own files.
        ({"name": "dev"}, {}, "exactly one of 'template' or 'file'"),
        (
            {"name": "dev", "template": "web-stack.yaml.j2", "vars": WEB, "file": OWN},
            {},
            "exactly one of 'template' or 'file'",
        ),
        ({"name": "dev", "file": {}}, {}, "exactly one of 'src'"),
        ({"name": "dev", "file": {"src": "/a.yml", "host_path": "/b.yml"}}, {}, "exactly one"),
        ({"name": "dev", "file": {"src": "a.yml"}}, {}, "absolute path"),
        ({"name": "dev", "file": {"host_path": "/home/a b/c.yml"}}, {}, "service root"),
        ({"name": "dev", "file": OWN, "vars": {"x": 1}}, {}, "vars are for a template"),
        (
            {"name": "dev", "file": OWN, "directory": "/srv/elsewhere"},
            {},
            "is not in directory /srv/elsewhere",
        ),
        ({"name": "dev", "file": OWN, "files": {"../x": {"src": "/x"}}}, {}, "not a file name"),
        ({"name": "dev", "file": OWN, "files": {"docker-compose.yml": OWN}}, {}, "itself"),
        ({"name": "dev", "file": OWN, "files": {".env": {"src": "/e", "mode": "rw"}}}, {}, "mode"),
        ({"name": "dev", "file": OWN, "timeout": 5}, {}, "greater than or equal to 10"),
        (
            {"name": "dev", "file": OWN, "user": "alice"},
            {"rootless_users": [{"name": "alice", "linger": False}]},
            "linger: false",
        ),
        (
            {"name": "dev", "file": OWN},
            {"services": [{"name": "podman-compose-dev", "image": "docker.io/library/a:1"}]},
            "the project's boot unit",
        ),
    ],
)
def test_bad_projects_are_rejected(project, data, needle):
    with pytest.raises(ValidationError) as info:
        _projects(project, **data)
    assert needle in str(info.value)


def test_a_project_name_twice_is_rejected():
    project = {"name": "dev", "template": "web-stack.yaml.j2", "vars": WEB}
    with pytest.raises(ValidationError, match="lists a name twice: dev"):
        _projects(project, project)


def test_a_rootless_project_needs_a_declared_user():
    project = {"name": "dev", "template": "web-stack.yaml.j2", "vars": WEB, "user": "alice"}
    cfg = _projects(project, rootless_users=[{"name": "alice"}])
    assert cfg.compose_projects[0].user == "alice"


def test_rendered_values_stay_data():
    """Values from data land in the YAML as JSON scalars: quotes, '#', ': ' and newlines
    cannot add keys or comments (JSON is YAML, so json.loads reads the scalar back)."""
    hostile = 'a "quoted" # not a comment: x\n  injected: true'
    cfg = _projects(
        {
            "name": "dev",
            "template": "web-stack.yaml.j2",
            "vars": {**WEB, "greeting": hostile},
        }
    )
    text = render_compose(cfg.compose_projects[0])
    line = next(line for line in text.splitlines() if line.strip().startswith("GREETING:"))
    assert json.loads(line.split(":", 1)[1]) == hostile
    assert "injected: true" not in text.replace("\\n  injected: true", "")
    assert '- "127.0.0.1:8088:80"' in text


def test_dollar_signs_reach_the_container_as_written():
    """compose expands $VAR and ${VAR} in every string of the file and reads $$ as $: the
    yaml filter doubles each '$', so "pa$word" is not cut to "pa"."""
    cfg = _projects(
        {
            "name": "dev",
            "template": "web-stack.yaml.j2",
            "vars": {**WEB, "greeting": "pa$word ${HOME} $$", "worker_command": ["echo", "$x"]},
        }
    )
    text = render_compose(cfg.compose_projects[0])
    line = next(line for line in text.splitlines() if line.strip().startswith("GREETING:"))
    assert json.loads(line.split(":", 1)[1]) == "pa$$word $${HOME} $$$$"
    assert 'command: ["echo", "$$x"]' in text


def test_bad_vars_are_reported_by_host_and_key():
    from pyinfra.api import Config, Inventory, State

    from model.validate import host_errors

    project = {"name": "dev", "template": "web-stack.yaml.j2", "vars": {**WEB, "project": "x"}}
    inventory = Inventory(([("ws1", {"podman_compose_projects": [project]})], {}))
    State(inventory, Config())
    assert host_errors(inventory.get_host("ws1")) == [
        "ws1: podman_compose_projects[0](dev) (host data in the inventory): Value error, "
        "vars.project: reserved (the template's own project)"
    ]


def test_the_users_own_file_on_the_host_makes_its_directory_the_projects():
    project = _projects(
        {"name": "shop", "file": OWN, "files": {".env": {"host_path": "/home/alice/shop/.env"}}}
    ).compose_projects[0]
    assert project.project_directory("/srv/containers/compose") == "/home/alice/shop"
    assert (project.compose_file, project.unit) == (
        "docker-compose.yml",
        "podman-compose-shop.service",
    )
    copied = _projects({"name": "db", "file": {"src": "/ctl/db.yml"}}).compose_projects[0]
    assert (
        copied.project_directory("/srv/c") == "/srv/c/db" and copied.compose_file == "compose.yaml"
    )
    assert copied.timeout == 300
