"""facts/running.py's parsers on real captured output, and the files dump run here by sh."""

import hashlib
import subprocess
from pathlib import Path

from facts.running import dump_command, parse_dump, parse_ps

FIXTURES = Path(__file__).parent / "fixtures"


def _ps_text(path: Path) -> str:
    return path.read_text().rsplit("@@rc=", 1)[0]


def test_ps_reads_the_image_id_and_mounts_on_podman_4_3_and_5():
    # podman 4.3.1 (a bench guest's ServicesState, its root store) ...
    state = (FIXTURES / "facts/guest-debian12/ServicesState.motoko-like-6.txt").read_text()
    root = state.split("@@containers -\n", 1)[1].split("@@images -", 1)[0]
    db0 = next(c for c in parse_ps(root) if c.name == "db0")
    assert db0.image_id == "30485221bc53b9771eec507905ceb65159854ff6a9ce68bc74f80b50f883cca6"
    assert db0.mounts == ("/data",)
    # ... and podman 5.4.2 (the trixie services guest), no mounts.
    trixie = parse_ps(_ps_text(FIXTURES / "qa/trixie-services/services-running.ps@root.txt"))
    web = next(c for c in trixie if c.name == "web")
    assert web.image_id.startswith("7dec26ce8666") and web.mounts == ()


def test_the_dump_carries_records_byte_exact_and_only_those_that_exist(tmp_path):
    record = tmp_path / "my svc" / "image-record"
    record.parent.mkdir()
    text = "# managed by podman-standard\ncurrent abc sha256:def docker.io/x:1\n"
    record.write_text(text)
    secrets = tmp_path / "my svc" / "secrets.env"
    secrets.write_text("PASSWORD=not-in-the-dump\n")
    absent = str(tmp_path / "gone" / "image-record")
    command = dump_command(None, [str(tmp_path / "none")], [str(secrets)], [str(record), absent])
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert "not-in-the-dump" not in out
    dump = parse_dump(out)
    assert dump.records == {str(record): text}
    assert dump.exists == {str(secrets)} and dump.files == {}


def test_the_dump_carries_digests_never_content(tmp_path):
    env = tmp_path / "my project" / ".env"
    env.parent.mkdir()
    env.write_text("TOKEN=not-in-the-dump\n")
    command = dump_command(None, [], [], [], [str(env), str(tmp_path / "absent.yaml")])
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    assert "not-in-the-dump" not in out
    digest = hashlib.sha256(env.read_bytes()).hexdigest()
    assert parse_dump(out).sha256 == {str(env): digest}
