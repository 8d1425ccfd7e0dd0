"""``bitscale zoo train|list|verify|ship``: the tiny models bitscale ships and can train itself.

``train`` trains into the user's cache (the weights ``--zoo-weights trained`` uses); ``verify``
(``zoo_verify.py``) checks whether this machine's training reproduces the shipped files; ``ship``
(``zoo_ship.py``, for maintainers) makes the cached weights the shipped ones.
"""

from __future__ import annotations

import argparse

from bitscale.cli.common import positive_int
from bitscale.cli.zoo_ship import add_parser as add_ship_parser
from bitscale.cli.zoo_verify import add_parser as add_verify_parser

TRAIN_HELP = """\
Train the missing (or stale) tiny models, all of them or those named, in --jobs worker processes,
into your cache ($BITSCALE_CACHE or ~/.cache/bitscale). bitscale uses the weights it ships unless
told otherwise (`bitscale run --zoo-weights trained`, or BITSCALE_ZOO_WEIGHTS=trained).
A family's shared stage (VQ tokenizer, autoencoder) is trained before its sizes; the longest chains
of work start first. Each model is trained by one process on one thread from its own seed, so the
weights are the same for any --jobs. A failing model is reported with its traceback; the models
that need it are skipped, the others still train, and the exit code is 1. Workers show no
progress bars (one job, trained in this process, does): a line says when each model starts and ends."""


def add_parser(sub) -> None:
    p = sub.add_parser("zoo", help="train or list the tiny model zoo", description=__doc__)
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    tr = zsub.add_parser(
        "train", help="train missing tiny models (all, or FAMILY / FAMILY/SIZE)", description=TRAIN_HELP
    )
    tr.add_argument("names", nargs="*", metavar="NAME", help="e.g. var-tiny or var-tiny/d2 (default: all)")
    tr.add_argument("--force", action="store_true", help="retrain even when cached (shared stages only if stale)")
    tr.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes, one core each (default: the usable CPU cores); 1 trains here",
    )
    tr.add_argument("--no-progress", action="store_true", help="no training progress bars (as TQDM_DISABLE=1)")
    tr.set_defaults(func=train)
    ls = zsub.add_parser("list", help="list trainable families and sizes, shipped and cached weights")
    ls.set_defaults(func=list_zoo)
    add_verify_parser(zsub)
    add_ship_parser(zsub)


def train(args: argparse.Namespace) -> int:
    from bitscale.harness.artifacts import shipped
    from bitscale.harness.evaluation import digits_classifier
    from bitscale.zoo.pretrain import sizes_by_family, train_into_cache

    shipped.use_trained()  # this command fills the cache; the workers it starts inherit the setting
    code = train_into_cache(sizes_by_family(args.names), args.force, args.jobs, not args.no_progress)
    if not args.names:  # everything: the FID feature extractor too (seconds)
        digits_classifier.train_classifier(force=args.force)
    print("bitscale uses the shipped weights unless run with --zoo-weights trained")
    return code


def list_zoo(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bitscale.harness.artifacts import cache, shipped
    from bitscale.zoo.pretrain import targets

    rows = []
    catalog = shipped.catalog()
    for family, size in targets([]):
        opts = family.Options()
        names = family.artifacts(size, opts)
        with shipped.using("trained"):
            cached = bool(names) and all(cache.load_manifest(n) is not None and cache.has_weights(n) for n in names)
        rows.append(
            [
                family.name,
                size,
                f"{family.num_params(size, opts):,}",
                "yes" if names and all(n in catalog for n in names) else "no",
                "yes" if cached else "no",
            ]
        )
    print(tabulate(rows, headers=["family", "size", "params", "shipped", f"trained in {cache.cache_dir()}"]))
    return 0
