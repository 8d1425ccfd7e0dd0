"""Wall time of training the whole tiny zoo from scratch, serially and in parallel.

    python benchmarks/bench_zoo_training.py [--jobs 2] [--serial] [--steps N]

Each run trains every trainable family into its own fresh temporary cache, as
``bitscale zoo train --jobs N`` does (same planning and scheduling; the command's own start-up,
about the import of torch, is not counted). Reported: the wall time of each run, and per
artifact the CPU seconds its manifest records (its training loop alone, one thread), which add
up to the single-thread work the cores share. ``--serial`` adds a ``--jobs 1`` run (slow: the sum
of all the work) and checks that both runs trained byte-identical weights. ``--steps N`` trains
every network N steps instead of the zoo's own, to try the benchmark in seconds; its timings say
nothing about the real zoo.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

from tabulate import tabulate

from bitscale.harness.artifacts import cache
from bitscale.harness.plugin_loader import get_plugins
from bitscale.zoo.parallel import train_units, usable_cores
from bitscale.zoo.units import units_for

#: The training-step options of each built-in family (``--steps`` sets them all).
STEP_OPTIONS = {
    "var-tiny": ("steps", "vae_steps"),
    "llamagen-tiny": ("steps", "tokenizer_steps"),
    "dit-tiny": ("steps", "vae_steps"),
}


def train_zoo(jobs: int, steps: int | None) -> tuple[float, dict[str, dict], dict[str, str]]:
    """(wall seconds, {artifact: manifest}, {artifact: weights sha256}) of a zoo trained in a fresh cache."""
    with tempfile.TemporaryDirectory(prefix="bitscale-zoo-bench-") as root:
        os.environ["BITSCALE_CACHE"] = root  # read by this process and inherited by the workers
        os.environ["BITSCALE_ZOO_WEIGHTS"] = "trained"  # train from scratch, not the shipped copies
        units = []
        for entry in get_plugins().models:
            family = entry.obj
            if getattr(family, "trainable", False):
                overrides = {k: steps for k in STEP_OPTIONS.get(family.name, ())} if steps else {}
                units += units_for(family, family.sizes, family.Options(**overrides))
        start = time.perf_counter()
        manifests = train_units(units, jobs, progress=False, log=lambda line: print(f"  [jobs {jobs}] {line}"))
        wall = time.perf_counter() - start
        hashes = {a: hashlib.sha256(cache.artifact_paths(a)[0].read_bytes()).hexdigest() for a in manifests}
    return wall, manifests, hashes


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel run (default 2)")
    p.add_argument("--serial", action="store_true", help="also train with --jobs 1 (slow) and compare the weights")
    p.add_argument("--steps", type=int, default=None, help="train every network N steps (a quick try, not the zoo)")
    args = p.parse_args(argv)
    saved = os.environ.get("BITSCALE_CACHE")
    try:
        runs = {jobs: train_zoo(jobs, args.steps) for jobs in ([1] if args.serial else []) + [args.jobs]}
    finally:  # the caller's cache again (it was never written to)
        if saved is None:
            os.environ.pop("BITSCALE_CACHE", None)
        else:
            os.environ["BITSCALE_CACHE"] = saved

    artifacts = list(runs[args.jobs][1])
    headers = ["artifact"] + [f"CPU s (jobs {j})" for j in runs]
    rows = [[a] + [f"{m[a].get('cpu_seconds', 0):.1f}" for _, m, _ in runs.values()] for a in artifacts]
    rows.append(
        ["total CPU s"] + [f"{sum(x.get('cpu_seconds', 0) for x in m.values()):.1f}" for _, m, _ in runs.values()]
    )
    rows.append(["wall s"] + [f"{wall:.1f}" for wall, _, _ in runs.values()])
    print(tabulate(rows, headers=headers, tablefmt="github"))
    print(
        f"\nsteps: {args.steps or 'the zoo defaults'}; usable cores: {usable_cores()}; "
        f"load average at the end: {os.getloadavg()[0]:.2f}"
    )
    if args.serial:
        same = runs[1][2] == runs[args.jobs][2]
        print(f"weights identical with --jobs 1 and --jobs {args.jobs}: {'yes' if same else 'NO'}")


if __name__ == "__main__":  # the workers are spawned: they import this file and must not run it
    main()
