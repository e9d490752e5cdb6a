"""The NVIDIA Container Toolkit source that operations/nvidia_cdi.py writes, against the files
NVIDIA publishes (tests/fixtures/facts/README.md, section "upstream", says where each copy
comes from):

- dnf: ``stable/rpm/nvidia-container-toolkit.repo`` of NVIDIA/libnvidia-container's gh-pages
  branch (what ``https://nvidia.github.io/libnvidia-container/stable/rpm/...`` serves). We write
  its stable section, key for key and line for line, and leave out the disabled experimental
  one. An earlier edition of that file also set ``sslverify=1`` and
  ``sslcacert=/etc/pki/tls/certs/ca-bundle.crt``; NVIDIA removed both (libnvidia-container
  PR #370, 2026-05, for nvidia-container-toolkit issue #1733 / libnvidia-container issue #367:
  Fedora 44 no longer has that bundle, so dnf failed on the repository). We do not carry them:
  dnf verifies TLS by default with the system's CA store.
- apt: ``stable/deb/nvidia-container-toolkit.list`` of the same branch, with ``signed-by``
  inserted by the install guide's own sed
  (docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html,
  "With apt: Ubuntu, Debian", step "Configure the production repository"):
  ``sed 's#deb https://#deb [signed-by=<keyring>] https://#g'``. Its commented experimental
  line is left out, as the dnf experimental section is.

The key: the guide fetches ``https://nvidia.github.io/libnvidia-container/gpgkey`` and runs it
through ``gpg --dearmor`` into ``/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg``. We
keep the armoured text as ``/etc/apt/keyrings/nvidia-container-toolkit.asc`` instead, so the
host needs no gpg: apt-key(8), "SUPPORTED KEYRING FILES", documents that apt >= 1.4 reads "the
ASCII armored format with the "asc" extension", and sources.list(5), "Signed-By", names
/etc/apt/keyrings as the place "for keyrings managed by the system operator" (/usr/share/keyrings
is for keyrings managed by packages). That the key NVIDIA serves is armoured (our download
checks for its ``BEGIN PGP PUBLIC KEY BLOCK`` line) is shown by a maintainer's
``curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey`` in
NVIDIA/nvidia-container-toolkit issue #669, and implied by the guide's ``--dearmor``. The same
URL is the dnf file's ``gpgkey=``.
"""

import configparser
import json
import subprocess
from pathlib import Path

from operations import nvidia_cdi
from operations._common import header
from operations.nvidia_cdi import APT_KEY, DEFAULT_REPOSITORY, SOURCE, _source_content

UPSTREAM = Path(__file__).parents[1] / "fixtures" / "facts" / "upstream"
CASES = Path(__file__).parent / "nvidia_cdi.container_toolkit"
GUIDE_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"


def _ours(family: str) -> str:
    text = _source_content(family, DEFAULT_REPOSITORY).getvalue()
    managed = header(SOURCE)
    assert text.startswith(managed)
    return text[len(managed) :]


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # dnf's keys are case-sensitive names
    parser.read_string(text)
    return parser


def _guide_sed(text: str, keyring: str) -> str:
    """The install guide's sed, run by sed itself, with ``keyring`` in signed-by."""
    expression = f"s#deb https://#deb [signed-by={keyring}] https://#g"
    return subprocess.run(
        ["sed", expression], input=text, capture_output=True, text=True, check=True
    ).stdout


def test_dnf_repo_is_nvidia_s_stable_section():
    upstream_text = (UPSTREAM / "nvidia-container-toolkit.repo.txt").read_text()
    upstream, ours = _ini(upstream_text), _ini(_ours("fedora"))
    assert upstream.sections() == [
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-experimental",
    ]
    assert ours.sections() == ["nvidia-container-toolkit"]
    assert dict(ours["nvidia-container-toolkit"]) == dict(upstream["nvidia-container-toolkit"])
    # Line for line too: the stable section is upstream's first block.
    stable_block = upstream_text.split("\n\n")[0] + "\n"
    assert _ours("fedora") == stable_block


def test_dnf_repo_leaves_out_the_ssl_fields_nvidia_dropped():
    older = _ini((UPSTREAM / "nvidia-container-toolkit.repo.with-ssl-fields.txt").read_text())
    stable = dict(older["nvidia-container-toolkit"])
    assert stable.pop("sslcacert") == "/etc/pki/tls/certs/ca-bundle.crt"
    assert stable.pop("sslverify") == "1"
    ours = dict(_ini(_ours("fedora"))["nvidia-container-toolkit"])
    assert ours == stable
    assert "sslcacert" not in ours and "sslverify" not in ours


def test_dnf_repo_for_a_mirror_keeps_nvidia_s_layout():
    mirror = "https://mirror.example/libnvidia-container"
    section = _ini(_source_content("fedora", mirror).getvalue())["nvidia-container-toolkit"]
    assert section["baseurl"] == f"{mirror}/stable/rpm/$basearch"
    assert section["gpgkey"] == f"{mirror}/gpgkey"


def test_apt_list_is_nvidia_s_stable_line_with_the_guide_s_signed_by():
    upstream_text = (UPSTREAM / "nvidia-container-toolkit.list.txt").read_text()
    with_key = _guide_sed(upstream_text, APT_KEY).splitlines()
    assert with_key == [
        f"deb [signed-by={APT_KEY}] {DEFAULT_REPOSITORY}/stable/deb/$(ARCH) /",
        f"#deb [signed-by={APT_KEY}] {DEFAULT_REPOSITORY}/experimental/deb/$(ARCH) /",
    ]
    active = [line for line in with_key if not line.startswith("#")]
    assert _ours("debian").splitlines() == active
    # The guide's own keyring path gives the line its readers put in place.
    guide_line = _guide_sed(upstream_text, GUIDE_KEYRING).splitlines()[0]
    stable = f"{DEFAULT_REPOSITORY}/stable/deb/$(ARCH) /"
    assert guide_line == f"deb [signed-by={GUIDE_KEYRING}] {stable}"
    assert guide_line.replace(GUIDE_KEYRING, APT_KEY) == active[0]


def test_apt_key_is_the_armoured_key_in_the_operator_s_keyrings():
    assert APT_KEY == "/etc/apt/keyrings/nvidia-container-toolkit.asc"
    assert nvidia_cdi.SOURCE_FILE == {
        "fedora": "/etc/yum.repos.d/nvidia-container-toolkit.repo",
        "debian": "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
    }
    # The fresh Debian install fetches the key the .repo's gpgkey= names, keeps it only when
    # it is armoured, and under the .asc name signed-by reads.
    commands = json.loads((CASES / "fresh_debian_install.json").read_text())["commands"]
    fetch = next(c for c in commands if isinstance(c, str) and c.startswith("k="))
    gpgkey = _ini((UPSTREAM / "nvidia-container-toolkit.repo.txt").read_text())[
        "nvidia-container-toolkit"
    ]["gpgkey"]
    assert fetch.startswith(f"k={APT_KEY} ;")
    assert f"-- {gpgkey} &&" in fetch
    assert 'grep -q "BEGIN PGP PUBLIC KEY BLOCK" "$t"' in fetch
    assert "gpg" not in fetch.replace("gpgkey", "")


def test_case_files_write_what_is_compared_here():
    """The operation cases record the exact files; they are the content compared above."""
    for case, family in (
        ("fresh_fedora_install.json", "fedora"),
        ("fresh_debian_install.json", "debian"),
    ):
        commands = json.loads((CASES / case).read_text())["commands"]
        dest = nvidia_cdi.SOURCE_FILE[family]
        write = next(c for c in commands if isinstance(c, str) and c.startswith(f"d={dest} "))
        body = _source_content(family, DEFAULT_REPOSITORY).getvalue()
        assert "printf '%s' '" + body + "'" in write
