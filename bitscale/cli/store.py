"""``bitscale store prune [--yes]``: delete the stored runs that newer runs of the same cell superseded.

A run is superseded when a newer run of the same (family, size, method and option variant,
precision, protocol, seed) exists: the leaderboard already shows only the newest, so pruning
changes no table. Typical source: cells computed again after a plugin upgrade, a re-shipped
tiny zoo, ``bitscale run --force``, or failed attempts replaced by a later success. Without
``--yes`` nothing is deleted (a dry run lists what would be); with it every listed run and its
metrics go in ONE transaction, so an interrupted prune deletes nothing.
"""

from __future__ import annotations

import argparse

from bitscale.cli.common import add_store_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "store",
        help="maintain the results store (prune superseded runs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    pr = ssub.add_parser(
        "prune",
        help="delete runs that newer runs of the same cell superseded (dry run by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_option(pr)
    pr.add_argument("--yes", action="store_true", help="delete them (default: only list what would be deleted)")
    pr.set_defaults(func=prune)


def prune(args: argparse.Namespace) -> int:
    from bitscale.harness.store.result_store import ResultStore
    from bitscale.leaderboard.results import superseded

    store = ResultStore.open_existing(args.store)
    try:
        old = superseded(store.frame(), store.protocols())
        if old.empty:
            print(f"nothing to prune in {store.url}: no stored run is superseded")
            return 0
        for _, r in old.sort_values(["family", "size", "method", "precision", "seed"]).iterrows():
            loss = f"+{r['loss']}" if isinstance(r["loss"], str) and r["loss"] else ""
            print(
                f"  {r['cell_hash']}  {r['family']}/{r['size']} {r['precision']} {r['method']}{loss} "
                f"seed={r['seed']} {r['status']} finished {r['finished_at']}"
            )
        if not args.yes:
            print(f"{len(old)} superseded run(s) in {store.url} would be deleted; rerun with --yes to delete them")
            return 0
        deleted = store.delete_runs(int(i) for i in old["id"])
        print(f"deleted {deleted} superseded run(s) from {store.url}")
        return 0
    finally:
        store.dispose()
