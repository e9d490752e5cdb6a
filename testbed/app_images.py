"""Container images of real server software for the real-host tier: PostgreSQL and Redis from
Debian's own packages (not busybox stand-ins), so services are proven with what they run.

One root tree, debootstrap's bookworm minbase plus ``PACKAGES`` installed natively in a chroot
(no service starts: policy-rc.d) and trimmed of documentation and apt's lists, is packed as one
layer and cached under ``$PODMAN_STANDARD_CACHE/app-images/<recipe hash>/`` as ``images.py``
caches guest images (same lock and rename-into-place). Every image of ``app_images`` shares that
layer, so a guest pulls it once; a service says what to run in its ``command``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from pathlib import Path

from .images import CHROOT_INSTALL, CHROOT_PREAMBLE, MIRROR, _remove_tree, _run_script, cached
from .registry import PATH_ENV, Image, image

RELEASE = "bookworm"
PACKAGES = ("postgresql", "redis-server", "procps")
# PostgreSQL 15 (bookworm): its programs, without Debian's perl wrappers (pg_wrapper).
PG_BIN = "/usr/lib/postgresql/15/bin"
# A data directory the image's postgres user owns: initdb runs there on a container's first start.
PGDATA = "/var/lib/pgdata"
TAG = "library/debian-servers:bookworm"

SCRIPT = (
    CHROOT_PREAMBLE
    + r"""
echo "== debootstrap $RELEASE (minbase)"
debootstrap --variant=minbase "$RELEASE" "$ROOT" "$MIRROR"
"""
    + CHROOT_INSTALL
    + r"""# The package's own cluster is not used: a container makes its own in PGDATA.
in_root pg_dropcluster 15 main || true
install -d -m 700 -o "$(in_root id -u postgres)" -g "$(in_root id -g postgres)" "$ROOT$PGDATA"
in_root apt-get clean
cleanup
echo "== trim"
# PostgreSQL's JIT (LLVM and z3, 130 MiB of the 230) is not what a test proves: the services
# run with jit=off, and a smaller layer is what a guest under emulation pulls and unpacks.
rm -f "$ROOT"/usr/lib/x86_64-linux-gnu/libLLVM-*.so* "$ROOT"/usr/lib/x86_64-linux-gnu/libz3.so*
rm -rf "$ROOT"/usr/lib/postgresql/15/lib/llvmjit* "$ROOT"/usr/lib/postgresql/15/lib/bitcode
rm -rf "$ROOT"/usr/share/i18n "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* \
    "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* "$ROOT"/var/lib/apt/lists/* \
    "$ROOT"/var/cache/apt/* "$ROOT"/var/log/*.log
"""
)


def recipe() -> dict:
    return {
        "release": RELEASE,
        "mirror": MIRROR,
        "packages": list(PACKAGES),
        "pgdata": PGDATA,
        "script": SCRIPT,
    }


def recipe_key() -> str:
    blob = json.dumps(recipe(), sort_keys=True).encode()
    return f"debian-servers-{RELEASE}-{hashlib.sha256(blob).hexdigest()[:16]}"


def build_layer(log=print) -> tuple[str, Path]:
    """``(diff_id, path of the gzip layer)``, built (root, a few minutes) unless cached."""
    key = recipe_key()

    def build(work: Path) -> None:
        (work / "rootfs").mkdir(parents=True)
        env = dict(
            os.environ,
            RELEASE=RELEASE,
            ROOT=str(work / "rootfs"),
            MIRROR=MIRROR,
            PACKAGES=" ".join(PACKAGES),
            PGDATA=PGDATA,
        )
        _run_script(SCRIPT, env, work, log, key)
        diff_id = _pack(work / "rootfs", work / "layer.gz")
        _remove_tree(work / "rootfs")
        (work / "layer.json").write_text(json.dumps({"diff_id": diff_id}) + "\n")

    entry = cached("app-images", key, lambda e: (e / "layer.json").exists(), build, log, key)
    return json.loads((entry / "layer.json").read_text())["diff_id"], entry / "layer.gz"


def _pack(rootfs: Path, out: Path) -> str:
    """The tree as a gzip layer at ``out`` (numeric owners, fixed timestamps); returns the
    uncompressed tar's digest (the config's diff_id)."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--sort=name", "--mtime=@0", "-C", str(rootfs), "-cf", "-", "."],
        stdout=subprocess.PIPE,
    )
    sha = hashlib.sha256()
    with gzip.GzipFile(out, "wb", compresslevel=6, mtime=0) as gz:
        for chunk in iter(lambda: tar.stdout.read(1 << 20), b""):
            sha.update(chunk)
            gz.write(chunk)
    if tar.wait():
        raise RuntimeError(f"tar of {rootfs} failed (exit {tar.returncode})")
    return "sha256:" + sha.hexdigest()


def app_images(log=print) -> dict[str, Image]:
    """The images by ``repository:tag``: one, holding PostgreSQL, its client and Redis."""
    diff_id, path = build_layer(log)
    return {TAG: image([(diff_id, path.read_bytes())], {"Env": [PATH_ENV], "Cmd": ["sh"]})}
