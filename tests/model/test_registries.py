"""Registry credentials and CA certificates in the model, and the auth.json merge that runs on
the host (facts/auth_json.py)."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from pyinfra.api.exceptions import DeployError

from deploys import podman_standard
from facts.auth_json import _read, merge
from model.host_data import CertificateSource, HostData

PEM = (Path(__file__).parents[1] / "fixtures" / "registries-ca.pem").read_text()
MIRROR = "10.0.2.2:5001"


def data(credentials=(), ca=None, users=("vagrant",)):
    mirror = {"location": MIRROR, **({"ca": ca} if ca else {})}
    return {
        "rootless_users": [{"name": u} for u in users],
        "registries": {
            "registries": [
                {"prefix": "docker.io", "mirrors": [mirror]},
                {"prefix": "ghcr.io/acme"},
            ],
            "credentials": list(credentials),
        },
    }


def cred(registry=MIRROR, **extra):
    return {"registry": registry, "username": "bot", "password": {"env": "REG_PW"}, **extra}


def test_credentials_and_ca_accepted():
    cfg = HostData.model_validate(
        data([cred(), cred("ghcr.io/acme", user="vagrant")], ca={"pem": PEM})
    )
    assert [c.user for c in cfg.registries.credentials] == [None, "vagrant"]
    assert cfg.registries.certificates()[MIRROR].pem == PEM


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (data([cred("quay.io/nobody")]), "not a declared registry location or mirror"),
        (data([cred(user="alice")]), "alice is not in rootless_users"),
        (data([cred(), cred()]), "credentials repeated: 10.0.2.2:5001 for root"),
        (data([{"registry": MIRROR, "username": "bot"}]), "needs 'username' and 'password'"),
        (data([cred(password={})]), "exactly one of 'env' or 'file'"),
        (data([cred(username="a:b")]), "no ':'"),
        (data(ca={"pem": PEM.replace("MII", "XXX", 1)}), "is not a PEM certificate"),
        (data(ca={"pem": "hello"}), "is not a PEM certificate"),
        (data(ca={"pem": PEM + "-----BEGIN PRIVATE KEY-----\n"}), "holds a private key"),
        (data(ca={"pem": PEM, "file": "/etc/ca.pem"}), "exactly one of 'file' or 'pem'"),
    ],
)
def test_bad_registry_data_is_refused(value, needle):
    with pytest.raises(ValidationError) as error:
        HostData.model_validate(value)
    assert needle in str(error.value)


def test_a_removed_credential_needs_no_secret():
    cfg = HostData.model_validate(data([{"registry": MIRROR, "present": False}]))
    assert cfg.registries.credentials[0].password is None


def test_ca_file_is_read_and_checked_on_the_controller(tmp_path):
    good, bad = tmp_path / "ca.pem", tmp_path / "bad.pem"
    good.write_text(PEM)
    bad.write_text("not a certificate\n")
    assert CertificateSource(file=str(good)).read() == PEM
    with pytest.raises(ValueError, match=f"{bad} is not a PEM certificate"):
        CertificateSource(file=str(bad)).read()
    with pytest.raises(ValueError, match="cannot read .*missing.pem on the controller"):
        CertificateSource(file=str(tmp_path / "missing.pem")).read()


def test_controller_inputs_missing_stop_before_any_change(tmp_path, monkeypatch):
    monkeypatch.delenv("REG_PW", raising=False)
    monkeypatch.setattr(podman_standard, "host", type("H", (), {"name": "h1"}))
    cfg = HostData.model_validate(
        data([cred(user="vagrant")], ca={"file": str(tmp_path / "nope.pem")})
    )
    with pytest.raises(DeployError) as error:
        podman_standard.registry_inputs(cfg.registries)
    message = str(error.value)
    assert f"h1: podman_registries CA for {MIRROR}: cannot read" in message
    assert f"credentials {MIRROR} (vagrant): environment variable REG_PW is not set" in message
    monkeypatch.setenv("REG_PW", "pw")
    (tmp_path / "nope.pem").write_text(PEM)
    assert podman_standard.registry_inputs(cfg.registries) == {MIRROR: PEM}


HAND = {"auth": "bWU6aGFuZA==", "email": "me@example.com"}


@pytest.mark.parametrize(
    ("doc", "set_", "remove", "wanted"),
    [
        ({}, {MIRROR: "YTpi"}, [], {"auths": {MIRROR: {"auth": "YTpi"}}}),
        # A hand-added entry and other top-level keys stay; ours is replaced whole.
        (
            {
                "auths": {"ghcr.io/hand": HAND, MIRROR: {"auth": "old", "identitytoken": "t"}},
                "credHelpers": {"x.io": "pass"},
            },
            {MIRROR: "new"},
            [],
            {
                "auths": {"ghcr.io/hand": HAND, MIRROR: {"auth": "new"}},
                "credHelpers": {"x.io": "pass"},
            },
        ),
        # Removing a credential removes that entry only; removing an absent one is nothing.
        (
            {"auths": {"ghcr.io/hand": HAND, MIRROR: {"auth": "old"}}},
            {},
            [MIRROR, "quay.io"],
            {"auths": {"ghcr.io/hand": HAND}},
        ),
        ({"auths": None}, {}, [], {"auths": {}}),
    ],
)
def test_auth_json_merge(doc, set_, remove, wanted):
    assert merge(doc, set_, remove) == wanted


@pytest.mark.parametrize(
    ("text", "state"),
    [("{not json", "invalid"), ("[]", "invalid"), ('{"auths": []}', "invalid"), ("{}", "ok")],
)
def test_auth_json_that_is_not_a_document_is_never_rewritten(tmp_path, text, state):
    path = tmp_path / "auth.json"
    path.write_text(text)
    assert _read(str(path))[0] == state
    assert _read(str(tmp_path / "absent.json")) == ("absent", {})


def test_probe_compares_on_the_host_and_answers_only_same_or_differs(tmp_path, monkeypatch):
    from facts import auth_json

    monkeypatch.setattr(auth_json, "auth_path", lambda home: str(tmp_path / "auth.json"))
    secret = "cHVsbC1ib3Q6aHVudGVyMg=="
    stored = {MIRROR: {"auth": secret}, "quay.io": {"auth": "b3RoZXI6b25l"}, "x.io": "odd"}
    (tmp_path / "auth.json").write_text(json.dumps({"auths": stored}))
    wanted = {MIRROR: secret, "quay.io": "bmV3Om9uZQ==", "x.io": "eDp5", "absent.io": "YTpi"}
    found = auth_json.probe(wanted)
    # An entry that is not an object is not compared (so rewritten); an absent key neither.
    assert found["compare"] == {MIRROR: "same", "quay.io": "differs"}
    assert found["entries"] == sorted(stored)
    out = json.dumps(found)
    for value in [*wanted.values(), secret, "hunter2", "b3RoZXI6b25l"]:
        assert value not in out
    # Nothing else in it is a secret or computed from one: the file's metadata and keys.
    assert set(found) == {
        "path",
        "state",
        "owner",
        "group",
        "mode",
        "user_group",
        "entries",
        "compare",
    }
