"""How many vCPUs a testbed guest should have under software emulation (TCG): two guests boot
side by side, one with each count, and run the same work; then they swap places. Prints each
guest's seconds to SSH and for the work, and the ratios.

qemu runs all of a guest's vCPUs on one host thread here (``tcg,thread=single``: see
testbed/guests.py), so a second vCPU adds no compute, only what an SMP kernel costs (locks,
inter-processor interrupts, TLB shoot-downs emulated).

    .venv/bin/python -m bench.guest_cpus [--rounds 2] [--release trixie] [--variant podman]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testbed.guests import Guest
from testbed.images import build_image

# Work that a converge does a lot of, without the network: units reloaded, packages listed,
# podman's own start-up, files hashed, a Python start.
WORK = (
    "for i in 1 2 3; do sudo systemctl daemon-reload; done; "
    "dpkg-query -W >/dev/null; "
    "for i in 1 2 3; do sudo podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null; done; "
    "sudo find /usr/lib -type f -size -256k -print0 | sudo xargs -0 sha256sum >/dev/null; "
    "python3 -c 'import json, ssl, http.client, email.parser'"
)


def one(image, cpus: int, workdir: Path, name: str) -> tuple[float, float]:
    guest = Guest(name, image, workdir, cpus=cpus)
    started = time.monotonic()
    try:
        guest.start(log=lambda *_: None)
        booted = time.monotonic() - started
        started = time.monotonic()
        result = guest.run(WORK, timeout=1800)
        if result.returncode != 0:
            raise SystemExit(f"{name}: the work failed: {result.stderr[-2000:]}")
        return booted, time.monotonic() - started
    finally:
        guest.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--release", default="trixie")
    parser.add_argument("--variant", default="podman")
    parser.add_argument("--counts", default="1,2", help="the two vCPU counts compared")
    args = parser.parse_args()
    image = build_image(args.release, print, args.variant)
    counts = [int(c) for c in args.counts.split(",")]
    results: dict[int, list[tuple[float, float]]] = {c: [] for c in counts}
    with tempfile.TemporaryDirectory(prefix="bench-cpus-") as tmp:
        for round_ in range(args.rounds):
            order = counts if round_ % 2 == 0 else counts[::-1]
            with ThreadPoolExecutor(len(order)) as pool:
                futures = {
                    c: pool.submit(one, image, c, Path(tmp) / f"r{round_}", f"cpus{c}")
                    for c in order
                }
                for c, future in futures.items():
                    boot, work = future.result()
                    results[c].append((boot, work))
                    print(f"round {round_ + 1}: {c} vCPU: boot {boot:.1f} s, work {work:.1f} s")
    medians = {
        c: tuple(statistics.median(run[i] for run in results[c]) for i in (0, 1)) for c in counts
    }
    for c, (boot, work) in medians.items():
        runs = len(results[c])
        print(f"{c} vCPU: boot median {boot:.1f} s, work median {work:.1f} s ({runs} runs)")
    a, b = counts
    print(
        f"{a} vCPU / {b} vCPU: boot {medians[a][0] / medians[b][0]:.2f}, "
        f"work {medians[a][1] / medians[b][1]:.2f}"
    )

if __name__ == "__main__":
    main()
