"""``python -m testbed {build,up,down,converge}``: the real-host testbed by hand.

up        build images if needed, start the registry, boot the guests, write .testbed/hosts.json
          (or $PODMAN_STANDARD_TESTBED), then wait for Ctrl-C (or leave all running: --detach)
down      stop what a detached ``up`` left running
converge  up, run ``pyinfra -y --no-wait inventories/testbed.py DEPLOY``, report, tear down
build     only build (or find cached) images: every release, variants bare and podman unless
          named (--variant docker for the migration's image)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from .fleet import (
    DEFAULT_DEPLOY,
    DEFAULT_GUESTS,
    REPO,
    STATE_ENV,
    Testbed,
    parse_guests,
    stop_recorded,
)
from .images import RELEASES, VARIANTS, build_image

# The same variable tells inventories/testbed.py where the state is, so one export serves both.
STATE = Path(os.environ.get(STATE_ENV) or REPO / ".testbed" / "hosts.json").resolve()
WORKDIR = STATE.with_name(f"{STATE.stem}-run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "converge"):
        command = commands.add_parser(name)
        command.add_argument(
            "--guests", default=DEFAULT_GUESTS, help=f"release:role,... (default {DEFAULT_GUESTS})"
        )
    commands.choices["up"].add_argument(
        "--detach", action="store_true", help="leave guests and registry running; stop with down"
    )
    commands.choices["converge"].add_argument("--deploy", default=DEFAULT_DEPLOY)
    commands.add_parser("down")
    build = commands.add_parser("build")
    build.add_argument(
        "releases", nargs="*", metavar="RELEASE", help=f"default: {' '.join(RELEASES)}"
    )
    build.add_argument("--variant", action="append", choices=list(VARIANTS), dest="variants")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress must reach CI logs as it happens

    if args.command == "build":
        unknown = sorted(set(args.releases) - set(RELEASES))
        if unknown:
            parser.error(f"unknown release {', '.join(unknown)}; known: {', '.join(RELEASES)}")
        for release in args.releases or RELEASES:
            for variant in args.variants or ["bare", "podman"]:
                print(build_image(release, variant=variant).disk)
        return 0
    if args.command == "down":
        if not STATE.exists():
            print(f"nothing to stop: {STATE} does not exist")
            return 0
        stop_recorded(STATE)
        return 0
    if STATE.exists():
        sys.exit(f"{STATE} exists: a testbed is up; run `python -m testbed down` first")

    testbed = Testbed(parse_guests(args.guests), WORKDIR, STATE)
    testbed.up()
    returncode = 0
    try:
        for name, guest in testbed.guests.items():
            print(
                f"{name}: ssh -i {guest.ssh_key} -p {guest.ssh_port} "
                f"{guest.ssh_user}@{guest.ssh_host}  (console: {guest.console_log})"
            )
        print(f"registry: {testbed.registry.address} (guests: {testbed.registry.guest_address})")
        print(f"state: {STATE}")
        if args.command == "up" and args.detach:
            testbed.detach()
            print("detached; stop with `python -m testbed down`")
            return 0
        if args.command == "up":
            print("up; Ctrl-C tears everything down")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            return 0
        with testbed.timings.stage(f"converge ({args.deploy})"):
            returncode = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pyinfra",
                    "-y",
                    "--no-wait",
                    str(testbed.inventory_path),
                    args.deploy,
                ],
                cwd=REPO,
                env=testbed.pyinfra_env(),
            ).returncode
        print(f"pyinfra exited {returncode}")
        return returncode
    finally:
        if not (args.command == "up" and args.detach):
            testbed.down()
            STATE.unlink(missing_ok=True)
        print("stage timings:\n" + testbed.timings.report())


if __name__ == "__main__":
    sys.exit(main())
