"""Test-suite options. The real-host tier (tests marked ``realhost``) boots qemu guests and
takes minutes, so it only runs when asked for with ``--realhost``."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--realhost",
        action="store_true",
        default=False,
        help="run the real-host tier (boots qemu guests; needs root)",
    )
    parser.addoption(
        "--testbed",
        choices=("qemu", "vagrant"),
        default="qemu",
        help="what the real-host tier's guests are: qemu processes (default) or Vagrant VMs "
        "(libvirt, in a network namespace; needs vagrant, vagrant-libvirt, libvirt)",
    )
    parser.addoption(
        "--realhost-child-report",
        default=None,
        metavar="PATH",
        help="internal: this pytest runs real-host tests beside its parent and writes their "
        "reports and timings to PATH (tests/realhost/tier.py)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--realhost"):
        return
    skip = pytest.mark.skip(reason="real-host tier: pass --realhost")
    for item in items:
        if "realhost" in item.keywords:
            item.add_marker(skip)
