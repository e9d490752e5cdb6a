"""A service's image lifecycle on a real host (issue 18, item 5): a tag change is pulled while
the old container still serves, then swapped in one restart (the gap measured by a poller in
the guest); the image record names the new image and the previous one; prune keeps both and
removes an unused image; a second run changes nothing; ``present: false`` leaves no unit and
no container.

One guest per release from the ``podman`` image variant, one after the other: Debian 12
(plain units, podman 4.3) and Debian 13 (quadlet, podman 5.4); the run configures the
registries (the local registry as docker.io's mirror) and the services only.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from testbed.fleet import GuestSpec, Testbed
from testbed.registry import push, web_image
from tests.realhost.conftest import _TIMINGS

pytestmark = pytest.mark.realhost
GUESTS_AT_ONCE = 1  # one guest at a time: runs beside another one-guest module (tier.py)
MINUTES = 6.1  # a full tier run, 2026-12-02: 367 s (tier.py balances the lanes)

SPECS = {release: GuestSpec(release, "server", "podman") for release in ("bookworm", "trixie")}
DEPLOYS = ("deploys/podman_standard.py", "deploys/services.py")
ROOT = "/srv/containers/apps"
REPO = "library/lifecycle-web"
V1, V2 = f"docker.io/{REPO}:v1", f"docker.io/{REPO}:v2"
UNUSED = "docker.io/library/busybox:latest"  # pulled by hand, used by nothing: prune takes it
PORT = 8088
# In the guest: ask the service every 0.2 s, one line per answer: monotonic time, then the
# page's text or "down". Stopped by the test (kill), bounded by its own deadline.
POLLER = f"""
import time, urllib.request
end = time.monotonic() + 600
with open("/tmp/poll.log", "w", buffering=1) as log:
    while time.monotonic() < end:
        try:
            body = urllib.request.urlopen("http://127.0.0.1:{PORT}/", timeout=1).read()
            answer = body.decode().strip()
        except Exception:
            answer = "down"
        log.write(f"{{time.monotonic():.3f}} {{answer}}\\n")
        time.sleep(0.2)
"""


def web(image: str, present: bool = True) -> list[dict]:
    return [
        {
            "name": "lifecycle-web",
            "image": image,
            "ports": [{"host": PORT, "container": 80, "host_ip": "127.0.0.1"}],
            "stop_timeout": 2,
            "present": present,
        }
    ]


@pytest.fixture(scope="module", params=list(SPECS))
def bed(request, registry, no_shared_guests, tmp_path_factory):
    with _TIMINGS.stage("two tags of one web image, pushed"):
        for tag in ("v1", "v2"):
            push(f"http://{registry.address}", f"{REPO}:{tag}", web_image(f"{tag}\n".encode()))
    spec = SPECS[request.param]
    workdir = tmp_path_factory.mktemp(f"services-lifecycle-{spec.release}")
    testbed = Testbed([spec], workdir, workdir / "hosts.json", registry=registry)
    testbed.timings = _TIMINGS
    testbed.spec = spec
    testbed.up()
    try:
        yield testbed
    finally:
        testbed.down()


def deploy(bed, stack: list[dict], prune: bool = False) -> tuple[int, dict | None, str]:
    bed.data_overrides[bed.spec.name] = {
        "podman_phases": ["config", "services"],
        "podman_service_root": ROOT,
        "podman_socket_enabled": False,
        "podman_rootless_users": [],
        "podman_services": stack,
        "podman_prune_images": prune,
    }
    bed.write_state()
    return bed.pyinfra(deploy=DEPLOYS)


def changed(result: dict) -> list[str]:
    """The operations that changed something, without their deploy's prefix."""
    ops = result["results"]["operations"]
    return [op["name"].split(" | ")[-1] for op in ops if op["success"]]


def sudo(guest, command: str) -> str:
    result = guest.run(f"sudo sh -c {shlex.quote(command)}")
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def record(guest) -> dict[str, list[str]]:
    text = sudo(guest, f"cat {ROOT}/lifecycle-web/image-record")
    return {w[0]: w[1:] for w in (line.split() for line in text.splitlines()) if w[0][0] != "#"}


def image_id(guest, reference: str) -> str:
    return sudo(guest, f"podman image inspect --format '{{{{.Id}}}}' {reference}").strip()


@pytest.fixture(scope="module")
def on_v1(bed):
    guest = bed.guests[bed.spec.name]
    with _TIMINGS.stage(f"{bed.spec.release}: first run: registries + web on v1"):
        returncode, _, stderr = deploy(bed, web(V1))
    assert returncode == 0, stderr[-6000:]
    sudo(guest, f"podman pull -q {UNUSED} >/dev/null")
    return guest


def test_a_tag_change_is_pulled_while_the_old_container_serves(on_v1, bed):
    guest = on_v1
    v1 = record(guest)["current"]
    assert v1[0] == image_id(guest, V1) and v1[2] == V1
    poll = f"nohup python3 -c {shlex.quote(POLLER)} </dev/null >/dev/null 2>&1 &"
    sudo(guest, f"{poll} echo $! > /tmp/poll.pid")
    time.sleep(2)
    started = float(sudo(guest, "python3 -c 'import time; print(time.monotonic())'"))
    with _TIMINGS.stage(f"{bed.spec.release}: tag change run (v1 -> v2, prune on)"):
        returncode, result, stderr = deploy(bed, web(V2), prune=True)
    time.sleep(2)
    sudo(guest, "kill $(cat /tmp/poll.pid)")
    assert returncode == 0, stderr[-6000:]
    assert changed(result) == ["Service lifecycle-web", "Prune images no service needs"]
    answers = [line.split(" ", 1) for line in sudo(guest, "cat /tmp/poll.log").splitlines()]
    answers = [(float(t), a) for t, a in answers if float(t) >= started]
    # podman's own events: the pull of v2 came before the v1 container was stopped.
    events = sudo(
        guest,
        "podman events --stream=false --since 10m --format '{{.Time}} {{.Status}} {{.Name}}'",
    )
    pulled = [line for line in events.splitlines() if " pull " in line and V2 in line]
    stopped = [line for line in events.splitlines() if " died " in line or " stop " in line]
    assert pulled and stopped, events
    assert pulled[0] < stopped[0], events  # ISO timestamps, same zone: text order is time order
    last_v1 = max(t for t, a in answers if a == "v1")
    first_v2 = min(t for t, a in answers if a == "v2")
    gap = first_v2 - last_v1
    down = [t for t, a in answers if a == "down"]
    print(
        f"\n{bed.spec.release}: tag change: v1 answered until {last_v1 - started:.1f}s into "
        f"the run, v2 from {first_v2 - started:.1f}s: gap {gap:.1f}s ({len(down)} failed "
        "polls, 0.2 s apart)"
    )
    # v1 kept answering through the pull; the swap is one restart, not a pull.
    assert all(a in ("v1", "down") for t, a in answers if t < last_v1)
    assert all(a == "v2" for t, a in answers if t > first_v2)
    assert gap < 30, gap
    # The record moved: v2 current, v1 previous.
    now = record(guest)
    assert now["current"][0] == image_id(guest, V2) and now["current"][2] == V2
    assert now["previous"][0] == v1[0]
    # Prune kept v1 (previous, for a rollback) and v2, removed the unused image.
    images = json.loads(sudo(guest, "podman images --format json"))
    ids = {i["Id"] for i in images}
    assert {v1[0], now["current"][0]} <= ids
    assert not any(UNUSED in (i.get("Names") or []) for i in images), images


def test_a_second_run_with_prune_changes_nothing(on_v1, bed):
    with _TIMINGS.stage(f"{bed.spec.release}: second run (no change, prune on)"):
        returncode, result, stderr = deploy(bed, web(V2), prune=True)
    assert returncode == 0, stderr[-6000:]
    assert changed(result) == []


def test_removal_leaves_no_unit_and_no_container(on_v1, bed):
    guest = on_v1
    with _TIMINGS.stage(f"{bed.spec.release}: removal run (present: false)"):
        returncode, _, stderr = deploy(bed, web(V2, present=False))
    assert returncode == 0, stderr[-6000:]
    assert sudo(guest, "systemctl show -p LoadState --value lifecycle-web.service").strip() == (
        "not-found"
    )
    units = "ls /etc/systemd/system/ /etc/containers/systemd/ 2>/dev/null"
    assert sudo(guest, f"{units} | grep -c lifecycle-web || true").strip() == "0"
    assert "lifecycle-web" not in sudo(guest, "podman ps -a --format '{{.Names}}'").split()
