"""The standard's QA criteria (§7.3, §8) as ONE definition, used by ``deploys/verify.py``
(through the ``Probe`` fact) and by the pytest-testinfra suite in ``tests/qa/`` (through
``host.run``), so the two cannot drift apart.

A criterion names the commands it observes and a pure ``judge`` that turns their results
(exit status + output) and the host's declared data into expected/found/passed, plus the
standard's §9 troubleshooting hint for a failure.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pyinfra.api import FactBase

from facts import FactValue
from facts.compose import as_user
from model.host_data import HostClass, HostData

_RC = "@@rc="
TEST_IMAGE = "docker.io/library/alpine:latest"
WORKSTATION_IMAGE = "docker.io/library/nginx:alpine"
GPU_IMAGE = "docker.io/nvidia/cuda:11.8.0-base-ubuntu22.04"
PODMAN_SOCKET = "unix:///run/podman/podman.sock"


@dataclass(frozen=True)
class ProbeResult(FactValue):
    rc: int
    output: str


class Probe(FactBase[ProbeResult]):
    """Exit status and combined output of one shell command (never fails the host)."""

    def command(self, command: str) -> str:
        return f"( {command} ) 2>&1; echo '{_RC}'$?"

    def process(self, output: list[str]) -> ProbeResult:
        rc = 127
        if output and output[-1].startswith(_RC):
            rc = int(output[-1][len(_RC) :] or 127)
            output = output[:-1]
        return ProbeResult(rc=rc, output="\n".join(output).strip())


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    expected: str
    found: str
    passed: bool
    hint: str = ""


Results = dict[str, ProbeResult]


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    classes: frozenset[HostClass]
    commands: dict[str, str]
    judge: Callable[[Results, HostData], tuple[str, str, bool]]
    hint: str
    applies: Callable[[HostData], bool] = field(default=lambda cfg: True)
    # Commands that depend on the host's data (one per declared item), instead of ``commands``.
    commands_for: Callable[[HostData], dict[str, str]] | None = None


def _first_line(result: ProbeResult) -> str:
    """The line that says most: on failure the first error line, else the first line."""
    lines = result.output.splitlines()
    if not lines:
        return f"(exit {result.rc}, no output)"
    if result.rc != 0:
        return next((line for line in lines if "error" in line.lower()), lines[0])
    return lines[0]


def _info(results: Results) -> dict:
    try:
        return json.loads(results["info"].output) if results["info"].rc == 0 else {}
    except ValueError:
        return {}


def _judge_version(r: Results, cfg: HostData):
    ok = r["podman"].rc == 0 and r["podman"].output.startswith("podman version")
    return "podman version …", _first_line(r["podman"]), ok


def _judge_info(r: Results, cfg: HostData):
    info = _info(r)
    return "podman info answers (JSON)", "ok" if info else _first_line(r["info"]), bool(info)


def _judge_graphroot(r: Results, cfg: HostData):
    found = _info(r).get("store", {}).get("graphRoot") or "(podman info failed)"
    return cfg.graphroot, found, found == cfg.graphroot


def _judge_registries(r: Results, cfg: HostData):
    found = _info(r).get("registries", {}).get("search") or []
    wanted = list(cfg.registries.search)
    return ", ".join(wanted), ", ".join(found) or "(none)", found == wanted


def _judge_no_daemon(r: Results, cfg: HostData):
    state = r["docker"].output or "(no output)"
    return "docker.service not active", state, r["docker"].rc != 0


def _judge_docker_cli(r: Results, cfg: HostData):
    ok = r["docker"].rc == 0 and r["docker"].output.startswith("podman version")
    return "docker --version shows podman", _first_line(r["docker"]), ok


def _judge_docker_ps(r: Results, cfg: HostData):
    docker, podman = r["docker_ps"], r["podman_ps"]
    if docker.rc != 0:
        return "docker ps works", _first_line(docker), False
    same = sorted(docker.output.split()) == sorted(podman.output.split())
    count = len(docker.output.split())
    found = f"{count} containers" + ("" if same else f", podman ps shows {podman.output.split()}")
    return "same containers as podman ps", found, same


def _judge_compat_layer(r: Results, cfg: HostData):
    found = r["layer"].output or "none"
    return "podman-docker or the docker wrapper", found, found in ("podman-docker", "wrapper")


def _judge_echo(token: str):
    def judge(r: Results, cfg: HostData):
        result = r["run"]
        return f"prints {token}", _first_line(result), result.rc == 0 and token in result.output

    return judge


def _judge_rc_zero(what: str):
    def judge(r: Results, cfg: HostData):
        result = r["run"]
        return what, "ok" if result.rc == 0 else _first_line(result), result.rc == 0

    return judge


def _judge_socket(r: Results, cfg: HostData):
    result = r["remote"]
    ok = result.rc == 0 and bool(result.output)
    found = f"API server {result.output}" if ok else _first_line(result)
    return "podman.socket answers the API", found, ok


def _judge_gpu(r: Results, cfg: HostData):
    result = r["run"]
    ok = result.rc == 0 and "GPU 0" in result.output
    return "nvidia-smi -L lists GPU 0", _first_line(result), ok


def _judge_desktop_docker(r: Results, cfg: HostData):
    result = r["docker_ps"]
    return "docker ps works", "ok" if result.rc == 0 else _first_line(result), result.rc == 0


def _judge_desktop_untouched(r: Results, cfg: HostData):
    result = r["docker"]
    ok = result.rc == 0 and result.output.startswith("Docker version")
    return "docker is Docker (Desktop), not podman", _first_line(result), ok


def _login_commands(cfg: HostData) -> dict[str, str]:
    """One ``podman login`` per present credential, as its user: with stored credentials and
    no terminal, podman checks them against the registry (and prompts, so fails, without)."""
    return {
        f"{c.registry} ({c.user or 'root'})": as_user(
            c.user, f"podman login {c.registry} </dev/null"
        )
        for c in cfg.registries.credentials
        if c.present
    }


def _judge_logins(r: Results, cfg: HostData):
    refused = [f"{name}: {_first_line(result)}" for name, result in r.items() if result.rc != 0]
    expected = f"{len(r)} registry login(s) accepted"
    return expected, "; ".join(refused) or expected, not refused


# SELinux (issue: a moved store needs container labels). Each probe prints the mode first
# ("none" without SELinux tools) and checks nothing more where SELinux is not enabled.
STORE_TYPES = ("container_var_lib_t", "container_ro_file_t", "container_file_t")
_MODE = 'm=$(getenforce 2>/dev/null || echo none); echo "$m"'


def _store_label_commands(cfg: HostData) -> dict[str, str]:
    return {"label": f'{_MODE}; [ "$m" = none ] || stat -c %C -- {shlex.quote(cfg.graphroot)}'}


def _selinux_mode(line: str) -> str:
    return "not installed" if line == "none" else line.lower()


def _judge_store_label(r: Results, cfg: HostData):
    lines = r["label"].output.splitlines() or ["none"]
    expected = f"{cfg.graphroot} labelled {' or '.join(STORE_TYPES)}"
    if lines[0] not in ("Enforcing", "Permissive"):
        return expected, f"SELinux {_selinux_mode(lines[0])}: nothing to label", r["label"].rc == 0
    context = lines[1] if len(lines) > 1 else "(no label)"
    parts = context.split(":")
    return expected, context, r["label"].rc == 0 and len(parts) > 2 and parts[2] in STORE_TYPES


def _judge_enforcing_container(r: Results, cfg: HostData):
    result = r["run"]
    lines = result.output.splitlines() or ["none"]
    if lines[0] != "Enforcing":
        return (
            "a confined container runs",
            f"SELinux {_selinux_mode(lines[0])}: not enforcing",
            True,
        )
    context = lines[-1] if len(lines) > 1 else _first_line(result)
    return "a confined container runs", context, result.rc == 0 and ":container_t:" in context


def _repository_commands(cfg: HostData) -> dict[str, str]:
    url = shlex.quote(cfg.nvidia_repository.url)
    return {
        "sources": f"grep -l -s -F -e {url} -- /etc/yum.repos.d/*.repo /etc/apt/sources.list "
        "/etc/apt/sources.list.d/*"
    }


def _judge_repository(r: Results, cfg: HostData):
    found = r["sources"].output.splitlines()
    expected = f"a package source names {cfg.nvidia_repository.url}"
    return expected, ", ".join(found) or "no source file names it", bool(found)


LINUX = frozenset({HostClass.server, HostClass.workstation})
DESKTOP = frozenset({HostClass.desktop})
_LAYER = (
    "if command -v rpm >/dev/null 2>&1 && rpm -q podman-docker >/dev/null 2>&1; "
    "then echo podman-docker; "
    "elif grep -qs 'managed by podman-standard' /usr/local/bin/docker; then echo wrapper; "
    "else echo none; fi"
)

CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "podman-installed",
        "Podman installed",
        LINUX,
        {"podman": "podman --version"},
        _judge_version,
        "Install it: deploys/podman_standard.py with podman_phases=install (§5.1).",
    ),
    Criterion(
        "podman-info",
        "podman info works",
        LINUX,
        {"info": "podman info --format json"},
        _judge_info,
        "Run `podman info` on the host; a broken storage.conf is the usual cause.",
    ),
    Criterion(
        "graphroot",
        "graphRoot as declared",
        LINUX,
        {"info": "podman info --format json"},
        _judge_graphroot,
        "Converge storage (podman_phases=storage); check /etc/containers/storage.conf and that "
        "no storage.conf.d drop-in disagrees (§2.4).",
    ),
    Criterion(
        "no-docker-daemon",
        "No Docker daemon running",
        LINUX,
        {"docker": "systemctl is-active docker.service"},
        _judge_no_daemon,
        "Migrate the host: deploys/migrate_from_docker.py (§6.1); never run both runtimes.",
    ),
    Criterion(
        "docker-cli",
        "docker --version shows Podman",
        LINUX,
        {"docker": "docker --version"},
        _judge_docker_cli,
        '"docker: command not found": install podman-docker (Fedora) or the wrapper '
        "(Debian/Ubuntu) with podman_phases=install (§9.1).",
    ),
    Criterion(
        "docker-ps",
        "docker ps shows the podman containers",
        LINUX,
        {
            "docker_ps": "docker ps -a --format '{{.ID}}'",
            "podman_ps": "podman ps -a --format '{{.ID}}'",
        },
        _judge_docker_ps,
        "Root vs rootless mismatch: compare `sudo podman ps` with `podman ps` (§9.1).",
    ),
    Criterion(
        "compat-layer",
        "podman-docker or wrapper present",
        LINUX,
        {"layer": _LAYER},
        _judge_compat_layer,
        "Converge podman_phases=install (§2.2).",
        applies=lambda cfg: cfg.docker_compat.value != "none",
    ),
    Criterion(
        "registries",
        "Registries configured",
        LINUX,
        {"info": "podman info --format json"},
        _judge_registries,
        "Converge podman_phases=config; check /etc/containers/registries.conf.d/ (§5.1).",
    ),
    Criterion(
        "registry-logins",
        "Registries accept the deployed logins",
        LINUX,
        {},
        _judge_logins,
        "Check the secret on the controller and converge podman_phases=config; `podman login "
        "REGISTRY` as the user shows the registry's answer (§5.1).",
        applies=lambda cfg: any(c.present for c in cfg.registries.credentials),
        commands_for=_login_commands,
    ),
    Criterion(
        "test-container",
        "A test container runs",
        LINUX,
        {"run": f"podman run --rm {TEST_IMAGE} echo podman-works"},
        _judge_echo("podman-works"),
        "Check registry access (`podman pull`) and `podman info` (§7.3).",
    ),
    Criterion(
        "docker-run",
        "docker run --rm nginx:alpine works",
        frozenset({HostClass.workstation}),
        {"run": f"docker run --rm {WORKSTATION_IMAGE} true"},
        _judge_rc_zero("exits 0"),
        "Check the compatibility layer and registry access (§8.2).",
    ),
    Criterion(
        "api-socket",
        "Podman API socket answers",
        LINUX,
        {"remote": f"podman --url {PODMAN_SOCKET} version --format '{{{{.Server.Version}}}}'"},
        _judge_socket,
        "systemctl enable --now podman.socket (§9.1).",
        applies=lambda cfg: cfg.socket_enabled,
    ),
    Criterion(
        "gpu-cdi",
        "NVIDIA GPU visible in a container (CDI)",
        LINUX,
        {"run": f"podman run --rm --device nvidia.com/gpu=all {GPU_IMAGE} nvidia-smi -L"},
        _judge_gpu,
        "Regenerate the CDI spec (nvidia-ctk cdi generate) or enable nvidia-cdi-refresh.path; "
        "check `nvidia-ctk cdi list` (§5.1, §8.1).",
        applies=lambda cfg: cfg.nvidia_enabled is True,
    ),
    Criterion(
        "selinux-store-label",
        "SELinux: the store has container storage labels",
        LINUX,
        {},
        _judge_store_label,
        "Converge podman_phases=storage (selinux.store_labels): `semanage fcontext -a -e "
        "/var/lib/containers/storage GRAPHROOT; restorecon -R GRAPHROOT`.",
        commands_for=_store_label_commands,
    ),
    Criterion(
        "selinux-enforcing-container",
        "SELinux: a test container runs confined while enforcing",
        LINUX,
        {
            "run": f'{_MODE}; [ "$m" = Enforcing ] || exit 0; '
            f"podman run --rm {TEST_IMAGE} cat /proc/self/attr/current"
        },
        _judge_enforcing_container,
        "`ausearch -m avc -ts recent` names the denial; a store without container labels is "
        "the usual cause (selinux-store-label).",
    ),
    Criterion(
        "nvidia-repository",
        "NVIDIA's container toolkit repository configured",
        LINUX,
        {},
        _judge_repository,
        "Converge podman_phases=config (deploys/nvidia.py) or add the host's own source for "
        "nvidia-container-toolkit (podman_nvidia_repository).",
        applies=lambda cfg: cfg.nvidia_enabled is True and cfg.nvidia_repository.enabled,
        commands_for=_repository_commands,
    ),
    Criterion(
        "docker-desktop",
        "Docker Desktop functioning",
        DESKTOP,
        {"docker_ps": "docker ps"},
        _judge_desktop_docker,
        "Start Docker Desktop; this package changes nothing on this host (§8.3).",
    ),
    Criterion(
        "desktop-untouched",
        "No Podman-related changes applied",
        DESKTOP,
        {"docker": "docker --version"},
        _judge_desktop_untouched,
        "`docker` should be Docker Desktop's CLI; remove any podman alias (§8.3).",
    ),
)


def criteria_for(cfg: HostData) -> list[Criterion]:
    """The criteria that apply to this host, their data-dependent commands filled in."""
    return [
        replace(c, commands=c.commands_for(cfg)) if c.commands_for else c
        for c in CRITERIA
        if cfg.host_class in c.classes and c.applies(cfg)
    ]


def evaluate(criterion: Criterion, results: Results, cfg: HostData) -> Check:
    expected, found, passed = criterion.judge(results, cfg)
    return Check(
        criterion.id, criterion.title, expected, found, passed, "" if passed else criterion.hint
    )


def run_criteria(cfg: HostData, run: Callable[[str], ProbeResult]) -> list[Check]:
    """Evaluate every criterion for this host, running each distinct command once."""
    cache: dict[str, ProbeResult] = {}
    checks = []
    for criterion in criteria_for(cfg):
        results = {}
        for name, command in criterion.commands.items():
            if command not in cache:
                cache[command] = run(command)
            results[name] = cache[command]
        checks.append(evaluate(criterion, results, cfg))
    return checks
