"""``bitscale leaderboard``: the stored results as the paper's Table-2 layout, budgets, fits, or one HTML page.

Examples::

    bitscale leaderboard                                  # Table-2 tables, GitHub markdown
    bitscale leaderboard --format latex --deltas          # LaTeX, each cell's change vs W16A16
    bitscale leaderboard --deltas rtn                     # ... or vs the rtn row of each block
    bitscale leaderboard --budget model_bits=2e7          # best (size, precision) per method
    bitscale leaderboard --budget compute_bits=1e9 --effective
    bitscale leaderboard --pareto mt --fits               # Pareto front, scaling-law fits
    bitscale leaderboard --fig1 --experiment fig1-language-vs-diffusion   # the paper's Fig. 1 readings
    bitscale leaderboard --format html --out page.html    # everything on one static page
    bitscale leaderboard --paired                         # ΔFID vs W16A16 per cell, with its 95% CI
    bitscale leaderboard --paired rtn                     # ... or vs rtn's cell, seed by seed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitscale.cli.common import add_store_option

FORMATS = ("github", "latex", "plain", "csv", "json", "html")


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """--family / --source / --experiment / --metric, shared with ``bitscale plot``."""
    p.add_argument(
        "--metric", default="fid", help="metric to show (fid, isc; kid only in stores of older versions; default fid)"
    )
    p.add_argument("--family", action="append", metavar="NAME", help="only this model family (repeatable)")
    p.add_argument(
        "--source",
        action="append",
        choices=("measured", "paper"),
        help="only measured or only published rows (default: both, never mixed)",
    )
    p.add_argument("--experiment", metavar="NAME", help="only runs recorded by this experiment")
    p.add_argument(
        "--effective",
        action="store_true",
        help="count effective bits (scales, zero-points, codebooks) instead of nominal ones",
    )


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="render the leaderboard from the store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_option(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="github",
        help="github, latex, plain, csv, json, or html (the full page; default github)",
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    add_filter_options(p)
    p.add_argument(
        "--deltas",
        nargs="?",
        const=True,
        default=False,
        metavar="METHOD",
        help="show each cell's difference to W16A16, or to METHOD's row of the same precision",
    )
    p.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="LIMITS",
        help="model_bits=X and/or compute_bits=Y (comma-separated): best (size, precision) per "
        "method within it, and the fitted optimal precision; repeat for several budgets",
    )
    p.add_argument(
        "--pareto",
        action="append",
        choices=("mt", "ct"),
        default=[],
        help="print the Pareto front of FID against total model (mt) or compute (ct) bits",
    )
    p.add_argument("--fits", action="store_true", help="print the scaling-law fits and down-left shifts")
    p.add_argument(
        "--paired",
        nargs="?",
        const=True,
        default=False,
        metavar="METHOD",
        help="print each quantized cell's ΔFID vs its W16A16 twin (same seeds and noise) with its 95%% CI "
        "and distance to full precision; cells whose CI contains 0 say 'CI overlaps FP'. With METHOD "
        "(rtn, qat+mse, ...): each cell minus METHOD's cell of the same precision, seed by seed",
    )
    p.add_argument(
        "--fig1",
        action="store_true",
        help="the paper's Fig. 1 per family: below-left of W16A16 at equal MT/CT (with CIs) beside the "
        "change at equal size, and the best precision within each budget (default: each W16A16 "
        "model's MT)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the fits' confidence intervals (default 1000)",
    )
    p.add_argument("--jobs", type=int, default=None, help="processes drawing the HTML page's plots")
    p.add_argument(
        "--analyses",
        metavar="DIR",
        help="stored `bitscale analyze` results for the HTML page (default: analyses/ beside a SQLite store)",
    )
    p.set_defaults(func=run)


def load(args: argparse.Namespace):
    """The filtered results of ``args.store`` (shared with ``bitscale plot``)."""
    from bitscale.harness.errors import BitscaleError
    from bitscale.leaderboard.report import filter_results
    from bitscale.leaderboard.results import load_results, open_store

    store = open_store(args.store)
    results = load_results(store, args.metric, args.experiment)
    frame_cols = set(results.runs.columns)
    if not results.runs.empty and results.runs["value"].isna().all() and args.metric not in frame_cols:
        known = sorted(frame_cols & {"fid", "isc", "kid"})
        raise BitscaleError(f"no metric {args.metric!r} in {store.url}; stored metrics: {', '.join(known) or 'none'}")
    return filter_results(results, args.family, args.source)


def _frame_text(df, fmt: str, title: str) -> str:
    from bitscale.leaderboard.render import render_frame

    return render_frame(df, fmt, title)


def _extra_sections(args: argparse.Namespace, report) -> list[str]:
    out = []
    for ans in report.budgets:
        out.append(_frame_text(ans.best, args.format, f"Best (size, precision) per method within {ans.budget.label}"))
        for opt in ans.optimal:
            out.append(_frame_text(opt, args.format, "Optimal precision at the budget, from the fitted curves"))
    for axis in args.pareto:
        key = f"{axis}_eff" if args.effective else axis
        out.append(_frame_text(report.fronts[key], args.format, f"Pareto front: FID vs {key}"))
    if report.fig1 is not None:
        out.append(
            _frame_text(
                report.fig1,
                args.format,
                "Fig. 1: quantized vs W16A16 at equal total bits "
                "(fitted-curve shift, 95% CI) and at equal size "
                "(change vs the same model in W16A16, 95% CI)",
            )
        )
        out.append(
            _frame_text(
                report.fig1_budgets,
                args.format,
                "Fig. 1: best measured cell within each budget "
                "(method or W16A16; resolved = its CI clears "
                "the runner-up's)",
            )
        )
    if args.fits:
        from bitscale.leaderboard.fit import fits_frame

        for axis, fits in report.fits.items():
            out.append(_frame_text(fits_frame(fits), args.format, f"Power-law fits FID = k·bits^-alpha, bits = {axis}"))
        out.append(_frame_text(report.bivariate, args.format, "Bivariate fits FID = k·N^-a·P^-c"))
        out.append(
            _frame_text(report.shifts, args.format, "Shift vs the W16A16 curve at equal bits (negative = down-left)")
        )
    if args.paired:
        from bitscale.leaderboard.paired import paired_table

        against = None if args.paired is True else args.paired
        title = (
            "Paired ΔFID vs W16A16 (same seeds and noise; 95% CI over samples and seeds)"
            if against is None
            else f"Paired ΔFID vs {against} at the same precision (same seeds and noise; conservative 95% CI)"
        )
        out.append(_frame_text(paired_table(report.results.runs, against=against), args.format, title))
    return out


def _analyses(args: argparse.Namespace) -> str | None:
    """The page's analyses section from ``--analyses`` or the folder beside a SQLite store (None: none stored)."""
    from bitscale.analysis.store import analyses_root
    from bitscale.harness.errors import BitscaleError
    from bitscale.leaderboard.analyses_section import analyses_html

    try:
        root = analyses_root(args.store, args.analyses)
    except BitscaleError:  # a server store without --analyses: no analyses to show
        return None
    return analyses_html(root)


def run(args: argparse.Namespace) -> int:
    from bitscale.leaderboard.budget import Budget
    from bitscale.leaderboard.render import render
    from bitscale.leaderboard.report import build_report

    budgets = [Budget.parse(b) for b in args.budget]
    results = load(args)
    report = build_report(
        results,
        budgets=budgets,
        effective=args.effective,
        n_boot=args.bootstrap,
        fig1=args.fig1 or args.format == "html",
    )
    for flag, method in (("--deltas", args.deltas), ("--paired", args.paired)):
        if method not in (True, False) and results.runs["method_label"].ne(method).all():
            print(
                f"bitscale: warning: {flag}: no method {method!r} in the store; its rows will be empty", file=sys.stderr
            )
    if args.format == "html":
        from bitscale.leaderboard.page import render_page
        from bitscale.leaderboard.plots import PlotSet, render_plots

        plot_set = PlotSet(results.runs, report.fits, args.effective, results.metric)
        plots = render_plots(plot_set, ("png",), jobs=args.jobs)
        text = render_page(report, [(p, enc["png"]) for p, enc in plots], args.deltas, analyses=_analyses(args))
    else:
        text = render(report.tables, args.format, args.deltas)
        extra = _extra_sections(args, report)
        if extra:
            text = "\n".join([text, *extra])
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0
