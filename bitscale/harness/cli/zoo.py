"""``bitscale zoo train [NAMES]`` and ``bitscale zoo list``: the tiny models bitscale trains itself."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from bitscale.harness.errors import BitscaleError
from bitscale.harness.plugins import get_plugins
from bitscale.zoo.progress import progress_bars


def add_parser(sub) -> None:
    p = sub.add_parser("zoo", help="train or list the tiny model zoo", description=__doc__)
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    tr = zsub.add_parser("train", help="train missing tiny models (all, or FAMILY / FAMILY/SIZE)")
    tr.add_argument("names", nargs="*", metavar="NAME", help="e.g. var-tiny or var-tiny/d2 (default: all)")
    tr.add_argument("--force", action="store_true", help="retrain even when cached")
    tr.add_argument("--no-progress", action="store_true", help="no training progress bars (as TQDM_DISABLE=1)")
    tr.set_defaults(func=train)
    ls = zsub.add_parser("list", help="list trainable families and sizes")
    ls.set_defaults(func=list_zoo)


def _targets(names: list[str]) -> list[tuple[object, str]]:
    ps = get_plugins()
    trainable = [e.obj for e in ps.models if getattr(e.obj, "trainable", False)]
    if not names:
        return [(f, s) for f in trainable for s in f.sizes]
    out = []
    for name in names:
        fam_name, _, size = name.partition("/")
        family = ps.models.get(fam_name)
        if not family.trainable:
            raise BitscaleError(f"{fam_name} loads released checkpoints; only tiny-zoo families can be trained")
        if size and size not in family.sizes:
            raise BitscaleError(f"{fam_name} has no size {size!r}; choose from {', '.join(family.sizes)}")
        out += [(family, s) for s in ([size] if size else family.sizes)]
    return out


def train(args: argparse.Namespace) -> int:
    with progress_bars(not args.no_progress):
        for family, size in _targets(args.names):
            manifest = family.train(size, family.Options(), force=args.force)
            print(f"{family.name}/{size}: final loss {manifest.get('final_loss', float('nan')):.4f} "
                  f"({manifest.get('seconds', 0):.1f} s)")
    return 0


def list_zoo(args: argparse.Namespace) -> int:
    rows = []
    for family, size in _targets([]):
        rows.append([family.name, size, f"{family.num_params(size, family.Options()):,}"])
    print(tabulate(rows, headers=["family", "size", "params"]))
    return 0
