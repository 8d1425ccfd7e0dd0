"""``bitscale plot --out DIR``: scaling-law plots (PNG and SVG) like the paper's Fig. 1.

Writes, per family (published rows in their own files):
  scaling-FAMILY-mt.*        FID vs total model bits (and -ct: vs total compute bits), log-log,
                             one panel per method, one line per precision, W16A16 in black,
                             fitted power laws dashed
  methods-FAMILY-PRECISION.* the methods compared at one precision (--precision, default:
                             the precision most methods ran at; --precision all for every one)
  pareto-FAMILY.*            every cell against MT and CT, with the Pareto front
"""

from __future__ import annotations

import argparse

from bitscale.cli.common import add_store_option
from bitscale.cli.leaderboard import add_filter_options, load


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="write scaling-law plots (PNG, SVG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the image files (created if needed)")
    add_store_option(p)
    add_filter_options(p)
    p.add_argument(
        "--image-format", action="append", choices=("png", "svg"), dest="formats", help="png and/or svg (default both)"
    )
    p.add_argument(
        "--precision",
        action="append",
        metavar="PRECISION",
        help="precision of the method comparison (repeatable, or 'all')",
    )
    p.add_argument(
        "--kind",
        action="append",
        choices=("scaling", "methods", "pareto"),
        help="only these kinds of plot (default all)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap resamples for the fitted lines (default 200; lines need only the fit)",
    )
    p.add_argument("--jobs", type=int, default=None, help="drawing processes (default: available CPUs, max 4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitscale.leaderboard.fit import fit_axes
    from bitscale.leaderboard.plots import PlotSet, write_plots
    from bitscale.precision import Precision

    precisions = None
    if args.precision:
        precisions = [p if p == "all" else Precision.parse(p).label for p in args.precision]
    results = load(args)
    fits = fit_axes(results.runs, ("mt", "ct"), args.effective, args.bootstrap)
    plot_set = PlotSet(results.runs, fits, args.effective, results.metric)
    files = write_plots(
        plot_set,
        args.out,
        tuple(args.formats or ("png", "svg")),
        precisions,
        tuple(args.kind or ("scaling", "methods", "pareto")),
        args.jobs,
    )
    if not files:
        print("no plots: the store has no finished runs with at least two model sizes per line")
        return 0
    for f in files:
        print(f)
    print(f"wrote {len(files)} files to {args.out}")
    return 0
