"""A local container registry on 127.0.0.1 holding tiny busybox images, so guests can pull
``docker.io/library/...`` through a mirror without reaching any public registry.

The registry is Debian's ``docker-registry`` (distribution 2.8). Images are built here in Python
from Debian's ``busybox-static`` and pushed over the registry HTTP API (no container engine on the
build machine). Guests under qemu user-mode networking reach the host's loopback as 10.0.2.2.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .guests import free_port

BUSYBOX = Path("/bin/busybox")  # from busybox-static: no shared libraries to carry along
GUEST_HOST_ADDRESS = "10.0.2.2"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Fixed timestamps make every image byte-identical across runs, so digests are stable.
EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INDEX_HTML = b"<html><body><h1>podman-standard testbed</h1></body></html>\n"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    """A single-platform image ready to push: config and layer blobs plus the manifest over them."""

    config: bytes
    layers: tuple[bytes, ...]  # gzip-compressed tars
    manifest: bytes


def layer(entries: list[tuple[str, str, bytes | str | None, int]]) -> tuple[bytes, bytes]:
    """Pack ``(path, kind, content, mode)`` entries (kind: dir, file, symlink) into a layer.

    Returns ``(uncompressed tar, gzip blob)``: the config lists the first's digest (diff_id),
    the manifest the second's.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, content, mode in entries:
            info = tarfile.TarInfo(path)
            info.mtime, info.mode, info.uid, info.gid = EPOCH, mode, 0, 0
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, mtime=0)


def image(layers: list[tuple[bytes | str, bytes]], config: dict) -> Image:
    """Wrap layers ``(uncompressed tar or its digest, gzip blob)`` and a container ``config``
    (Cmd, Env, ...) in a linux/amd64 schema2 image."""
    config_blob = _canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": [tar if isinstance(tar, str) else digest(tar) for tar, _ in layers],
            },
            "history": [{"created": CREATED, "created_by": "testbed/registry.py"} for _ in layers],
        }
    )
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": CONFIG_TYPE,
                "size": len(config_blob),
                "digest": digest(config_blob),
            },
            "layers": [
                {"mediaType": LAYER_TYPE, "size": len(blob), "digest": digest(blob)}
                for _, blob in layers
            ],
        }
    )
    return Image(config_blob, tuple(blob for _, blob in layers), manifest)


def busybox_rootfs(busybox: bytes, applets: list[str]) -> list[tuple[str, str, bytes | str, int]]:
    """A minimal rootfs: /bin/busybox, one symlink per applet path (``busybox --list-full``),
    and the directories and account files that shells and httpd expect."""
    dirs = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "var",
        "root",
        "home",
    ]
    entries = [(d, "dir", None, 0o755) for d in dirs] + [("tmp", "dir", None, 0o1777)]
    entries.append(("bin/busybox", "file", busybox, 0o755))
    entries += [
        (path, "symlink", "/bin/busybox", 0o777)
        for path in sorted(set(applets))
        if path != "bin/busybox"
    ]
    entries += [
        (
            "etc/passwd",
            "file",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            0o644,
        ),
        ("etc/group", "file", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
    ]
    return entries


def _base_layer(busybox_path: Path = BUSYBOX) -> tuple[bytes, bytes]:
    applets = subprocess.run(
        [str(busybox_path), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    return layer(busybox_rootfs(busybox_path.read_bytes(), applets))


def web_image(index_html: bytes, base: tuple[bytes, bytes] | None = None) -> Image:
    """busybox httpd in the foreground on port 80, serving ``index_html`` from /www."""
    www = layer([("www", "dir", None, 0o755), ("www/index.html", "file", index_html, 0o644)])
    config = {
        "Env": [PATH_ENV],
        "Cmd": ["httpd", "-f", "-p", "80", "-h", "/www"],
        "ExposedPorts": {"80/tcp": {}},
    }
    return image([base or _base_layer(), www], config)


def testbed_images(busybox_path: Path = BUSYBOX) -> dict[str, Image]:
    """The images the testbed serves, by ``repository:tag``. alpine and busybox share one
    base layer; nginx:alpine adds a web root and runs busybox httpd in the foreground."""
    base = _base_layer(busybox_path)
    return {
        "library/alpine:latest": image([base], {"Env": [PATH_ENV], "Cmd": ["/bin/sh"]}),
        "library/busybox:latest": image([base], {"Env": [PATH_ENV], "Cmd": ["sh"]}),
        "library/nginx:alpine": web_image(INDEX_HTML, base),
    }


def push(base_url: str, reference: str, img: Image) -> None:
    """Push ``img`` as ``repository:tag``: each blob by monolithic upload (skipped when the
    registry already has it), then the manifest."""
    repository, tag = reference.rsplit(":", 1)
    for blob in (img.config, *img.layers):
        blob_digest = digest(blob)
        known = f"{base_url}/v2/{repository}/blobs/{blob_digest}"
        if _request("HEAD", known, ok=(200, 404)) == 200:
            continue
        location = _request(
            "POST", f"{base_url}/v2/{repository}/blobs/uploads/", ok=(202,), want="Location"
        )
        upload = urllib.parse.urljoin(base_url + "/", location)
        separator = "&" if "?" in upload else "?"
        _request(
            "PUT",
            f"{upload}{separator}digest={blob_digest}",
            body=blob,
            ok=(201,),
            headers={"Content-Type": "application/octet-stream"},
        )
    _request(
        "PUT",
        f"{base_url}/v2/{repository}/manifests/{tag}",
        body=img.manifest,
        ok=(201,),
        headers={"Content-Type": MANIFEST_TYPE},
    )


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<free port> with storage under ``workdir``.

    ``address`` is what the host uses; ``guest_address`` is the same registry as guests see it.
    """

    def __init__(self, workdir: Path | None = None):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="testbed-registry-"))
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def guest_address(self) -> str:
        return f"{GUEST_HOST_ADDRESS}:{self.port}"

    def start(self, timeout: float = 30) -> Registry:
        self.port = free_port()
        config = self.workdir / "config.yml"
        # JSON is YAML; no need for a YAML serializer.
        config.write_text(json.dumps(self.config()))
        with open(self.workdir / "registry.log", "w") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a detached registry must outlive us
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.answers():
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "registry.log").read_text()
                self.stop()
                raise RuntimeError(f"docker-registry did not come up on {self.address}:\n{log}")
            time.sleep(0.2)

    def config(self) -> dict:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        return {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(storage)}},
            "http": {"addr": self.address},
        }

    def answers(self) -> bool:
        return _request("GET", f"http://{self.address}/v2/", ok=(200,)) == 200

    def push_testbed_images(self) -> list[str]:
        images = testbed_images()
        for reference, img in images.items():
            push(f"http://{self.address}", reference, img)
        return list(images)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    ok=(200,),
    headers=None,
    want: str | None = None,
):
    """One HTTP call to the local registry: returns the status (or header ``want``); a status
    outside ``ok`` raises with the registry's error body."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, response_headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        if error.code not in ok:
            raise RuntimeError(f"{method} {url}: {error.code} {error.read()[:500]!r}") from None
        return error.code
    if status not in ok:
        raise RuntimeError(f"{method} {url}: unexpected {status}")
    return response_headers[want] if want else status


class AuthRegistry(Registry):
    """A second ``docker-registry`` on 127.0.0.1 serving ``images``' storage (the images
    pushed there, read-only) over TLS, with htpasswd (bcrypt) authentication: a private
    registry behind its own CA. ``workdir`` holds the CA (``ca.pem``, what clients trust),
    the server's certificate and key (for 127.0.0.1 and the guests' 10.0.2.2) and the
    htpasswd file of ``users`` (name -> password, bcrypt-hashed here)."""

    def __init__(self, images: Registry, users: dict[str, str], workdir: Path | None = None):
        super().__init__(workdir)
        self.images = images
        self.users = users
        self.ca = self.workdir / "ca.pem"

    def config(self) -> dict:
        import bcrypt  # with paramiko, in the test environment

        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        ca_pem, cert_pem, key_pem = tls_files(["127.0.0.1", GUEST_HOST_ADDRESS])
        self.ca.write_bytes(ca_pem)
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for name, pw in self.users.items()
            )
        )
        htpasswd.chmod(0o600)
        return {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.images.workdir / "storage")},
                "maintenance": {"readonly": {"enabled": True}},
            },
            "http": {"addr": self.address, "tls": {"certificate": str(cert), "key": str(key)}},
            "auth": {"htpasswd": {"realm": "podman-standard testbed", "path": str(htpasswd)}},
        }

    def answers(self) -> bool:
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca))
        request = urllib.request.Request(f"https://{self.address}/v2/")
        try:
            urllib.request.urlopen(request, timeout=5, context=context)
        except urllib.error.HTTPError as error:
            return error.code == 401  # up, and asking for a login
        return False


def tls_files(addresses: list[str]) -> tuple[bytes, bytes, bytes]:
    """A new CA and a server certificate it signed for the IP ``addresses``: (CA PEM,
    server certificate PEM, server key PEM). Made for one test session; the CA's key is
    dropped once the server certificate is signed."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def builder(subject, public_key, days):
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("podman-standard testbed CA"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
        )

    ca = (
        builder("podman-standard testbed CA", ca_key.public_key(), 2)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        builder("podman-standard testbed registry", key.public_key(), 1)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), server.public_bytes(pem), key_pem
