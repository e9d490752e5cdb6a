"""SELinux enforcing on a real host with its container store moved to a second drive (issue
"motoko's platform", item 1 and 5): Debian 13 with Debian's SELinux policy (refpolicy, whose
container module labels /var/lib/containers/storage ``container_var_lib_t``, its layers
``container_ro_file_t``, and confines podman in a systemd unit as ``podman_t``), booted from
the testbed's ``selinux`` image and switched to enforcing before anything runs.

- The server's converge (storage device at /space, graphroot /space/containers/engine/podman)
  gives the store the labels of the default one and the directories above it a type the
  engine may search; verify's two SELinux criteria then pass: the store's label, and a test
  container started from a systemd unit (as services are) runs as ``container_t``.
- The test image is pulled from root's shell (below), which on Debian's policy leaves the
  layer directories ``container_var_lib_t``; the next converge restores the policy's labels,
  and the one after changes nothing.
- Without the rules (all local file-context rules deleted, /space restored to the policy's
  ``default_t``), both criteria fail: the store's label is named, and podman in a unit cannot
  reach the store (the kernel's denial is ``podman_t`` on ``default_t``).
- The next converge puts the rules back and both pass again.

Debian's policy, not ours, needs three things of the test: the test container has no
network (``/usr/lib/podman/netavark`` is ``lib_t`` there, which ``podman_t`` may not
execute); its image is pulled from root's shell first (``podman_t`` may not connect to the
testbed registry's port); and podman run from root's shell (that pull, the converge's facts) is
unconfined and leaves files in /run and /dev/shm that the policy gives no container type,
which the confined engine may then not open; they are removed before each confined run (no
container runs then), as a reboot would.

With ``PODMAN_STANDARD_CAPTURE_DIR`` set, the SELinux fact's raw output in each state and the
criteria's probe outputs are written there (the fixtures under
tests/fixtures/facts/guest-debian13-selinux/ and tests/fixtures/qa/trixie-selinux/ came from
such a run).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from pyinfra.api import StringCommand

from facts.qa import TEST_IMAGE, Probe, criteria_for, evaluate
from facts.selinux import SELinux, label_differs
from model import HostData
from testbed.fleet import GuestSpec, Testbed
from tests.realhost.conftest import _TIMINGS

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one guest: runs beside another one-guest module (tier.py)
MINUTES = 5.3  # a full tier run, 2026-12-02: 317 s (tier.py balances the lanes)

SPEC = GuestSpec("trixie", "server", "selinux")
DEPLOYS = ("deploys/container_storage.py", "deploys/podman_standard.py")
GRAPHROOT = "/space/containers/engine/podman"
CRITERIA = ("selinux-store-label", "selinux-enforcing-container")
# What an unconfined podman leaves in /run and /dev/shm (Debian's policy gives it var_run_t,
# var_lock_t, tmpfs_t; the confined engine may not open them).
RUNTIME = "/run/containers /run/libpod /run/lock/netavark.lock /dev/shm/libpod_lock"


def sudo(guest, command: str, check: bool = True):
    result = guest.run(f"sudo sh -c {shlex.quote(command)}", timeout=300)
    if check:
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


def capture(name: str, text: str) -> None:
    where = os.environ.get("PODMAN_STANDARD_CAPTURE_DIR")
    if where:
        path = Path(where) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def selinux_fact(guest, state: str):
    """The SELinux fact as pyinfra reads it (its command, as root), raw output kept."""
    fact = SELinux()
    command = StringCommand(fact.command(roots=[GRAPHROOT])).get_raw_value()
    output = sudo(guest, command).stdout
    capture(f"SELinux.{state}.txt", output)
    return fact.process(output.splitlines())


def criteria(guest, cfg: HostData, state: str) -> dict:
    """verify's two SELinux criteria, run on the guest as verify runs them (root, sh)."""
    sudo(guest, f"podman pull -q {TEST_IMAGE} >/dev/null")  # see the module's docstring
    sudo(guest, f"rm -rf {RUNTIME}")
    checks = {}
    for criterion in (c for c in criteria_for(cfg) if c.id in CRITERIA):
        results = {}
        for key, command in criterion.commands.items():
            raw = sudo(guest, Probe().command(command), check=False).stdout
            capture(f"{state}/{criterion.id}.{key}.txt", raw)
            results[key] = Probe().process(raw.splitlines())
        checks[criterion.id] = evaluate(criterion, results, cfg)
    return checks


def changed(result: dict) -> list[str]:
    ops = result["results"]["operations"]
    return [op["name"].split(" | ")[-1] for op in ops if op["success"]]


@pytest.fixture(scope="module")
def bed(registry, no_shared_guests, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("selinux")
    testbed = Testbed([SPEC], workdir, workdir / "hosts.json", registry=registry)
    testbed.timings = _TIMINGS
    testbed.up()
    try:
        guest = testbed.guests[SPEC.name]
        sudo(guest, "setenforce 1")
        assert sudo(guest, "getenforce").stdout.strip() == "Enforcing"
        yield testbed
    finally:
        testbed.down()


@pytest.fixture(scope="module")
def cfg() -> HostData:
    return HostData(host_class="server", graphroot=GRAPHROOT)  # all the two criteria read


@pytest.fixture(scope="module")
def converged(bed):
    with _TIMINGS.stage("first converge (storage device, podman standard)"):
        rc, result, stderr = bed.pyinfra(deploy=DEPLOYS)
    assert rc == 0, stderr[-6000:]
    return result


def test_the_converge_labels_the_moved_store_and_a_confined_container_runs(bed, cfg, converged):
    assert "SELinux labels of the container store" in changed(converged)
    guest = bed.guests[SPEC.name]
    state = selinux_fact(guest, "after-converge")
    assert state.mode == "enforcing"
    assert state.equivalences == {GRAPHROOT: "/var/lib/containers/storage"}
    assert {r.spec: r.context.split(":")[2] for r in state.rules} == {
        "/space": "var_t",
        "/space/containers": "var_t",
        "/space/containers/engine": "var_t",
    }
    assert {p: lbl.actual.split(":")[2] for p, lbl in state.parents.items()} == {
        "/space/containers/engine": "var_t",
        "/space/containers": "var_t",
        "/space": "var_t",
    }
    assert state.labels[GRAPHROOT].actual.split(":")[2] == "container_var_lib_t"
    with _TIMINGS.stage("SELinux criteria (labelled)"):
        checks = criteria(guest, cfg, "labelled")
    assert all(c.passed for c in checks.values()), checks
    assert ":container_t:" in checks["selinux-enforcing-container"].found
    assert checks["selinux-store-label"].found.split(":")[2] == "container_var_lib_t"
    # The test image, pulled from root's shell (unconfined: no type transition on Debian's
    # policy), left the layer directories container_var_lib_t where the policy says
    # container_ro_file_t.
    stored = selinux_fact(guest, "after-a-confined-run")
    differing = {p for p, lbl in stored.labels.items() if label_differs(lbl.actual, lbl.expected)}
    layers = {f"{GRAPHROOT}/{d}" for d in ("overlay", "overlay-images", "overlay-layers")}
    assert differing == layers, differing
    assert {stored.labels[p].expected.split(":")[2] for p in layers} == {"container_ro_file_t"}


def test_the_next_converge_restores_those_labels_and_the_one_after_changes_nothing(bed, converged):
    guest = bed.guests[SPEC.name]
    with _TIMINGS.stage("second converge (labels an unconfined pull left)"):
        rc, result, stderr = bed.pyinfra(deploy=DEPLOYS)
    assert rc == 0, stderr[-6000:]
    assert changed(result) == ["SELinux labels of the container store"]
    state = selinux_fact(guest, "restored")
    assert not [p for p, lbl in state.labels.items() if label_differs(lbl.actual, lbl.expected)]
    assert state.labels[f"{GRAPHROOT}/overlay"].actual.split(":")[2] == "container_ro_file_t"
    with _TIMINGS.stage("third converge"):
        rc, result, stderr = bed.pyinfra(deploy=DEPLOYS)
    assert rc == 0, stderr[-6000:]
    assert changed(result) == []


def test_without_the_rules_both_criteria_fail_and_the_next_converge_repairs(bed, cfg, converged):
    guest = bed.guests[SPEC.name]
    sudo(guest, "semanage fcontext -D && restorecon -R /space")
    state = selinux_fact(guest, "without-rules")
    assert state.equivalences == {} and state.rules == []
    assert state.labels[GRAPHROOT].actual.split(":")[2] == "default_t"
    assert state.parents["/space"].actual.split(":")[2] == "default_t"
    with _TIMINGS.stage("SELinux criteria (without the rules)"):
        checks = criteria(guest, cfg, "without-rules")
    assert not checks["selinux-store-label"].passed
    assert checks["selinux-store-label"].found.split(":")[2] == "default_t"
    confined = checks["selinux-enforcing-container"]
    assert not confined.passed and "/space" in confined.found, confined
    denials = sudo(guest, "journalctl -k -q --no-pager | grep 'avc:  denied' | tail -n 20").stdout
    capture("without-rules/denials.txt", denials)
    assert "scontext=system_u:system_r:podman_t:s0" in denials
    assert "tcontext=system_u:object_r:default_t:s0" in denials

    # The converge writes its rules in one semanage import: a line that fails leaves none of
    # them written (the lines before it included).
    with _TIMINGS.stage("semanage import with a failing line"):
        failing = sudo(
            guest,
            "printf '%s\\n' 'fcontext -a -t var_t /space' "
            "'fcontext -a -t no_such_type_t /space/containers' | semanage import",
            check=False,
        )
    assert failing.returncode != 0, failing.stdout + failing.stderr
    assert "no_such_type_t" in failing.stderr, failing.stderr
    assert sudo(guest, "semanage fcontext -l -C").stdout.strip() == ""

    with _TIMINGS.stage("repairing converge"):
        rc, result, stderr = bed.pyinfra(deploy=DEPLOYS)
    assert rc == 0, stderr[-6000:]
    assert changed(result) == ["SELinux labels of the container store"]
    with _TIMINGS.stage("SELinux criteria (repaired)"):
        checks = criteria(guest, cfg, "repaired")
    assert all(c.passed for c in checks.values()), checks
