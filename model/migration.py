"""The Docker -> Podman migration plan (standard §6.1): pure functions from the Docker facts to
what is exported, moved and re-created, and the bundle files rendered from it.

The plan is plain JSON data (it is the bundle's ``manifest.json``), so the deploy, the
operations and the rollback read the same thing. Nothing here touches a host.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex

import yaml
from pydantic import ValidationError

from facts.docker import (
    DockerContainer,
    DockerDaemonConfigState,
    DockerImage,
    DockerInventoryState,
)
from model import docker_settings
from model.host_data import HostData, Service

# 2: owners (root or a rootless user) of containers, volumes and images; free space.
MANIFEST_FORMAT = 2
SOURCE = "deploys/migrate_from_docker.py"
# Docker's restart policies -> the services model's (systemd's Restart=). "unless-stopped"
# differs from "always" only for a container stopped by hand before a daemon restart; a
# systemd unit that is stopped stays stopped, which is that behaviour.
RESTART = {"no": "no", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"}
# docker compose's labels on the containers it made (docker/compose pkg/api/labels.go).
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_DEPENDS_ON = "com.docker.compose.depends_on"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
COMPOSE_WORKING_DIR = "com.docker.compose.project.working_dir"
COMPOSE_CONFIG_FILES = "com.docker.compose.project.config_files"
# Docker's data root when no volume shows where it is (dockerd's default).
DOCKER_ROOT = "/var/lib/docker"
# What `docker ps` lists, i.e. what the export stops and the plan re-creates as a service. A
# paused container counts: `docker stop` unpauses it after the stop signal; its service runs
# it (unpaused) and the rollback starts it again (unpaused).
RUNNING_STATES = ("running", "restarting", "paused")
# Docker's own networks: containers on them get podman's default network.
DEFAULT_NETWORKS = {"bridge", "default"}
# Written unquoted into the bundle's plan.txt and used as file names: Docker's own rules for
# volume and container names, which are also podman's.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# What the plan's image references may hold (they are split on spaces in plan.txt).
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
# A bind mount's host directory that is carried over: plain components (plan.txt holds it
# unquoted; the service's copy is named after it), not / itself.
_HOST_PATH_RE = re.compile(r"^(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
# A "local" volume's options that make it a mount (mount(8)'s -t, -o and device).
MOUNT_OPTIONS = {"type", "o", "device"}
# Where a bind mount's copy goes, under the service's directory: host/<the host path>.
BIND_PREFIX = "host"
# The bundle's files, relative to the bundle directory.
FILES = {
    "manifest": "manifest.json",
    "plan": "plan.txt",
    "compose": "docker-compose.yml",
    "services": "podman-services.json",
    "docker_restore": "docker-restore.sh",
    "checksums": "SHA256SUMS",
}
DEFAULT_SERVICE_ROOT = HostData.model_fields["service_root"].default
# The service's runtime fields the plan prints as one "carried:" line (devices, healthcheck
# and requires have lines of their own).
RUNTIME_FIELDS = sorted(
    set(Service.model_fields)
    - {"name", "image", "command", "env", "secrets", "ports", "volumes", "restart", "network"}
    - {"user", "present", "remove_data", "timers", "devices", "healthcheck", "requires"}
)
# Whose podman a thing goes to, in plan.txt: root's, or a rootless user's (by name).
ROOT = "root"
# Room kept free beyond what the copies need, on each filesystem: 10 %, at least 64 MiB.
MARGIN_MIN_BYTES = 64 * 2**20
MARGIN_FRACTION = 0.10


class PlanError(ValueError):
    """The host holds something the migration cannot carry over without loss."""


def shown(text: str) -> str:
    """``text`` as it may be printed: every character that is not printable (ESC, CR, other
    control and format characters, which could rewrite the terminal or hide text) as a Python
    escape (``\\x1b``, ``\\r``, ``\\u202e``), and a backslash as ``\\\\``, so what is
    shown is unambiguous. Everything host-controlled that the migration prints (the plan, its
    problems) goes through it."""
    return "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def qualify(reference: str) -> str:
    """A Docker image reference written out in full, as podman names it: ``busybox`` ->
    ``docker.io/library/busybox:latest``, ``local/app:1`` -> ``docker.io/local/app:1``."""
    name, at, digest = reference.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
    last = path.rsplit("/", 1)[-1]
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if ":" not in last and not at:
        path += ":latest"
    return f"{registry}/{path}{at}{digest}"


def podman_name(reference: str, local_only: bool) -> str:
    """The name the image gets in podman. An image no registry holds, tagged without a
    registry (``local/web:1``), becomes ``localhost/local/web:1`` — the name podman itself
    gives such an image on load, and one it never tries to pull from a registry; everything
    else is :func:`qualify`'d."""
    first, slash, _ = reference.partition("/")
    has_registry = slash and ("." in first or ":" in first or first == "localhost")
    if not local_only or has_registry:
        return qualify(reference)
    name, at, digest = reference.partition("@")
    if ":" not in name.rsplit("/", 1)[-1] and not at:
        name += ":latest"
    return f"localhost/{name}{at}{digest}"


def _env_pairs(env: list[str]) -> dict[str, str]:
    pairs = {}
    for item in env:
        key, _, value = item.partition("=")
        pairs[key] = value
    return pairs


def _image_ref(container: DockerContainer, image: DockerImage | None) -> str | None:
    """The container's image by a name podman will have after the move: the name it was
    created with when that still names its image, else the image's first tag."""
    if image is None or not image.repo_tags:
        return None
    local_only = not image.repo_digests
    tags = [podman_name(t, local_only) for t in image.repo_tags]
    wanted = podman_name(container.image, local_only) if container.image else None
    return wanted if wanted in tags else tags[0]


def _docker_tag(container: DockerContainer, image: DockerImage | None) -> str:
    """The container's image by the name Docker itself knows it by (the rollback re-creates
    the container under Docker, from the tags ``docker load`` restores): the name it was
    created with when that still names its image, else the image's first tag; without a tag,
    what the container says."""
    if image is None or not image.repo_tags:
        return container.image
    wanted = qualify(container.image) if container.image else None
    return next((t for t in image.repo_tags if qualify(t) == wanted), image.repo_tags[0])


def _service(
    c: DockerContainer,
    image: DockerImage,
    ref: str,
    user: str | None,
    problems: list[str],
    binds: list[dict],
    cdi_devices: list[str],
) -> tuple[dict, dict[str, str]]:
    """The container as a ``podman_services`` entry (of ``user``'s podman when set); what the
    model cannot express is a problem (the migration refuses rather than drop it). A bind
    mount of a host directory becomes a directory of the service (a copy, listed in
    ``binds``). Returns the entry and the env it carries in its secrets file."""
    where = f"container {c.name}"
    # Every Config/HostConfig field decided (model.docker_settings): refused by name here.
    problems += docker_settings.problems(c, image, cdi_devices)
    image_env = _env_pairs(image.env)
    env = {k: v for k, v in _env_pairs(c.env).items() if image_env.get(k) != v}
    ports = []
    for p in c.ports:
        if not p.host_port:
            problems.append(
                f"{where}: publishes {p.container_port}/{p.protocol} on a random host port; "
                "publish it on a fixed one first"
            )
            continue
        if not p.host_port.isdigit():
            # `-p 8080-8090:80`: Docker takes any free port of the range at each start;
            # podman refuses a host range that differs in length from the container's.
            problems.append(
                f"{where}: publishes {p.container_port}/{p.protocol} on host port range "
                f"{p.host_port} (Docker picks one of them at each start); a podman_services "
                "port is one host port: publish it on a fixed one first"
            )
            continue
        port = {"host": int(p.host_port), "container": p.container_port, "protocol": p.protocol}
        if p.host_ip not in ("", "0.0.0.0", "::"):
            port["host_ip"] = p.host_ip
        if port not in ports:
            ports.append(port)
    volumes = []
    for m in c.mounts:
        if m.type == "volume" and m.name:
            volumes.append({"volume": m.name, "target": m.destination, "read_only": not m.rw})
        elif m.type == "bind" and _HOST_PATH_RE.match(m.source):
            source = BIND_PREFIX + m.source
            volumes.append({"source": source, "target": m.destination, "read_only": not m.rw})
            binds.append(
                {"container": c.name, "user": user, "host_path": m.source, "source": source}
            )
        else:
            problems.append(
                f"{where}: {m.type} mount {m.source} -> {m.destination} is neither a named "
                "volume nor a bind mount of a directory with a plain path (letters, digits, "
                "'_', '.', '-'): move the data into a named volume first"
            )
    networks = [n for n in c.networks if n not in DEFAULT_NETWORKS]
    if len(networks) > 1:  # (the host network and none are refused as NetworkMode)
        problems.append(f"{where}: networks {networks}: only one user-defined network is kept")
    restart = RESTART.get(c.restart_policy)
    if restart is None:
        problems.append(f"{where}: unknown restart policy {c.restart_policy!r}")
    entry = {
        "name": c.name,
        "image": ref,
        "command": list(c.cmd or []) if c.cmd != image.cmd else [],
        # Docker's env may hold passwords: it goes into the service's 0600 secrets file
        # (services.service's secret_values), never into the world-readable unit.
        "env": {},
        "ports": ports,
        "volumes": volumes,
        "restart": restart or "no",
    }
    if len(networks) == 1 and networks[0] not in ("host", "none"):
        # The names it answers to there (a compose service's own name, --network-alias):
        # the other containers of its project reach it by them.
        aliases = _aliases(c, networks[0])
        if aliases:
            entry["networks"] = [{"name": networks[0], "aliases": aliases}]
        else:
            entry["network"] = networks[0]
    # Devices, GPUs, healthcheck, limits, capabilities, user, labels, … (model.docker_settings).
    entry.update(docker_settings.carried(c, image))
    if user:
        entry["user"] = user
    try:
        # The env is validated as the model's (names, one line each), and carried apart.
        Service.model_validate({**entry, "env": env})
    except ValidationError as error:
        for e in error.errors():
            loc = ".".join(map(str, e["loc"]))
            problems.append(f"{where}: {loc + ': ' if loc else ''}{e['msg']}")
    return entry, env


def build_plan(
    inventory: DockerInventoryState,
    bundle: str,
    rootless: dict[str, str] | None = None,
    service_root: str = DEFAULT_SERVICE_ROOT,
    daemon: DockerDaemonConfigState | None = None,
    cdi_devices: list[str] | None = None,
    compose_files: dict[str, str | None] | None = None,
) -> dict:
    """The manifest of a migration of ``inventory`` into ``bundle``. ``rootless`` moves
    containers (by Docker name, or ``"*"`` for all) to a rootless user's podman; their volumes
    and images follow them. A bind mount's host directory is copied into the service's
    directory under ``service_root`` (the original stays). ``daemon``: the daemon's
    daemon.json (its ``daemon`` entry: :func:`model.docker_settings.daemon_plan`);
    ``cdi_devices``: the host's CDI device names, which ``--gpus`` becomes;
    ``compose_files``: the text of each file :func:`compose_files_to_read` names (None when
    not on the host), where compose 1.x projects' ``depends_on`` is read from. Its
    ``problems`` list what cannot be carried over; the deploy refuses to start while there are
    any."""
    rootless = dict(rootless or {})
    problems: list[str] = []
    for name in sorted(set(rootless) - {"*"}):
        container = next((c for c in inventory.containers if c.name == name), None)
        if container is None:
            problems.append(
                f"migration_rootless names container {name}, which Docker does not have"
            )
        elif container.state not in RUNNING_STATES:
            problems.append(
                f"migration_rootless names container {name}, which is not running: it is only "
                "exported, not re-created under anyone's podman"
            )

    images_by_id = {i.id: i for i in inventory.images}
    binds: list[dict] = []
    containers = []
    for c in sorted(inventory.containers, key=lambda c: c.name):
        image = images_by_id.get(c.image_id)
        ref = _image_ref(c, image)
        running = c.state in RUNNING_STATES
        user = (rootless.get(c.name) or rootless.get("*")) if running else None
        entry = {
            "name": c.name,
            "state": c.state,
            "docker": None,
            # Running containers come back as services; the others are kept in the bundle.
            "recreate": running,
            # Whose podman runs it: None for root's, else the rootless user's.
            "user": user,
            "service": None,
            # The env the service gets from its 0600 secrets file (names and values).
            "secret_env": {},
        }
        if ref is None:
            problems.append(f"container {c.name}: its image {c.image} has no tag to carry over")
        elif running:
            entry["service"], entry["secret_env"] = _service(
                c, image, ref, user, problems, binds, cdi_devices or []
            )
        else:
            # Kept in the bundle: the rollback re-creates it under Docker with its settings.
            problems += docker_settings.problems(c, image, podman=False)
        entry["docker"] = _docker_definition(c, image)
        entry["docker"]["image"] = _docker_tag(c, image)
        containers.append(entry)
    by_name = {c.name: c for c in inventory.containers}
    recreated = [(entry, by_name[entry["name"]]) for entry in containers if entry["recreate"]]
    compose_projects = _compose_projects(inventory, containers, problems, compose_files or {})

    images = []
    for image in inventory.images:
        if not image.repo_tags:
            continue  # dangling: nothing can name it (a container using one is a problem)
        local_only = not image.repo_digests
        refs = [podman_name(t, local_only) for t in image.repo_tags]
        short = image.id.removeprefix("sha256:")[:12]
        users = {entry["user"] for entry, c in recreated if c.image_id == image.id}
        images.append(
            {
                "id": image.id,
                "refs": refs,
                "docker_tags": list(image.repo_tags),
                "size_bytes": image.size_bytes,
                # No registry holds it: the bundle keeps an archive.
                "local_only": local_only,
                "archive": f"images/{short}.tar" if local_only else None,
                # Whose podman gets it: root's for root's services and for images no
                # re-created container uses; each rootless user's for that user's services.
                "owners": sorted((u or ROOT) for u in users or {None}),
            }
        )
    for ref in (r for i in images for r in i["refs"] + i["docker_tags"]):
        if not _REF_RE.match(ref):
            problems.append(f"image reference {ref!r} has characters the bundle cannot hold")

    volumes = []
    for v in inventory.volumes:
        if not _NAME_RE.match(v.name):
            problems.append(f"volume {v.name!r}: not a name podman accepts")
        if v.driver != "local":
            problems.append(f"volume {v.name}: driver {v.driver!r} (only 'local' is carried over)")
        elif set(v.options) & MOUNT_OPTIONS:
            problems.append(
                f"volume {v.name}: Docker mounts it from its options ({_options(v.options)}) "
                "only while a container uses it, so with its containers stopped the export "
                "would archive an empty directory: move its data into a plain named volume, "
                "or bind-mount the source directory itself, first"
            )
        elif v.options:
            problems.append(
                f"volume {v.name}: its options ({_options(v.options)}) are not carried over "
                "(a podman volume is created without them): remove them first"
            )
        users = {}
        for entry, c in recreated:
            if any(m.type == "volume" and m.name == v.name for m in c.mounts):
                users.setdefault(entry["user"] or ROOT, []).append(entry["name"])
        if len(users) > 1:
            used = "; ".join(f"{', '.join(n)} ({u})" for u, n in sorted(users.items()))
            problems.append(
                f"volume {v.name} is used by containers of different owners: {used}; a volume "
                "moves into one owner's podman (move those containers together)"
            )
        owner = next(iter(users), ROOT)
        volumes.append(
            {
                "name": v.name,
                "labels": dict(v.labels),
                "docker_mountpoint": v.mountpoint,
                "size_bytes": v.size_bytes,
                "archive": f"volumes/{v.name}.tar",
                "content_digest": f"volumes/{v.name}.content-sha256",
                "user": None if owner == ROOT else owner,
            }
        )

    for i, bind in enumerate(binds):
        for other in binds[:i]:
            a, b = sorted((bind["host_path"] + "/", other["host_path"] + "/"))
            if b.startswith(a):
                problems.append(
                    f"bind mounts {other['host_path']} ({other['container']}) and "
                    f"{bind['host_path']} ({bind['container']}) share data: each service gets "
                    "its own copy, and the copies would drift apart (move the data into a "
                    "named volume first)"
                )
        number = sum(1 for b in binds[:i] if b["container"] == bind["container"])
        stem = f"binds/{bind['container']}-{number}"
        bind.update(
            service_dir=f"{service_root}/{bind['container']}",
            archive=f"{stem}.tar",
            content_digest=f"{stem}.content-sha256",
            size_bytes=None,  # measured on the host (facts.docker.DataDir)
        )

    plan = {
        "format": MANIFEST_FORMAT,
        "created_by": SOURCE,
        "bundle": bundle,
        "service_root": service_root,
        "containers": containers,
        "volumes": volumes,
        "binds": binds,
        "images": images,
        "compose_projects": compose_projects,
        "files": dict(FILES),
        "space": [],
        "problems": problems,
        "daemon": docker_settings.daemon_plan(
            daemon or DockerDaemonConfigState(), any(c["recreate"] for c in containers)
        ),
    }
    problems += plan["daemon"]["problems"]
    # Where the migration writes (the copies, the bundle) and where Docker keeps its data
    # (each volume's directory, under its data root); podman's stores: the deploy adds them.
    roots = {v.mountpoint.rsplit("/volumes/", 1)[0] for v in inventory.volumes} - {""}
    roots |= {plan["daemon"]["data_root"]} - {None}
    places = [("the service root", service_root), ("the bundle", bundle)]
    places += [("Docker's data root", root) for root in sorted(roots or {DOCKER_ROOT})]
    problems += overlap_problems(plan, places)
    return plan


def _aliases(c: DockerContainer, network: str) -> list[str]:
    """The names ``c`` answers to on ``network`` beyond its own name (Docker before 26 lists
    the short id too: podman gives every container that one itself)."""
    own = {c.name, c.id[:12]}
    aliases = [a for a in c.network_aliases.get(network, []) if a not in own]
    return list(dict.fromkeys(aliases))


def _projects(inventory: DockerInventoryState) -> dict[str, list[DockerContainer]]:
    """The containers docker compose made (not its one-off ``run`` ones), by project."""
    projects: dict[str, list] = {}
    for c in inventory.containers:
        project = c.labels.get(COMPOSE_PROJECT)
        if project is not None and c.labels.get(COMPOSE_ONEOFF, "False") != "True":
            projects.setdefault(project, []).append(c)
    return dict(sorted(projects.items()))


def _config_paths(labels: dict[str, str]) -> list[str]:
    """A compose container's project files, absolute: compose 1.x writes them relative to
    the project's working directory, compose v2 absolute."""
    working_dir = labels.get(COMPOSE_WORKING_DIR) or ""
    paths = filter(None, labels.get(COMPOSE_CONFIG_FILES, "").split(","))
    out = []
    for path in paths:
        if not path.startswith("/") and working_dir.startswith("/"):
            path = posixpath.normpath(posixpath.join(working_dir, path))
        out.append(path)
    return out


def compose_files_to_read(inventory: DockerInventoryState) -> list[str]:
    """The compose files whose ``depends_on`` a plan needs: those of projects made by compose
    1.x, whose containers carry no ``com.docker.compose.depends_on`` label (compose v2 always
    writes it, empty when there are none)."""
    paths: list[str] = []
    for members in _projects(inventory).values():
        if not any(COMPOSE_DEPENDS_ON in c.labels for c in members):
            paths += [p for p in _config_paths(members[0].labels) if _HOST_PATH_RE.match(p)]
    return list(dict.fromkeys(paths))


def _file_dependencies(texts: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Each service's ``depends_on`` (dependency, condition) in a project's compose files,
    a later file adding to the earlier ones, as compose merges them. Both of its forms: a
    list of names (started), a mapping with a ``condition``. Raises ValueError when a file
    is no compose file."""
    out: dict[str, dict[str, str]] = {}
    for text in texts:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"not YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(document, dict):
            raise ValueError("not a compose file (no mapping at its top)")
        # The 1.x file format without ``version`` has its services at the top.
        found = document.get("services", {} if "version" in document else document)
        for name, service in (found or {}).items():
            if not isinstance(service, dict):
                continue
            depends = service.get("depends_on") or []
            if isinstance(depends, dict):
                pairs = [
                    (str(dep), str((spec or {}).get("condition", "service_started")))
                    for dep, spec in depends.items()
                ]
            elif isinstance(depends, list):
                pairs = [(str(dep), "service_started") for dep in depends]
            else:
                raise ValueError(f"service {name}: depends_on is neither a list nor a mapping")
            out.setdefault(str(name), {}).update(pairs)
    return {name: list(deps.items()) for name, deps in out.items()}


def _compose_projects(
    inventory: DockerInventoryState,
    containers: list[dict],
    problems: list[str],
    compose_files: dict[str, str | None],
) -> list[dict]:
    """Containers docker compose made (its ``com.docker.compose.project`` label) move as one
    unit: as services of one owner whose ``requires`` follow the project's ``depends_on``, on
    the project's own network (carried as each container's, with the service's name as an
    alias there). ``depends_on`` is read from the ``com.docker.compose.depends_on`` label
    (``service:condition:restart``, comma-separated, as compose v2 writes it) or, for a
    project compose 1.x made (no such label), from its compose files (``compose_files``:
    path -> text, None when not on the host). A dependency that would not come back as a
    running service, or that must first be healthy or have completed, is a problem: a
    service's ``requires`` only orders starts."""
    entries = {e["name"]: e for e in containers}
    out = []
    for project, members in _projects(inventory).items():
        where = f"compose project {project}"
        paths = _config_paths(members[0].labels)
        order = "its containers' depends_on labels"
        from_files: dict[str, list[tuple[str, str]]] | None = None
        if not any(COMPOSE_DEPENDS_ON in c.labels for c in members):
            missing = [p for p in paths if compose_files.get(p) is None]
            if not paths or missing:
                order = (
                    "unknown: compose 1.x labels no depends_on and "
                    + (f"{', '.join(missing)} is not on this host" if paths else "no file is named")
                    + " (its services start in any order)"
                )
            else:
                try:
                    from_files = _file_dependencies([compose_files[p] for p in paths])
                    order = f"depends_on of {', '.join(paths)}"
                except ValueError as error:
                    problems.append(f"{where}: {', '.join(paths)}: {error}")
        running = [c for c in members if entries[c.name]["recreate"]]
        owners = {entries[c.name]["user"] or ROOT for c in running}
        if len(owners) > 1:
            problems.append(
                f"{where}: its containers would go to different owners "
                f"({', '.join(sorted(owners))}): a project moves as one unit (name all of its "
                "containers in migration_rootless)"
            )
        by_service = {c.labels.get(COMPOSE_SERVICE, ""): c for c in members}
        for c in running:
            service = entries[c.name]["service"]
            if from_files is not None:
                depends = from_files.get(c.labels.get(COMPOSE_SERVICE, ""), [])
            else:
                depends = []
                for item in filter(None, c.labels.get(COMPOSE_DEPENDS_ON, "").split(",")):
                    name, _, rest = item.partition(":")
                    depends.append((name, rest.partition(":")[0] or "service_started"))
            for name, condition in depends:
                dep = by_service.get(name)
                if dep is None or not entries[dep.name]["recreate"]:
                    problems.append(
                        f"{where}: {c.name} depends on {name}, which is not a running container "
                        "of the project (it would not come back as a service): start it first"
                    )
                elif condition != "service_started":
                    problems.append(
                        f"{where}: {c.name} depends on {name} with condition {condition}, which "
                        "a service's requires (the start order) does not wait for"
                    )
                elif service is not None and dep.name not in service.setdefault("requires", []):
                    service["requires"].append(dep.name)
        # The project's own compose files, kept in the bundle when they are on the host (the
        # export copies them; a path plan.txt cannot hold is listed, not kept).
        files = [
            {"path": path, "archive": f"compose/{project}/{i}-{path.rsplit('/', 1)[-1]}"}
            for i, path in enumerate(paths)
        ]
        out.append(
            {
                "name": project,
                "containers": sorted(c.name for c in members),
                "working_dir": members[0].labels.get(COMPOSE_WORKING_DIR),
                "order": order,
                "files": [f for f in files if _HOST_PATH_RE.match(f["path"])],
                "files_not_kept": [f["path"] for f in files if not _HOST_PATH_RE.match(f["path"])],
            }
        )
    return out


def _options(options: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def overlap_problems(plan: dict, places: list[tuple[str, str]]) -> list[str]:
    """Bind mounts whose host directory is, holds, or lies inside one of ``places`` (``(what,
    path)``: where the migration writes or an engine keeps data). Copying one into the other
    lands the copy inside its own source, and the rollback's restore of the host directory
    would replace what is there (another service's data, the bundle the copy is read from, a
    store): refused, both directions."""
    problems = []
    for bind in plan.get("binds", []):
        host_path = bind["host_path"]
        for what, path in places:
            if host_path == path:
                relation = "is"
            elif host_path.startswith(path.rstrip("/") + "/"):
                relation = "is inside"
            elif path.startswith(host_path + "/"):
                relation = "holds"
            else:
                continue
            problems.append(
                f"bind mount {host_path} of {bind['container']} {relation} {what} {path}: its "
                "copy or the rollback's restore of it would overwrite or delete the other; "
                "bind-mount a directory apart from the migration's and the engines' data, or "
                "move the data into a named volume first"
            )
    return problems


def rootless_users(plan: dict) -> list[str]:
    """The rootless users the plan moves containers to."""
    return sorted({c["user"] for c in plan["containers"] if c["user"]})


def mapped_ids(own_ranges: list[list[int]], subid_count: int) -> int:
    """How many ids above 0 a rootless user's podman maps: its subordinate ranges, in order
    (container id 0 is the user itself, 1..N its subordinate ids). A user none of whose ranges
    holds ``subid_count`` ids is given one of that size first (``operations.rootless.user``)."""
    total = sum(count for _, count in own_ranges)
    if not any(count >= subid_count for _, count in own_ranges):
        total += subid_count
    return total


def id_problems(
    plan: dict, mapped: dict[str, tuple[int, int]], owners: dict[str, tuple[list, list]]
) -> list[str]:
    """Volumes and bind mounts moving to a rootless user whose files have owners the user's id
    mapping cannot hold. ``mapped``: user -> (uids, gids) mapped above 0 (:func:`mapped_ids`);
    ``owners``: volume name or bind mount host path -> (uids, gids) found in Docker's copy
    (``facts.docker.DataDir``)."""
    items = [(f"volume {v['name']}", v["name"], v["user"]) for v in plan["volumes"]]
    items += [
        (f"bind mount {b['host_path']} of {b['container']}", b["host_path"], b["user"])
        for b in plan.get("binds", [])
    ]
    problems = []
    for what, key, user in items:
        if not user or user not in mapped:
            continue
        if key not in owners:
            problems.append(f"{what}: the owners of its files could not be read")
            continue
        for kind, ids, limit in zip(("uid", "gid"), owners[key], mapped[user], strict=True):
            beyond = [i for i in ids if i > limit]
            if beyond:
                problems.append(
                    f"{what}: {kind} {', '.join(map(str, beyond))} cannot be mapped "
                    f"into {user}'s rootless podman, which maps {kind}s 0-{limit} (0 is {user}, "
                    f"1-{limit} its subordinate ids): change those owners, or give {user} a "
                    "larger subid_count"
                )
    return problems


def port_problems(plan: dict, unprivileged_port_start: int) -> list[str]:
    """Rootless services publishing a host port below ``net.ipv4.ip_unprivileged_port_start``
    (which this package does not lower: a host-wide security choice left to its owner)."""
    problems = []
    for c in plan["containers"]:
        if not (c["user"] and c["service"]):
            continue
        low = sorted(
            {p["host"] for p in c["service"]["ports"] if p["host"] < unprivileged_port_start}
        )
        if low:
            problems.append(
                f"container {c['name']}: as {c['user']}'s rootless service it cannot publish "
                f"host port {', '.join(map(str, low))} (the host's "
                f"net.ipv4.ip_unprivileged_port_start is {unprivileged_port_start}): publish it "
                f"on a port >= {unprivileged_port_start} first, lower that sysctl on the host, "
                "or keep the container rootful"
            )
    return problems


def space_needs(plan: dict, stores: dict[str, str]) -> list[tuple[str, str, int]]:
    """What the copies take, as ``(what, path, bytes)``: the bundle (every volume's and bind
    mount's tarball, every local-only image's archive), the service root (the bind mounts'
    copies) and each owner's podman store (its volumes and images).
    ``stores``: owner (ROOT or a user) -> that podman's store path."""
    size = lambda v: v["size_bytes"] or 0  # noqa: E731 (unknown sizes print as such)
    binds = sum(map(size, plan.get("binds", [])))
    needs = [
        (
            "the bundle",
            plan["bundle"],
            sum(map(size, plan["volumes"]))
            + binds
            + sum(i["size_bytes"] for i in plan["images"] if i["local_only"]),
        )
    ]
    if plan.get("binds"):
        needs.append(("the services' copies of bind mounts", plan["service_root"], binds))
    for owner, path in stores.items():
        volumes = sum(size(v) for v in plan["volumes"] if (v["user"] or ROOT) == owner)
        images = sum(i["size_bytes"] for i in plan["images"] if owner in i["owners"])
        what = "root's podman store" if owner == ROOT else f"{owner}'s podman store"
        needs.append((what, path, volumes + images))
    return needs


def space_check(
    needs: list[tuple[str, str, int]], filesystems: dict[str, dict]
) -> tuple[list[dict], list[str]]:
    """The needs summed per filesystem (``filesystems``: path -> ``{"source", "target",
    "avail"}``, what ``facts.storage.PathMount`` says, ``"note"`` optional), with a margin
    (:data:`MARGIN_FRACTION`, at least :data:`MARGIN_MIN_BYTES`). Returns the figures and
    the problems (a filesystem without room)."""
    rows: dict[tuple[str, str], dict] = {}
    problems = []
    for what, path, needed in needs:
        fs = filesystems.get(path)
        if fs is None:
            problems.append(f"{what} ({path}): the free space of its filesystem could not be read")
            continue
        row = rows.setdefault(
            (fs["source"], fs["target"]),
            {
                "filesystem": fs["source"],
                "mounted_on": fs["target"],
                "free_bytes": fs["avail"],
                "uses": [],
                "data_bytes": 0,
                "note": fs.get("note", ""),
            },
        )
        row["uses"].append(f"{what} {path}")
        row["data_bytes"] += needed
    for row in rows.values():
        margin = max(MARGIN_MIN_BYTES, int(row["data_bytes"] * MARGIN_FRACTION))
        row["needed_bytes"] = row["data_bytes"] + margin
        if row["needed_bytes"] > row["free_bytes"]:
            problems.append(
                f"not enough free space on {row['mounted_on']} ({row['filesystem']}) for "
                f"{' and '.join(row['uses'])}: needs {_size(row['needed_bytes'])} "
                f"({_size(row['data_bytes'])} + {_size(margin)} margin), "
                f"{_size(row['free_bytes'])} free{' (' + row['note'] + ')' if row['note'] else ''}"
            )
    return list(rows.values()), problems


def _size(n: int) -> str:
    return f"{n} bytes ({n / 2**20:.1f} MiB)"


def _docker_definition(c: DockerContainer, image: DockerImage | None) -> dict:
    """Everything Docker knew of the container, for the compose file and the rollback."""
    return {
        "image": c.image,
        "entrypoint": c.entrypoint,
        "cmd": c.cmd,
        "env": list(c.env),
        "labels": dict(c.labels),
        "ports": [
            {
                "container": p.container_port,
                "protocol": p.protocol,
                "host_ip": p.host_ip,
                "host": p.host_port,
            }
            for p in c.ports
        ],
        "mounts": [
            {"type": m.type, "source": m.name or m.source, "target": m.destination, "rw": m.rw}
            for m in c.mounts
        ],
        "restart": c.restart_policy,
        "restart_max_retries": c.restart_max_retries,
        "networks": list(c.networks),
        "network_aliases": {n: aliases for n in c.networks if (aliases := _aliases(c, n))},
        # What else the services carry (devices, GPUs, healthcheck, limits, user, …), as
        # `docker create` flags and as compose keys.
        "run_flags": docker_settings.docker_run_flags(c, image),
        "compose": docker_settings.compose_keys(c, image),
    }


def services(plan: dict) -> list[dict]:
    """The ``podman_services`` entries of the containers re-created under podman, each after
    the services it requires (a compose project's order)."""
    entries = [c["service"] for c in plan["containers"] if c["recreate"] and c["service"]]
    by_name = {e["name"]: e for e in entries}
    ordered: list[dict] = []

    def visit(entry: dict, seen: tuple) -> None:
        if entry in ordered or entry["name"] in seen:  # a cycle: Service validation names it
            return
        for dep in entry.get("requires", []):
            if dep in by_name:
                visit(by_name[dep], (*seen, entry["name"]))
        ordered.append(entry)

    for entry in entries:
        visit(entry, ())
    return ordered


def _header(comment: str = "#") -> str:
    return f"{comment} managed by podman-standard ({SOURCE}): the Docker export of a migration.\n"


def render_compose(plan: dict) -> str:
    """Every container as Docker ran it, as a compose file (volumes and networks external:
    they keep their names)."""
    compose_services = {}
    networks: set[str] = set()
    for c in plan["containers"]:
        d = c["docker"]
        svc: dict = {"image": d["image"], "container_name": c["name"]}
        if d["entrypoint"] is not None:
            svc["entrypoint"] = d["entrypoint"]
        if d["cmd"] is not None:
            svc["command"] = d["cmd"]
        if d["env"]:
            svc["environment"] = d["env"]
        if d["labels"]:
            svc["labels"] = d["labels"]
        if d["ports"]:
            svc["ports"] = [
                ":".join(filter(None, [p["host_ip"], p["host"]]))
                + f":{p['container']}/{p['protocol']}"
                for p in d["ports"]
            ]
        if d["mounts"]:
            svc["volumes"] = [
                f"{m['source']}:{m['target']}" + ("" if m["rw"] else ":ro") for m in d["mounts"]
            ]
        restart = d["restart"]
        if restart == "on-failure" and d["restart_max_retries"]:
            restart = f"on-failure:{d['restart_max_retries']}"
        svc["restart"] = restart
        svc.update(d.get("compose", {}))  # (a bundle written before they were recorded)
        own = [n for n in d["networks"] if n not in DEFAULT_NETWORKS | {"host"}]
        if own:
            aliases = d.get("network_aliases", {})
            svc["networks"] = own
            if any(n in aliases for n in own):
                svc["networks"] = {n: {"aliases": aliases[n]} if n in aliases else {} for n in own}
            networks.update(own)
        compose_services[c["name"]] = svc
    document = {"services": compose_services}
    if plan["volumes"]:
        document["volumes"] = {
            v["name"]: {"external": True, "name": v["name"]} for v in plan["volumes"]
        }
    if networks:
        document["networks"] = {n: {"external": True, "name": n} for n in sorted(networks)}
    return _header() + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def render_services(plan: dict) -> str:
    """The re-created containers as ``podman_services`` (JSON: paste into group_data). Their
    env is declared as secrets read from the controller's environment variable of the same
    name: the values (in the bundle's docker-compose.yml) stay out of group_data."""
    entries = []
    for c in plan["containers"]:
        if c["recreate"] and c["service"]:
            secrets = {k: {"env": k} for k in sorted(c["secret_env"])}
            entry = {**c["service"], **({"secrets": secrets} if secrets else {})}
            # In the model's field order (name and image first), whatever the plan's.
            entries.append({**{k: entry[k] for k in Service.model_fields if k in entry}, **entry})
    return json.dumps(entries, indent=2) + "\n"


def render_plan_text(plan: dict) -> str:
    """The work list the on-host script reads, one item per line; OWNER is ``root`` or a
    rootless user (names and references are checked to hold no spaces or shell characters:
    see build_plan)."""
    lines = [f"volume {v['name']} {v['user'] or ROOT}" for v in plan["volumes"]]
    for image in plan["images"]:
        tags = " ".join(image["docker_tags"])
        if image["local_only"]:
            lines.append(f"image-save {image['archive']} {tags}")
        for owner in image["owners"]:
            if image["local_only"]:
                lines.append(f"image-archive {owner} {image['archive']} {tags}")
            else:
                lines.append(f"image-stream {owner} {tags}")
            # podman's naming of a loaded image varies with its version: name it explicitly.
            lines.append(f"image-tag {owner} {image['id']} {' '.join(image['refs'])}")
    lines += [
        f"bind {b['container']} {b['user'] or ROOT} {b['archive']} {b['host_path']} "
        f"{b['service_dir']} {b['source']}"
        for b in plan.get("binds", [])
    ]
    lines += [
        f"compose-file {f['archive']} {f['path']}"
        for project in plan.get("compose_projects", [])
        for f in project.get("files", [])
    ]
    # Each service's unit files (plan["unit_files"], operations.migration.unit_files): what
    # the script removes when it takes the services down again.
    units = plan.get("unit_files", {})
    lines += [
        " ".join([f"service {s['name']} {s.get('user') or ROOT}", *units.get(s["name"], [])])
        for s in services(plan)
    ]
    # What ran at the audit: the export refuses to start when Docker's running set changed.
    lines += [f"running {c['name']}" for c in plan["containers"] if c["recreate"]]
    return "".join(line + "\n" for line in lines)


def render_docker_restore(plan: dict) -> str:
    """A script that re-creates, under Docker, each container of the plan that Docker no
    longer has (the rollback runs it); every value is shell-quoted."""
    q = shlex.quote
    lines = ["#!/bin/bash", _header().rstrip("\n"), "set -euo pipefail"]
    networks = sorted(
        {n for c in plan["containers"] for n in c["docker"]["networks"]}
        - DEFAULT_NETWORKS
        - {"host"}
    )
    for n in networks:
        lines.append(
            f"docker network inspect {q(n)} >/dev/null 2>&1 || docker network create {q(n)}"
        )
    for c in plan["containers"]:
        d = c["docker"]
        args = ["docker", "create", "--name", c["name"]]
        restart = d["restart"]
        if restart == "on-failure" and d["restart_max_retries"]:
            restart = f"on-failure:{d['restart_max_retries']}"
        args += ["--restart", restart]
        for e in d["env"]:
            args += ["--env", e]
        for key, value in sorted(d["labels"].items()):
            args += ["--label", f"{key}={value}"]
        for p in d["ports"]:
            host = ":".join(filter(None, [p["host_ip"], p["host"]]))
            args += ["--publish", f"{host}:{p['container']}/{p['protocol']}"]
        for m in d["mounts"]:
            args += ["--volume", f"{m['source']}:{m['target']}" + ("" if m["rw"] else ":ro")]
        own = [n for n in d["networks"] if n not in DEFAULT_NETWORKS | {"host"}]
        if own:  # (the host network is one of the run flags)
            args += ["--network", own[0]]
            for alias in d.get("network_aliases", {}).get(own[0], []):
                args += ["--network-alias", alias]
        args += d.get("run_flags", [])  # (a bundle written before they were recorded)
        command = list(d["cmd"] or [])
        if d["entrypoint"]:
            args += ["--entrypoint", d["entrypoint"][0]]
            command = d["entrypoint"][1:] + command
        args += [d["image"], *command]
        name = q(c["name"])
        lines.append(f"docker container inspect {name} >/dev/null 2>&1 || {' '.join(map(q, args))}")
    return "\n".join(lines) + "\n"


def bundle_files(plan: dict) -> dict[str, str]:
    """The rendered files of the bundle, by path relative to it. Rendered from the plan as
    manifest.json holds it (keys sorted), so that a run resuming from the manifest renders
    the very files the SHA256SUMS of the first run's export recorded."""
    manifest = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    plan = json.loads(manifest)
    return {
        FILES["manifest"]: manifest,
        FILES["plan"]: render_plan_text(plan),
        FILES["compose"]: render_compose(plan),
        FILES["services"]: render_services(plan),
        FILES["docker_restore"]: render_docker_restore(plan),
    }


def describe(plan: dict, host: str) -> str:
    """The plan, printed before anything runs (also with ``--dry``); every line :func:`shown`."""
    out = [f"{host}: Docker -> Podman migration plan (bundle {plan['bundle']})"]
    for c in plan["containers"]:
        d = c["docker"]
        action = "re-create as a podman service" if c["recreate"] else "export only (not running)"
        if c["user"]:
            action += f" (rootless, {c['user']}'s systemd)"
        out.append(f"  container {c['name']} [{c['state']}] -> {action}")
        networks = ", ".join(d["networks"]) or "none"
        out.append(f"    image {d['image']}, restart {d['restart']}, networks {networks}")
        command = "(the image's)" if d["cmd"] is None else shlex.join(d["cmd"])
        env = ", ".join(e.split("=", 1)[0] for e in d["env"]) or "none"
        out.append(f"    command {command}, env {env}")
        for p in d["ports"]:
            host_side = ":".join(filter(None, [p["host_ip"], p["host"]]))
            out.append(f"    port {host_side} -> {p['container']}/{p['protocol']}")
        for m in d["mounts"]:
            ro = "" if m["rw"] else " (ro)"
            out.append(f"    {m['type']} {m['source']} -> {m['target']}{ro}")
        svc = c["service"] or {}
        if svc.get("devices"):
            out.append(f"    devices {', '.join(svc['devices'])}")
        if svc.get("healthcheck"):
            health = svc["healthcheck"]
            out.append(f"    healthcheck every {health['interval']}: {health['command']}")
        if svc.get("requires"):
            out.append(f"    starts after {', '.join(svc['requires'])}")
        runtime = {k: v for k, v in svc.items() if k in RUNTIME_FIELDS}
        if runtime:
            out.append(f"    carried: {json.dumps(runtime, sort_keys=True)}")
    for v in plan["volumes"]:
        size = "size unknown" if v["size_bytes"] is None else f"{v['size_bytes']} bytes"
        owner = f"{v['user']}'s rootless" if v["user"] else "a"
        out.append(
            f"  volume {v['name']} ({size}) -> {v['archive']} (tar + sha256), then {owner} "
            "podman volume"
        )
    for b in plan.get("binds", []):
        size = "size unknown" if b["size_bytes"] is None else f"{b['size_bytes']} bytes"
        out.append(
            f"  bind mount {b['host_path']} of {b['container']} ({size}) -> {b['archive']} "
            f"(tar + sha256), then copied to {b['service_dir']}/{b['source']} (the original "
            "stays)"
        )
    for i in plan["images"]:
        how = f"saved to {i['archive']}" if i["local_only"] else "pullable: streamed from Docker"
        out.append(
            f"  image {', '.join(i['refs'])} ({i['size_bytes']} bytes): {how} "
            f"(into {', '.join(i['owners'])}'s podman)"
        )
    for project in plan.get("compose_projects", []):
        out.append(
            f"  compose project {project['name']} ({project['working_dir'] or 'no working dir'}):"
            f" {', '.join(project['containers'])} move as one unit (services; depends_on as "
            "requires)"
        )
        if project.get("order"):
            out.append(f"    start order: {project['order']}")
        for f in project.get("files", []):
            out.append(f"    compose file {f['path']} -> {f['archive']} (when on this host)")
        for path in project.get("files_not_kept", []):
            out.append(f"    compose file {path!r}: a path the bundle cannot name, not kept")
    daemon = plan.get("daemon") or {}
    if daemon.get("data_root"):
        out.append(f"  {daemon['file']}: data-root {daemon['data_root']} (Docker's volumes)")
    if daemon.get("registries"):
        out.append(
            f"  {daemon['file']}: proposed podman_registries entries (applied with "
            "podman_migration_registries: true): "
            + json.dumps(daemon["registries"], sort_keys=True)
        )
    for item in daemon.get("not_carried", []):
        out.append(f"  {daemon['file']}: not carried: {item}")
    for row in plan["space"]:
        note = f"; {row['note']}" if row["note"] else ""
        out.append(
            f"  space on {row['mounted_on']} ({row['filesystem']}): needs {row['needed_bytes']} "
            f"bytes, {row['free_bytes']} free ({'; '.join(row['uses'])}{note})"
        )
    for problem in plan["problems"]:
        out.append(f"  CANNOT MIGRATE: {problem}")
    return "\n".join(map(shown, out))
