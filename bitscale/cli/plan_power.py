"""``bitscale plan-power``: how many seeds x samples resolve a given ΔFID, from a pilot run in the store.

The pilot: quantized cells with paired metrics (protocol 3) and at least 2 seeds, e.g. the quick
grid with ``seeds: [0, 1]``. Examples::

    bitscale plan-power --delta 0.5                      # resolve ΔFID = 0.5 FID at 95% / power 0.8
    bitscale plan-power --relative 0.02 --samples 500,1000,2000 --family var-tiny
"""

from __future__ import annotations

import argparse
import math
import sys

from bitscale.cli.common import add_store_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan-power",
        help="seeds x samples needed to resolve a ΔFID, from a pilot run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_option(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--delta", metavar="FID", help="the ΔFID to resolve, in FID points")
    what.add_argument("--relative", metavar="FRACTION", help="the ΔFID to resolve as a fraction of the family's FP FID")
    p.add_argument("--confidence", default="0.95", metavar="P", help="two-sided confidence level (default 0.95)")
    p.add_argument("--power", default="0.8", metavar="P", help="probability of resolving it (default 0.8)")
    p.add_argument("--samples", metavar="N,N,...", help="sample counts to plan for (default: 1, 2 and 4 x the pilot's)")
    p.add_argument("--family", action="append", metavar="NAME", help="only this model family (repeatable)")
    p.add_argument("--experiment", metavar="NAME", help="only runs recorded by this experiment")
    p.add_argument("--format", choices=("plain", "github", "csv", "json"), default="plain")
    p.set_defaults(func=run)


def _number(text: str, flag: str, low: float, high: float, closed_low: bool = False) -> float:
    from bitscale.harness.errors import BitscaleError

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value >= low if closed_low else value > low) and value < high
    if not ok:
        bound = f"{'>=' if closed_low else '>'} {low:g}" + (f" and < {high:g}" if math.isfinite(high) else "")
        raise BitscaleError(f"{flag} {text!r}: expected a number {bound}")
    return value


def _counts(text: str | None) -> list[int] | None:
    from bitscale.harness.errors import BitscaleError

    if text is None:
        return None
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise BitscaleError(f"--samples {text!r}: expected comma-separated whole numbers >= 1, e.g. 500,1000")
    return counts


def run(args: argparse.Namespace) -> int:
    from bitscale.cli.leaderboard import _frame_text
    from bitscale.harness.errors import BitscaleError
    from bitscale.leaderboard.power import pilot_variances, plan
    from bitscale.leaderboard.report import filter_results
    from bitscale.leaderboard.results import load_results, open_store

    delta = _number(args.delta, "--delta", 0, math.inf) if args.delta is not None else None
    relative = _number(args.relative, "--relative", 0, math.inf) if args.relative is not None else None
    confidence = _number(args.confidence, "--confidence", 0, 1)
    power = _number(args.power, "--power", 0, 1, closed_low=True)
    counts = _counts(args.samples)
    store = open_store(args.store)
    results = filter_results(load_results(store, "fid", args.experiment), args.family, ["measured"])
    pilot = pilot_variances(results.runs, results.protocols)
    if pilot.empty:
        raise BitscaleError(
            f"{store.url}: no pilot: plan-power needs quantized cells with paired metrics "
            "(bitscale >= protocol 3) and at least 2 seeds; run a small grid with seeds: [0, 1] first"
        )
    if relative is not None and pilot["fp_fid"].isna().all():
        raise BitscaleError(
            f"{store.url}: --relative needs W16A16 cells with at least 2 seeds in the pilot; use --delta or add them"
        )
    table = plan(pilot, delta, relative, confidence, power, counts)
    what = f"ΔFID {delta:g}" if delta is not None else f"ΔFID {relative:g} x FP FID"
    sys.stdout.write(
        _frame_text(
            table, args.format, f"Seeds x samples to resolve {what} (confidence {confidence:g}, power {power:g})"
        )
    )
    return 0
