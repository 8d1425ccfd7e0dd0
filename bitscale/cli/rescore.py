"""``bitscale rescore``: score the samples kept by ``bitscale run --keep-samples`` again, without sampling.

With no ``--extractor`` each run is scored under its own protocol (reproducing its stored FID);
with one, under that torch-fidelity feature extractor instead (e.g. ``inception-v3-compat``).
Prints one row per run: stored FID, rescored metrics, the new protocol's fingerprint.

With ``--blocks N`` it measures instead how precise an N-sample FID is: each run's samples are cut
into disjoint N-sample blocks, and each cell (over its seeds) gets the mean and the relative
standard deviation of its block FIDs (docs/design.md, "Measurement protocol").
"""

from __future__ import annotations

import argparse
import json

from bitscale.cli.common import add_store_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rescore",
        help="score kept samples again, under their own or another protocol",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_option(p)
    p.add_argument("--experiment", metavar="NAME", help="only runs recorded by this experiment")
    p.add_argument("--cell", action="append", metavar="HASH", help="only this cell (a hash prefix); repeatable")
    p.add_argument("--extractor", metavar="NAME", help="torch-fidelity feature extractor (default: the run's own)")
    p.add_argument(
        "--blocks",
        type=int,
        metavar="N",
        help="score disjoint N-sample blocks of each run and print each cell's seed spread",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bitscale.harness.rescore import rescore_runs
    from bitscale.leaderboard.results import open_store

    store = open_store(args.store)  # a read command: never creates a store or a schema
    if args.blocks is not None:
        return _blocks(store, args)
    results = rescore_runs(store, cells=args.cell, experiment=args.experiment, extractor=args.extractor)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2, default=str))
        return 0
    names = sorted({k for r in results for k in r.metrics})
    rows = [
        [r.cell_hash[:12], r.label, r.stored.get("fid"), *(r.metrics.get(k) for k in names), r.fingerprint]
        for r in results
    ]
    print(tabulate(rows, headers=["cell", "run", "stored fid", *names, "protocol"], floatfmt=".4f"))
    return 0


def _blocks(store, args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bitscale.harness.rescore import block_spread

    spreads = block_spread(store, args.blocks, cells=args.cell, experiment=args.experiment, extractor=args.extractor)
    if args.json:
        print(json.dumps([{**s.__dict__, "mean": s.mean, "relative_sd": s.relative_sd} for s in spreads], indent=2))
        return 0
    rows = [
        [
            s.label,
            ",".join(map(str, sorted(s.seeds))),
            len(s.fids),
            s.mean,
            100 * s.relative_sd,
            min(s.fids),
            max(s.fids),
        ]
        for s in spreads
    ]
    print(
        tabulate(
            rows,
            headers=["cell", "seeds", "blocks", f"mean fid ({args.blocks})", "sd/mean %", "min", "max"],
            floatfmt=".2f",
        )
    )
    return 0
