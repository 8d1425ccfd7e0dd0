"""``bitscale zoo train [NAMES]`` and ``bitscale zoo list``: the tiny models bitscale trains itself."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from bitscale.harness.cli.common import positive_int
from bitscale.harness.errors import BitscaleError
from bitscale.harness.plugins import get_plugins

TRAIN_HELP = """\
Train the missing (or stale) tiny models, all of them or those named, in --jobs worker processes.
A family's shared stage (VQ tokenizer, autoencoder) is trained before its sizes; the longest chains
of work start first. Each model is trained by one process on one thread from its own seed, so the
weights are the same for any --jobs. A failing model is reported with its traceback; the models
that need it are skipped, the others still train, and the exit code is 1. Workers show no
progress bars (one job, trained in this process, does): a line says when each model starts and ends."""


def add_parser(sub) -> None:
    p = sub.add_parser("zoo", help="train or list the tiny model zoo", description=__doc__)
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    tr = zsub.add_parser("train", help="train missing tiny models (all, or FAMILY / FAMILY/SIZE)",
                         description=TRAIN_HELP)
    tr.add_argument("names", nargs="*", metavar="NAME", help="e.g. var-tiny or var-tiny/d2 (default: all)")
    tr.add_argument("--force", action="store_true", help="retrain even when cached (shared stages only if stale)")
    tr.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N",
                    help="worker processes, one core each (default: the usable CPU cores); 1 trains here")
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
    from bitscale.zoo.parallel import TrainingFailed, train_units, usable_cores
    from bitscale.zoo.units import units_for

    sizes: dict[object, list[str]] = {}  # family -> sizes asked for, in order, once each
    for family, size in _targets(args.names):
        if size not in sizes.setdefault(family, []):
            sizes[family].append(size)
    units = [u for family, s in sizes.items() for u in units_for(family, s, family.Options(), args.force)]
    if not units:
        print("every tiny model asked for is trained and fresh")
        return 0
    jobs = args.jobs or usable_cores()
    print(f"training {len(units)} artifact(s) in {min(jobs, len(units))} process(es)", flush=True)
    try:
        train_units(units, jobs, progress=not args.no_progress, log=lambda line: print(line, flush=True))
    except TrainingFailed as exc:
        print(f"bitscale: error: training failed: {exc}", file=sys.stderr)
        return 1
    return 0


def list_zoo(args: argparse.Namespace) -> int:
    rows = []
    for family, size in _targets([]):
        rows.append([family.name, size, f"{family.num_params(size, family.Options()):,}"])
    print(tabulate(rows, headers=["family", "size", "params"]))
    return 0
