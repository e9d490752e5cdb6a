"""The file-context spec of one directory above a moved store: a regular expression that
matches that path and nothing else (semanage fcontext takes regular expressions); and how the
local rules are written: one ``semanage import`` where it reads every argument whole."""

import re
import shlex
import subprocess

import pytest

from operations.selinux import file_contexts, passage_spec


@pytest.mark.parametrize(
    "path",
    ["/space", "/srv/my.data", "/data+x/a(b)", "/m[1]/{2}", "/a|b/c^d$e*f?g", "/x\\y"],
)
def test_a_passage_spec_names_its_directory_alone(path):
    spec = passage_spec(path)
    assert re.fullmatch(spec, path)
    for other in (path + "/sub", path + "x", "/" + path.lstrip("/").replace("/", "Z", 1)):
        if other != path:
            assert not re.fullmatch(spec, other), (spec, other)


def test_plain_paths_are_their_own_spec():
    assert passage_spec("/space/containers/engine") == "/space/containers/engine"
    assert passage_spec("/srv/my.data") == r"/srv/my\.data"


def _commands(rules):
    return [str(c.get_raw_value()) for c in file_contexts(rules)]


def test_rules_go_to_semanage_import_as_one_transaction():
    rules = [
        ["-a", "-e", "/var/lib/containers/storage", "/space/containers/engine/podman"],
        ["-a", "-t", "var_t", passage_spec("/space")],
        ["-a", "-t", "var_t", passage_spec("/data+x/a(b)")],
    ]
    (command,) = _commands(rules)
    printed, consumer = command.rsplit(" | ", 1)
    assert consumer == "semanage import"
    out = subprocess.run(["sh", "-c", printed], capture_output=True, text=True, check=True).stdout
    # semanage import splits each line on white space (its mkargv): the same arguments.
    assert [line.split() for line in out.splitlines()] == [["fcontext", *r] for r in rules]


@pytest.mark.parametrize("odd", ["/srv/my store", "/srv/it's", '/srv/a"b', "/srv/tab\there"])
def test_an_argument_import_would_split_or_unquote_gets_calls_of_its_own(odd):
    rules = [["-a", "-e", "/var/lib/containers/storage", odd], ["-a", "-t", "var_t", "/srv"]]
    assert _commands(rules) == [
        "semanage fcontext -a -e /var/lib/containers/storage " + shlex.quote(odd),
        "semanage fcontext -a -t var_t /srv",
    ]


def test_one_rule_is_one_plain_call():
    assert _commands([["-m", "-e", "/var/lib/containers/storage", "/srv/podman"]]) == [
        "semanage fcontext -m -e /var/lib/containers/storage /srv/podman"
    ]
    assert _commands([]) == []
