"""Registry credentials and CA certificates (issue 15) on a real Debian 13 guest (podman 5,
installed with the image): a private registry on the host's loopback, behind TLS from a CA
made for this session and htpasswd logins (``testbed.registry.AuthRegistry``, serving the
testbed's images), becomes pullable for root and for the rootless user vagrant only after the
deploy. Before it, a pull fails on TLS (verification is on); a wrong password fails the run
naming the registry and the user and leaves vagrant's auth.json as it was; no secret appears
in any output, ``--debug`` included; auth.json modes and owners are exact; an entry added by
hand survives; a service of root's and one of vagrant's, and vagrant's compose project, pull
with the deployed logins; a second run changes nothing (its AuthFile facts, printed with
``-vvv``, answer only same/differs: no digest of a secret leaves the guest); a removed
credential removes its entry only; a CA no longer declared goes, one placed by hand stays."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facts.compose import PROJECT_LABEL, as_user
from facts.qa import Probe
from testbed.fleet import REPO, GuestSpec, Testbed
from testbed.registry import AuthRegistry
from tests.realhost.conftest import _TIMINGS

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one guest: runs beside another one-guest module (tier.py)
MINUTES = 6.7  # a full tier run, 2026-12-02: 404 s (tier.py balances the lanes)

SPEC = GuestSpec("trixie", "workstation", "podman")
DEPLOY = "deploys/podman_standard.py"
HAND = {"hand.example": {"auth": base64.b64encode(b"me:hand-made").decode()}}
ROOT_AUTH = "/root/.config/containers/auth.json"
USER_AUTH = "/home/vagrant/.config/containers/auth.json"
ENV = "PODMAN_STANDARD_TEST_REGISTRY_PASSWORD"
CAPTURE_ENV = "PODMAN_STANDARD_CAPTURE_DIR"
HAND_CA = "/etc/containers/certs.d/hand.example:5000/ca.crt"
COMPOSE_PORT = 8087


def sudo(guest, command: str) -> str:
    result = guest.run(f"sudo sh -c {json.dumps(command)}")
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def private(registry, tmp_path_factory, no_shared_guests):
    """The TLS + htpasswd registry, its users' passwords (made now), the guest booted, and
    the controller's secret files."""
    passwords = {
        "root-puller": secrets.token_urlsafe(18),
        "vagrant-puller": secrets.token_urlsafe(18),
    }
    with _TIMINGS.stage("registry with TLS + htpasswd start"):
        server = AuthRegistry(registry, passwords).start()
    workdir = tmp_path_factory.mktemp("registries")
    bed = Testbed([SPEC], workdir, workdir / "hosts.json", registry=registry)
    bed.timings = _TIMINGS
    root_pw = workdir / "root-password"
    root_pw.write_text(passwords["root-puller"] + "\n")
    root_pw.chmod(0o600)
    try:
        bed.up()
        bed.server, bed.passwords, bed.root_pw = server, passwords, root_pw
        bed.location = f"10.0.2.2:{server.port}"
        bed.outputs = []
        yield bed
    finally:
        bed.down()
        server.stop()


def deploy(
    bed,
    vagrant_password: str,
    root_present: bool = True,
    debug: bool = False,
    services: list | None = None,
    compose: list | None = None,
    ca: bool = True,
    dry: bool = False,
):
    """The config phase with the private registry declared (CA from a controller file unless
    not ``ca``, root's password from a file, vagrant's from the environment), or with
    ``services`` the services deploy, with ``compose`` the compose deploy; (returncode,
    changed ops, output). ``debug``: ``--debug -vvv`` (facts' input and output printed too)."""
    loc = bed.location
    bed.data_overrides[SPEC.name] = {
        "podman_phases": ["config", "services"] if services or compose else ["config"],
        "podman_services": services or [],
        "podman_compose_projects": compose or [],
        "podman_registries": {
            "registries": [
                {
                    "prefix": "docker.io",
                    "mirrors": [{"location": bed.registry.guest_address, "insecure": True}],
                },
                {"prefix": loc, **({"ca": {"file": str(bed.server.ca)}} if ca else {})},
            ],
            "credentials": [
                {"registry": loc, "present": False}
                if not root_present
                else {
                    "registry": loc,
                    "username": "root-puller",
                    "password": {"file": str(bed.root_pw)},
                },
                {
                    "registry": loc,
                    "user": "vagrant",
                    "username": "vagrant-puller",
                    "password": {"env": ENV},
                },
            ],
        },
    }
    bed.write_state()
    args = ("--debug", "-vvv") if debug else ()
    deploy_file = "deploys/services.py" if services else "deploys/compose.py" if compose else DEPLOY
    if dry:
        return dry_run(bed, args, vagrant_password)
    returncode, result, stderr = bed.pyinfra(*args, deploy=deploy_file, env={ENV: vagrant_password})
    # A run that succeeds prints its JSON (a failed one may print none): else it broke.
    assert result is not None or returncode != 0, stderr[-4000:]
    output = json.dumps(result) + stderr
    bed.outputs.append(output)
    changed = [
        op["name"].rsplit(" | ", 1)[-1]
        for op in (result or {}).get("results", {}).get("operations", [])
        if op.get("success")
    ]
    return returncode, changed, output


def dry_run(bed, args: tuple, vagrant_password: str):
    """``pyinfra --dry --diff`` of the config phase as a user runs it: without ``-y`` (with
    it pyinfra skips change detection, so no fact would run); (returncode, [], output)."""
    command = [sys.executable, "-m", "pyinfra", "--dry", "--diff", *args]
    with _TIMINGS.stage("pyinfra --dry --diff"):
        result = subprocess.run(
            [*command, str(bed.inventory_path), DEPLOY],
            cwd=REPO,
            env={**bed.pyinfra_env(), ENV: vagrant_password},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
    output = result.stdout + result.stderr
    bed.outputs.append(output)
    return result.returncode, [], output


def pull(guest, location: str, as_root: bool, image: str = "library/busybox:latest"):
    command = f"podman pull -q {location}/{image}"
    return guest.run(f"sudo {command}" if as_root else command, timeout=300)


def test_without_the_ca_a_pull_fails_on_tls(private):
    guest = private.guests[SPEC.name]
    for as_root in (True, False):
        result = pull(guest, private.location, as_root=as_root)
        assert result.returncode != 0
        assert "certificate" in (result.stderr + result.stdout).lower(), result.stderr


def test_a_wrong_password_fails_naming_registry_and_user(private):
    guest = private.guests[SPEC.name]
    # An entry this package does not manage, written by vagrant itself.
    guest.run(
        "mkdir -p ~/.config/containers && umask 077 && "
        f"printf '%s' '{json.dumps({'auths': HAND})}' > ~/.config/containers/auth.json",
        check=True,
    )
    private.wrong = "wrong-" + secrets.token_urlsafe(12)
    returncode, _, output = deploy(private, private.wrong, debug=True)
    assert returncode != 0
    assert f"registry {private.location}: the registry refuses the login of vagrant's" in output
    # vagrant's file is as it was: the refused entry never replaced it.
    assert json.loads(sudo(guest, f"cat {USER_AUTH}")) == {"auths": HAND}
    for text in _secret_forms(private):
        assert text not in output


def test_after_the_deploy_root_and_vagrant_pull(private):
    guest = private.guests[SPEC.name]
    # pyinfra connects as vagrant: root's upload of the secret is handed over with sudo.
    assert guest.run("id -un", check=True).stdout.strip() == "vagrant"
    returncode, changed, output = deploy(private, private.passwords["vagrant-puller"], debug=True)
    assert returncode == 0, output[-4000:]
    assert "Registry credentials of vagrant" in changed
    for as_root in (True, False):
        result = pull(guest, private.location, as_root)
        assert result.returncode == 0, result.stderr
    # The registry does want a login: with no credentials the same pull is refused.
    refused = guest.run(
        "echo '{}' > /tmp/empty.json && sudo podman pull -q --authfile /tmp/empty.json "
        f"{private.location}/library/alpine:latest"
    )
    assert refused.returncode != 0
    said = (refused.stderr + refused.stdout).lower()
    assert "unauthorized" in said or "authentication required" in said, refused.stderr


def test_files_modes_owners_and_the_hand_added_entry(private):
    guest = private.guests[SPEC.name]
    ca = f"/etc/containers/certs.d/{private.location}/ca.crt"
    stats = sudo(guest, f"stat -c '%U %G %a %n' {ROOT_AUTH} {USER_AUTH} {ca}").splitlines()
    assert stats == [
        f"root root 600 {ROOT_AUTH}",
        f"vagrant vagrant 600 {USER_AUTH}",
        f"root root 644 {ca}",
    ]
    user = json.loads(sudo(guest, f"cat {USER_AUTH}"))["auths"]
    assert (
        sorted(user) == sorted([*HAND, private.location])
        and user["hand.example"] == HAND["hand.example"]
    )
    assert sorted(json.loads(sudo(guest, f"cat {ROOT_AUTH}"))["auths"]) == [private.location]


def test_verify_checks_each_login_against_the_registry(private, tmp_path):
    returncode, _, stderr = private.pyinfra(
        deploy="deploys/verify.py", env={"PODMAN_STANDARD_REPORT_DIR": str(tmp_path)}
    )
    private.outputs.append(stderr)
    report = json.loads((tmp_path / "verify.json").read_text())
    (check,) = [c for c in report["hosts"][SPEC.name] if c["id"] == "registry-logins"]
    assert check["passed"], check
    assert check["found"] == "2 registry login(s) accepted"
    # What the criterion reads, as the Probe fact sees it, for the fast tier's fixtures: in
    # CAPTURE_ENV's folder when set (pytest's own temporary folders are rotated away).
    capture = Path(os.environ.get(CAPTURE_ENV) or private.workdir) / "registries-capture"
    capture.mkdir(parents=True, exist_ok=True)
    guest, loc = private.guests[SPEC.name], private.location
    wrong = {"auths": {loc: {"auth": base64.b64encode(b"vagrant-puller:wrong").decode()}}}
    probes = {
        "accepted": as_user("vagrant", f"podman login {loc} </dev/null"),
        "not-logged-in": f"podman login --authfile /tmp/empty.json {loc} </dev/null",
        "refused": f"podman login --authfile /tmp/wrong.json {loc} </dev/null",
    }
    guest.run(f"echo '{json.dumps(wrong)}' > /tmp/wrong.json", check=True)
    for name, command in probes.items():
        out = guest.run(f"sudo sh -c {shlex.quote(Probe().command(command))}").stdout
        (capture / f"registry-logins.{name}.txt").write_text(out)


def test_services_pull_with_the_deployed_logins(private):
    """A root service and a rootless one of vagrant's, on images neither has pulled: their
    units pull at start with root's and vagrant's credentials."""
    loc = private.location
    services = [
        {"name": "priv-root", "image": f"{loc}/library/nginx:alpine"},
        {
            "name": "priv-user",
            "user": "vagrant",
            "image": f"{loc}/library/alpine:latest",
            "command": ["sleep", "3600"],
        },
    ]
    returncode, changed, output = deploy(
        private, private.passwords["vagrant-puller"], services=services
    )
    assert returncode == 0, output[-4000:]
    guest = private.guests[SPEC.name]
    states = {
        "priv-root": "systemctl is-active priv-root.service",
        "priv-user": "systemctl --user --machine=vagrant@.host is-active priv-user.service",
    }
    deadline = time.monotonic() + 240
    while True:
        found = {n: guest.run(f"sudo {c}").stdout.strip() for n, c in states.items()}
        if all(v == "active" for v in found.values()) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert found == {"priv-root": "active", "priv-user": "active"}
    images = {
        "root": sudo(guest, "podman images --format '{{.Repository}}:{{.Tag}}'"),
        "vagrant": guest.run("podman images --format '{{.Repository}}:{{.Tag}}'").stdout,
    }
    assert f"{loc}/library/nginx:alpine" in images["root"]
    assert f"{loc}/library/alpine:latest" in images["vagrant"]


def test_a_rootless_compose_project_pulls_with_the_user_s_login(private):
    """vagrant's compose project on an image of the private registry that vagrant has not
    pulled (root's service pulled it into root's store): podman-compose pulls it with
    vagrant's deployed login."""
    guest, loc = private.guests[SPEC.name], private.location
    image = f"{loc}/library/nginx:alpine"
    listed = "podman images --format '{{.Repository}}:{{.Tag}}'"
    assert image not in guest.run(listed, check=True).stdout.split()
    projects = [
        {
            "name": "privstack",
            "template": "web-stack.yaml.j2",
            "user": "vagrant",
            "vars": {"web_image": image, "port": COMPOSE_PORT},
        }
    ]
    returncode, changed, output = deploy(
        private, private.passwords["vagrant-puller"], compose=projects
    )
    assert returncode == 0, output[-4000:]
    assert changed == ["Compose project privstack"]
    assert image in guest.run(listed, check=True).stdout.split()
    running = guest.run(
        f"podman ps --filter label={PROJECT_LABEL}=privstack --filter status=running "
        "--format '{{.Image}}'",
        check=True,
    ).stdout.split()
    assert running == [image, image], running


def test_second_run_changes_nothing(private):
    returncode, changed, output = deploy(private, private.passwords["vagrant-puller"], debug=True)
    assert returncode == 0, output[-4000:]
    assert changed == []
    # With -vvv pyinfra prints each fact's output: the AuthFile facts of root and vagrant
    # answer "same" for the registry, and hold nothing else about the entries but their keys.
    answers = [
        json.loads(line[line.index("{") :])
        for line in output.splitlines()
        if '"compare": {' in line and '"entries": [' in line
    ]
    assert len(answers) >= 2, output[-4000:]
    for answer in answers:
        assert answer["compare"] == {private.location: "same"}, answer
        assert set(answer) == {
            *("compare", "entries", "group", "mode", "owner", "path", "state", "user_group")
        }
    assert "Loaded fact facts.registries.AuthFile (_stdin=(secret, not shown)" in output


def test_a_dry_diff_run_with_a_new_password_shows_no_secret(private):
    """``--dry --diff`` with another password for vagrant: the change is detected (the
    on-host comparison answers "differs") and nothing is written or shown."""
    guest = private.guests[SPEC.name]
    before = sudo(guest, f"cat {USER_AUTH}")
    private.dry = "dry-" + secrets.token_urlsafe(12)
    returncode, _, output = deploy(private, private.dry, debug=True, dry=True)
    assert returncode == 0, output[-4000:]
    assert "Detected changes" in output, output[-4000:]
    assert f'"compare": {{"{private.location}": "differs"}}' in output
    assert sudo(guest, f"cat {USER_AUTH}") == before


def test_a_removed_credential_and_ca_remove_only_what_the_package_wrote(private):
    """root's credential and the registry's CA no longer declared: root's entry and the CA
    this package placed go; vagrant's entries and a CA placed by hand stay."""
    guest = private.guests[SPEC.name]
    ours = f"/etc/containers/certs.d/{private.location}"
    sudo(guest, f"mkdir -p {HAND_CA.rsplit('/', 1)[0]} && cp {ours}/ca.crt {HAND_CA}.tmp")
    sudo(guest, f"sed 1d {HAND_CA}.tmp > {HAND_CA} && rm {HAND_CA}.tmp")  # no header: by hand
    hand_ca = sudo(guest, f"cat {HAND_CA}")
    assert "managed by" not in hand_ca and "BEGIN CERTIFICATE" in hand_ca
    returncode, changed, output = deploy(
        private, private.passwords["vagrant-puller"], root_present=False, ca=False
    )
    assert returncode == 0, output[-4000:]
    assert changed == ["Registry CA certificates", "Registry credentials of root"]
    assert json.loads(sudo(guest, f"cat {ROOT_AUTH}"))["auths"] == {}
    assert sorted(json.loads(sudo(guest, f"cat {USER_AUTH}"))["auths"]) == sorted(
        [*HAND, private.location]
    )
    assert guest.run(f"test -e {ours}").returncode == 1  # the file and its empty directory
    assert sudo(guest, f"cat {HAND_CA}") == hand_ca
    returncode, changed, output = deploy(
        private, private.passwords["vagrant-puller"], root_present=False, ca=False
    )
    assert (returncode, changed) == (0, []), output[-4000:]


def test_no_secret_in_any_output(private):
    assert len(private.outputs) >= 2
    for output in private.outputs:
        for text in _secret_forms(private):
            assert text not in output


def _secret_forms(bed) -> list[str]:
    """Each password as it is, as auth.json and a Basic header carry it, and the common
    digests of both."""
    pairs = [
        *bed.passwords.items(),
        ("vagrant-puller", getattr(bed, "wrong", "")),
        ("vagrant-puller", getattr(bed, "dry", "")),
    ]
    forms = []
    for user, password in pairs:
        if password:
            auth = base64.b64encode(f"{user}:{password}".encode()).decode()
            forms += [password, auth]
            for value in (password, auth):
                for algorithm in ("md5", "sha1", "sha256", "sha512"):
                    forms.append(hashlib.new(algorithm, value.encode()).hexdigest())
    return forms
