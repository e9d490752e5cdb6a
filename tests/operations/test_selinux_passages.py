"""The file-context spec of one directory above a moved store: a regular expression that
matches that path and nothing else (semanage fcontext takes regular expressions)."""

import re

import pytest

from operations.selinux import passage_spec


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
