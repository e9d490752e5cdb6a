"""NVIDIA GPUs and the NVIDIA Container Toolkit's CDI view of them (§5.1 item 6, §8.1)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from pyinfra.api import FactBase, QuoteString, StringCommand

from . import FactValue, section, split_sections

NVIDIA_PCI_VENDOR = "0x10de"
# PCI base class 0x03: display controllers (VGA 0x0300xx, 3D 0x0302xx).
DISPLAY_CLASS_PREFIX = "0x03"
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")


@dataclass(frozen=True)
class Gpu(FactValue):
    index: int
    name: str
    uuid: str
    driver_version: str
    memory_total_mib: int


class NvidiaGpus(FactBase[list[Gpu]]):
    """
    The GPUs ``nvidia-smi`` sees. ``[]`` without nvidia-smi, or when it cannot talk to the driver.
    """

    @staticmethod
    def default() -> list[Gpu]:
        return []

    def requires_command(self) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        # nvidia-smi exits non-zero when the driver is not loaded: that is "no GPU", not a failure.
        return (
            "nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total"
            " --format=csv,noheader,nounits || true"
        )

    def process(self, output: list[str]) -> list[Gpu]:
        gpus = []
        for row in csv.reader(output, skipinitialspace=True):
            # Skips nvidia-smi's error text and, should units/header sneak in, the header line.
            if len(row) < 5 or not row[0].strip().isdigit():
                continue
            memory = row[4].strip().removesuffix("MiB").strip()
            gpus.append(
                Gpu(
                    index=int(row[0]),
                    name=row[1].strip(),
                    uuid=row[2].strip(),
                    driver_version=row[3].strip(),
                    memory_total_mib=int(memory) if memory.isdigit() else 0,
                )
            )
        return gpus


@dataclass(frozen=True)
class NvidiaPresenceState(FactValue):
    # PCI addresses of NVIDIA display/3D controllers, whether or not a driver is bound.
    pci_devices: list[str] = field(default_factory=list)
    # /dev/nvidia* nodes (nvidia0, nvidiactl, nvidia-uvm, ...).
    device_nodes: list[str] = field(default_factory=list)
    # /proc/driver/nvidia/version exists: the kernel module is loaded.
    driver_loaded: bool = False
    ctk_version: str | None = None
    # `nvidia-ctk cdi list`: fully qualified CDI device names, e.g. "nvidia.com/gpu=all".
    cdi_devices: list[str] = field(default_factory=list)
    # Files in /etc/cdi and /var/run/cdi.
    cdi_spec_files: list[str] = field(default_factory=list)

    @property
    def has_gpu(self) -> bool:
        return bool(self.pci_devices or self.device_nodes)


class NvidiaPresence(FactBase[NvidiaPresenceState]):
    """
    Is there NVIDIA hardware, a loaded driver, the container toolkit and CDI specs — in one
    command that needs nothing but a shell (it is asked on every host, GPU or not).
    """

    @staticmethod
    def default() -> NvidiaPresenceState:
        return NvidiaPresenceState()

    def command(self) -> str:
        return " ".join(
            (
                section("pci"),
                'for d in /sys/bus/pci/devices/*; do [ -r "$d/vendor" ] &&'
                ' echo "${d##*/} $(cat "$d/vendor") $(cat "$d/class" 2>/dev/null)"; done;',
                section("nodes"),
                "ls -1d /dev/nvidia* 2>/dev/null;",
                section("driver"),
                "[ -e /proc/driver/nvidia/version ] && echo loaded;",
                section("ctk"),
                "if command -v nvidia-ctk >/dev/null 2>&1; then nvidia-ctk --version 2>/dev/null;",
                section("cdi"),
                # Its "Found N CDI devices" log goes to stderr; stdout is one name per line.
                "nvidia-ctk cdi list 2>/dev/null; fi;",
                section("specs"),
                f"ls -1d {' '.join(d + '/*' for d in CDI_SPEC_DIRS)} 2>/dev/null;",
                "true",
            )
        )

    def process(self, output: list[str]) -> NvidiaPresenceState:
        sections = split_sections(output)
        pci = []
        for line in sections.get("pci", []):
            parts = line.split()
            if (
                len(parts) == 3
                and parts[1].lower() == NVIDIA_PCI_VENDOR
                and parts[2].lower().startswith(DISPLAY_CLASS_PREFIX)
            ):
                pci.append(parts[0])
        ctk_lines = [line for line in sections.get("ctk", []) if line.strip()]
        return NvidiaPresenceState(
            pci_devices=pci,
            device_nodes=[line for line in sections.get("nodes", []) if line.startswith("/dev/")],
            driver_loaded="loaded" in sections.get("driver", []),
            # "NVIDIA Container Toolkit CLI version 1.17.8" (then "commit: <sha>").
            ctk_version=ctk_lines[0].split()[-1] if ctk_lines else None,
            cdi_devices=[line.strip() for line in sections.get("cdi", []) if "=" in line],
            cdi_spec_files=[line for line in sections.get("specs", []) if line.startswith("/")],
        )


# Where dnf and apt read package sources from.
PACKAGE_SOURCE_GLOBS = (
    "/etc/yum.repos.d/*.repo",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d/*",
)


@dataclass(frozen=True)
class PackageSourcesState(FactValue):
    # Source files (dnf .repo, apt .list/.sources) whose text names the URL.
    files: list[str] = field(default_factory=list)
    # The key file exists and is not empty.
    key_present: bool = False


class PackageSources(FactBase[PackageSourcesState]):
    """
    Which package source files name ``url`` (``grep -l -F``), and whether ``key`` (a signing
    key file, may be "") is there: how NVIDIA's repository is configured, in one command.
    """

    @staticmethod
    def default() -> PackageSourcesState:
        return PackageSourcesState()

    def command(self, url: str, key: str = "") -> StringCommand:
        return StringCommand(
            section("files"),
            "grep -l -s -F -e",
            QuoteString(url),
            "--",
            *PACKAGE_SOURCE_GLOBS,
            ";",
            section("key"),
            StringCommand("[ -s", QuoteString(key or "/nonexistent"), "] && echo present;"),
            "true",
        )

    def process(self, output: list[str]) -> PackageSourcesState:
        sections = split_sections(output)
        return PackageSourcesState(
            files=[line for line in sections.get("files", []) if line.startswith("/")],
            key_present="present" in sections.get("key", []),
        )
