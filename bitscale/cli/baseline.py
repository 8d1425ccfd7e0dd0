"""``bitscale baseline export --out FILE``: freeze the current results as the CI gate's baseline.

The file holds, per cell (family, size, method, precision, protocol), the score of every
seed, their mean, and the seed-to-seed noise measured on the grid's multi-seed cells
(pooled per family and precision). Run the grid with at least two seeds, e.g.::

    bitscale run baselines/ci-tiny.yaml --store /tmp/base.db
    bitscale baseline export --store /tmp/base.db --out baselines/ci-tiny.json
"""

from __future__ import annotations

import argparse
import math
import sys

from bitscale.cli.common import add_store_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baseline",
        help="export a baseline file for `bitscale check`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    ex = bsub.add_parser("export", help="write the store's current results to a baseline JSON file")
    ex.add_argument("--out", required=True, metavar="FILE", help="baseline file to write")
    add_store_option(ex)
    ex.add_argument("--experiment", metavar="NAME", help="only runs recorded by this experiment")
    ex.add_argument("--family", action="append", metavar="NAME", help="only this family (repeatable)")
    ex.add_argument("--metric", default="fid", help="metric to gate (default fid)")
    ex.add_argument(
        "--sigma",
        type=float,
        default=3.0,
        help="default threshold in noise standard deviations stored in the file (default 3)",
    )
    ex.add_argument(
        "--noise-rel-std",
        type=float,
        metavar="R",
        help="use this relative seed noise (e.g. 0.02) instead of measuring it: only for grids run with a single seed",
    )
    ex.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from bitscale.harness.errors import BitscaleError
    from bitscale.leaderboard.baseline import export_baseline, write_baseline
    from bitscale.leaderboard.report import filter_results
    from bitscale.leaderboard.results import load_results, open_store

    if not (math.isfinite(args.sigma) and args.sigma > 0):
        raise BitscaleError(f"--sigma must be a finite number, positive; got {args.sigma}")
    if args.noise_rel_std is not None and not (math.isfinite(args.noise_rel_std) and args.noise_rel_std >= 0):
        raise BitscaleError(f"--noise-rel-std must be a finite number, zero or more; got {args.noise_rel_std}")
    results = filter_results(load_results(open_store(args.store), args.metric, args.experiment), args.family)
    baseline = export_baseline(results, args.experiment, args.sigma, args.noise_rel_std)
    write_baseline(baseline, args.out)
    if baseline.failed:
        # Known failures are reported by `bitscale check` but do not fail it: say so now.
        print(
            f"bitscale: warning: {len(baseline.failed)} cell(s) had failed and are recorded as known failures "
            f"(e.g. {baseline.failed[0]}); the gate will not fail on them. Fix them and export again if "
            "they should pass.",
            file=sys.stderr,
        )
    pools = {c.noise.pool for c in baseline.cells}
    print(
        f"wrote {args.out}: {len(baseline.cells)} cells, {sum(len(c.values) for c in baseline.cells)} runs, "
        f"{len(pools)} noise pool{'s' * (len(pools) != 1)}"
        + (f", {len(baseline.failed)} failed cells listed" if baseline.failed else "")
    )
    return 0
