"""SELinux outputs from real Fedora/RHEL-family hosts, published by others (tests/fixtures/facts/
README.md, section "upstream", says where each came from), read by this package's parsers.

The SELinux fact's own cases (tests/facts/selinux.SELinux/) replay whole captures of its command;
these check the pieces of it that the public outputs show: the mode line and the local file
context listing of `semanage fcontext -l -C`.
"""

from pathlib import Path

from facts import selinux

UPSTREAM = Path(__file__).parent.parent / "fixtures" / "facts" / "upstream"


def _lines(name: str) -> list[str]:
    return (UPSTREAM / name).read_text().splitlines()


def _sestatus(name: str) -> dict[str, str]:
    fields = {}
    for line in _lines(name):
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def test_fedora33_sestatus_enforcing_targeted():
    status = _sestatus("sestatus.fedora33-enforcing.txt")
    assert status["SELinux status"] == "enabled"
    assert status["Loaded policy name"] == "targeted"
    assert status["Current mode"] == "enforcing"
    assert status["Mode from config file"] == "enforcing"


def test_mode_as_sestatus_spells_it_is_read_like_getenforce_s():
    # getenforce prints "Enforcing"; sestatus (and /sys/fs/selinux) the lower-case word.
    current = _sestatus("sestatus.fedora33-enforcing.txt")["Current mode"]
    for word in (current, current.capitalize()):
        state = selinux.SELinux().process(["@@mode", word])
        assert state.mode == "enforcing" and state.enabled
        # No "@@local" section: semanage was not there, no local rules known.
        assert not state.semanage and state.equivalences == {} and state.rules == []


def test_equivalence_listing_with_semanage_trailing_space_and_elided_rules():
    # semanage prints "SELinux Local fcontext Equivalence " with a trailing space; the poster
    # elided the type rules above it with "...".
    lines = _lines("semanage-fcontext-l-C.selinux-list-equivalence.txt")
    assert lines[1].endswith("Equivalence ")
    assert selinux.parse_fcontext_local(lines) == ({"/mnt/export/share./home": "/home"}, [])


def test_equivalence_listing_as_the_fact_reads_it():
    listing = _lines("semanage-fcontext-l-C.selinux-list-equivalence.txt")
    state = selinux.SELinux().process(["@@mode", "Enforcing", "@@local", *listing])
    assert state.semanage
    assert state.equivalences == {"/mnt/export/share./home": "/home"}
    assert state.rules == []


def test_rhel8_equivalence_listing_as_the_fact_reads_it():
    listing = _lines("semanage-fcontext-l-C.rhel8-equivalence.txt")
    state = selinux.SELinux().process(["@@mode", "Enforcing", "@@local", *listing])
    assert state.equivalences == {"/my/apps": "/"} and state.rules == []
