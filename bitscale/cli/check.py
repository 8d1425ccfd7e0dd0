"""``bitscale check --baseline FILE``: the CI gate, comparing the store's scores with a baseline.

Reads the baseline's cells from the store (run the grid first with ``bitscale run``) and
compares each cell's mean score: a cell regresses when it is worse by more than SIGMA noise
standard deviations (the seed noise stored in the baseline; ``--threshold`` for a fixed one).
Prints a markdown summary (``--summary FILE`` also writes it, e.g. to $GITHUB_STEP_SUMMARY).

Exit status: 0 passed; 1 a regression, a failed cell (a failed seed fails its cell), no cell
compared at all (e.g. every cell missing), or a missing cell with --strict; 2 bad input
(missing or malformed baseline file, missing store, a threshold that is not a finite number).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bitscale.cli.common import add_store_option, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser(
        "check",
        help="fail when scores regress against a baseline (CI gate)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON from `bitscale baseline export`")
    add_store_option(p)
    p.add_argument("--experiment", metavar="NAME", help="only runs recorded by this experiment")
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="threshold in noise standard deviations (default: the baseline's, normally 3)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="DELTA",
        help="fixed threshold in metric units instead of the measured noise",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=0.0,
        metavar="DELTA",
        help="smallest threshold in metric units, for pipelines whose seeds agree exactly (default 0)",
    )
    p.add_argument("--strict", action="store_true", help="missing cells fail the check too")
    p.add_argument("--summary", metavar="FILE", help="also append the markdown summary to FILE")
    p.add_argument("--json", metavar="FILE", help="write every cell's comparison as JSON")
    p.add_argument("--max-rows", type=positive_int, default=50, help="rows per section of the summary (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitscale.harness.errors import BitscaleError
    from bitscale.leaderboard.baseline import read_baseline, shipped_artifacts
    from bitscale.leaderboard.gate import check
    from bitscale.leaderboard.gate_summary import summary_markdown
    from bitscale.leaderboard.results import load_results, open_store

    baseline = read_baseline(args.baseline)  # before the store: a bad baseline is the likelier mistake
    # A NaN threshold never regresses, a negative one always does: both are input errors.
    for flag, value, low in (
        ("--sigma", args.sigma, "positive"),
        ("--threshold", args.threshold, "zero or more"),
        ("--floor", args.floor, "zero or more"),
    ):
        if value is not None and not (math.isfinite(value) and (value > 0 if low == "positive" else value >= 0)):
            raise BitscaleError(f"{flag} must be a finite number, {low}; got {value}")
    results = load_results(open_store(args.store), baseline.metric, args.experiment)
    result = check(
        baseline, results, args.sigma, args.threshold, args.floor, args.strict, artifacts=shipped_artifacts()
    )
    text = summary_markdown(result, baseline, args.baseline, results.store_url, args.threshold, args.max_rows)
    print(text, end="")
    if args.summary:
        with open(args.summary, "a") as fh:
            fh.write(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
    return result.exit_code
