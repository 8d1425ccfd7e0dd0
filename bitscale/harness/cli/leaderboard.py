"""``bitscale leaderboard``: render the stored results as the paper's Table-2 layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from bitscale.harness.cli.common import add_store_option
from bitscale.harness.errors import BitscaleError
from bitscale.harness.plugins import get_plugins
from bitscale.harness.store import ResultStore
from bitscale.leaderboard.render import FORMATS, render
from bitscale.leaderboard.table import build_tables


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="render the leaderboard from the store", description=__doc__)
    add_store_option(p)
    p.add_argument("--format", choices=FORMATS, default="github")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--metric", default="fid", help="metric to tabulate (fid, isc, kid; default fid)")
    p.add_argument("--family", action="append", help="only this model family (repeatable)")
    p.add_argument("--deltas", action="store_true", help="show each cell's difference to W16A16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url = args.store
    if "://" not in url and not Path(url).exists() or url.startswith("sqlite:///") and not Path(url[10:]).exists():
        raise BitscaleError(f"store {url} does not exist; run `bitscale run` first or pass --store")
    store = ResultStore(url)
    plugins = get_plugins()
    sizes = {e.name: list(e.obj.sizes) for e in plugins.models}
    frame = store.frame()
    if args.metric not in frame.columns and not frame.empty:
        known = sorted(set(frame.columns) & {"fid", "isc", "kid"})
        raise BitscaleError(f"no metric {args.metric!r} in {store.url}; stored metrics: {', '.join(known)}")
    text = render(build_tables(frame, args.metric, sizes, args.family), args.format, args.deltas)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
