"""Docker -> Podman migration steps on the host (standard §6.1, §6.2).

Each operation runs one step of the bundle's script (``templates/migration/migrate.sh``, a
static file installed as ``<bundle>/migrate.sh``), which fails loudly and, before the point of no
return (``retire``), puts Docker back as it was on any failure: the containers it stopped for
a consistent copy are started again (and in ``verify`` the re-created podman services are
removed first). The plan they work from is ``model.migration.build_plan``'s manifest.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.operations import apt, dnf, files

from facts.docker import DockerEngine
from model.host_data import TEMPLATES
from model.migration import ROOT, bundle_files, services, shown
from operations._common import distro_family, timed, upload_private
from operations.services import SYSTEM_DIRS, USER_DIRS

SOURCE = "operations/migration.py"
SCRIPT = "migrate.sh"
# The on-host steps: a static script (shellcheck-clean) that reads the bundle's plan.txt;
# read once at import, as the templates are.
SCRIPT_SOURCE = TEMPLATES / "migration" / SCRIPT
SCRIPT_TEXT = SCRIPT_SOURCE.read_text(encoding="utf-8")
# What makes a Docker engine, removed at the point of no return. Not runc: Debian's podman
# may depend on it (crun | runc), and it runs no daemon.
ENGINE_REMOVE = (
    "docker.io",
    "docker-ce",
    "docker-ce-cli",
    "docker-ce-rootless-extras",
    "docker-compose-plugin",
    "moby-engine",
    "moby-cli",
    "containerd.io",
    "containerd",
)


def unit_files(name: str, owner: str) -> list[str]:
    """The unit files a service of the migration may have (either rendering, the services
    operation's directories): absolute for root's, relative to the home directory for a
    rootless user's."""
    dirs = SYSTEM_DIRS if owner == ROOT else USER_DIRS
    return [f"{dirs['plain']}/{name}.service", f"{dirs['quadlet']}/{name}.container"]


def with_unit_files(plan: dict) -> dict:
    """``plan`` with each re-created service's :func:`unit_files` (the bundle's plan.txt
    names them for the script)."""
    units = {s["name"]: unit_files(s["name"], s.get("user") or ROOT) for s in services(plan)}
    return {**plan, "unit_files": units}


def _step(bundle: str, step: str) -> StringCommand:
    return StringCommand("bash", QuoteString(f"{bundle}/{SCRIPT}"), step)


def _detached(bundle: str, step: str, *args: str) -> StringCommand:
    """A long step (export, move, rollback) as a transient systemd unit that a lost SSH
    connection does not stop, waited for (the script's ``detached``). A bundle written before
    the script had detached steps runs the step in the session, as it was written to."""
    script = QuoteString(f"{bundle}/{SCRIPT}")
    return StringCommand(
        "if grep -qx 'detached)'",
        script,
        "; then bash",
        script,
        "detached",
        step,
        *args,
        "; else bash",
        script,
        step,
        *args,
        "; fi",
    )


@operation()
def export(bundle: str, plan: dict):
    """
    Write the rollback bundle and export Docker's data into it.

    + bundle: the bundle directory (root-only, 0700)
    + plan: the manifest from ``model.migration.build_plan``

    Writes manifest.json, plan.txt, docker-compose.yml, podman-services.json,
    docker-restore.sh and migrate.sh (0600/0700, root); then stops Docker's running containers
    (their names go to docker-running.txt), archives every named volume (tar + content digest)
    and saves every image no registry holds, and writes SHA256SUMS. Docker's containers stay
    stopped for the move (so nothing changes behind the copy); any failure starts them again.
    Runs whenever it is called (the migrate deploy calls it only while Docker is there), as a
    transient systemd unit (``podman-standard-migration-export``) that a lost SSH connection
    does not stop: a second call waits for one still running, and reports one the bundle's
    state shows finished instead of running it again; its log is ``logs/export.log``.
    """
    if plan.get("problems"):
        raise OperationError("the plan has problems: " + "; ".join(map(shown, plan["problems"])))
    yield from files.directory._inner(path=bundle, user="root", group="root", mode="0700")
    for path, content in bundle_files(with_unit_files(plan)).items():
        # Docker's environment (secrets): 0600 from its creation on.
        yield from upload_private(content, f"{bundle}/{path}", "root", "root", "600")
    yield from files.put._inner(
        src=StringIO(SCRIPT_TEXT),
        dest=f"{bundle}/{SCRIPT}",
        user="root",
        group="root",
        mode="0700",
        create_remote_dir=False,
    )
    yield from timed(
        "migration export: stop Docker's containers, archive volumes and images",
        _detached(bundle, "export"),
    )


@operation()
def move(bundle: str):
    """
    Load the images into podman and restore every volume into a podman volume of the same
    name, owners and modes kept; each volume's content digest must equal Docker's. A podman
    volume of that name that this migration did not create stops the move. On failure
    Docker's containers are started again. Runs whenever it is called, detached as the
    export is (``podman-standard-migration-move``, ``logs/move.log``).
    """
    yield from timed(
        "migration move: load images, restore volumes into podman", _detached(bundle, "move")
    )


@operation()
def verify(bundle: str):
    """
    Wait until every re-created service's unit is active and its container running. On
    failure the services are stopped and their units removed, then Docker's containers are
    started again. Runs whenever it is called.
    """
    yield from timed("migration verify: wait for the services", _step(bundle, "verify"))


@operation()
def retire_docker(bundle: str):
    """
    The point of no return, only after ``verify`` passed (the script checks): stop and
    disable docker.socket, docker.service and containerd, then remove the engine packages
    (``ENGINE_REMOVE`` that are installed; /var/lib/docker is kept). Idempotent: with no
    engine package installed only the (checked) stop runs.
    """
    yield _step(bundle, "retire")
    engine = host.get_fact(DockerEngine)
    installed = [p for p in ENGINE_REMOVE if p in engine.packages]
    if not installed:
        return
    family = distro_family()
    if family == "debian":
        remove = apt.packages._inner(packages=installed, present=False)
    elif family == "fedora":
        remove = dnf.packages._inner(packages=installed, present=False)
    else:
        raise OperationError("no package manager known for this distribution")
    yield from timed(f"migration: remove Docker's packages ({', '.join(installed)})", remove)


@operation()
def docker_ps(bundle: str):
    """Check that ``docker ps`` (podman through the compatibility layer now) lists every
    re-created container. Read-only; fails when one is missing."""
    yield _step(bundle, "docker-ps")


@operation()
def check_bundle(bundle: str):
    """
    Check the bundle's files against its SHA256SUMS; fails, naming the bundle, when one is
    missing or differs. Read-only: the rollback runs it before it changes anything.
    """
    yield StringCommand(
        "cd",
        QuoteString(bundle),
        "&& sha256sum --quiet --check SHA256SUMS >&2 || {",
        "printf 'migration: the bundle %s does not match its SHA256SUMS (a file changed or is "
        "missing): nothing changed\\n'",
        QuoteString(bundle),
        ">&2; exit 1; }",
    )


@operation()
def rollback(bundle: str, source: str = "podman"):
    """
    Docker back from the bundle: check SHA256SUMS, enable and start Docker, load the saved
    images, fill each Docker volume, re-create the containers Docker no longer has
    (docker-restore.sh) and start those that were running.

    + bundle: the bundle directory
    + source: what each Docker volume gets: ``podman`` (the default), the data of the podman
      volume of the same name (root's or the rootless owner's) as it is now, i.e. what the
      services wrote since the migration; ``bundle``, the bundle's tarball (the data as it was
      at the migration). A volume that neither podman nor Docker has any more comes from the
      bundle either way. Every copy's content digest must equal its source's.

    Replaces the content of Docker's volumes (kept in the bundle). Runs whenever it is called,
    detached as the export is; the rollback deploy calls it once per migration.
    """
    if source not in ("podman", "bundle"):
        raise OperationError(f"rollback source must be 'podman' or 'bundle', not {source!r}")
    yield from timed(
        f"migration rollback: Docker back from the bundle (volumes from {source})",
        _detached(bundle, "rollback", source),
    )
