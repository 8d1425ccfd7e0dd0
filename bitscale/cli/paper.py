"""``bitscale paper import | show``: the paper's published Tables 2-5 as ``source=paper`` rows.

``import`` writes every published FID into the store (idempotent: running it again adds
nothing), with the paper's protocol (ImageNet 256x256, 50k samples, ADM evaluator). The
leaderboard then shows them beside measured rows, never in the same column or fit.
``show --table N`` prints a published table from the shipped data, no store needed.
"""

from __future__ import annotations

import argparse

from bitscale.cli.common import add_store_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "paper",
        help="import or show the paper's published results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    psub = p.add_subparsers(dest="paper_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="write the published Tables 2-5 into the store")
    add_store_option(imp)
    imp.set_defaults(func=run_import)
    show = psub.add_parser("show", help="print a published table (2, 3, 4 or 5) from the shipped data")
    show.add_argument(
        "--table", type=int, choices=(2, 3, 4, 5), action="append", help="which table (repeatable; default all)"
    )
    show.add_argument("--format", choices=("github", "latex", "plain", "csv", "json", "html"), default="github")
    show.set_defaults(func=run_show)


def run_import(args: argparse.Namespace) -> int:
    from bitscale.harness.store import ResultStore
    from bitscale.leaderboard.paper import import_paper

    store = ResultStore(args.store)
    added, present = import_paper(store)
    print(f"{added} published cells added to {store.url}, {present} already there")
    return 0


def published_tables(tables: list[int] | None = None):
    """Leaderboard tables of the published rows, built from an in-memory store."""
    from bitscale.harness.store import ResultStore
    from bitscale.leaderboard.paper import import_paper
    from bitscale.leaderboard.results import load_results
    from bitscale.leaderboard.table import build_tables

    store = ResultStore("sqlite://")  # in memory
    import_paper(store)
    results = load_results(store)
    out = build_tables(results.runs, "fid", protocols=results.protocols, prepared=results.runs)
    wanted = {f"paper Table {n}" for n in (tables or (2, 3, 4, 5))}
    return sorted((t for t in out if t.title_note in wanted), key=lambda t: t.title_note)


def run_show(args: argparse.Namespace) -> int:
    from bitscale.leaderboard.render import render

    print(render(published_tables(args.table), args.format), end="")
    return 0
