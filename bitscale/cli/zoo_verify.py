"""``bitscale zoo verify [NAMES]``: does training here reproduce the shipped tiny-zoo weights?

Trains fresh copies of the shipped artifacts (all, or those of the named families/sizes) into a
temporary cache, on one thread each as always, and compares their sha256 with the shipped files.
Where they differ (another CPU or torch version reduces floats in another order), it measures
what that costs: the FID of the shipped and of the trained-here model, sampled with the same
seed and scored under the same protocol (the shipped feature extractor); for the feature
extractor itself, both test accuracies. The exit code is 0 either way: this is a report.
"""

from __future__ import annotations

import argparse
import tempfile

from bitscale.cli.common import positive_int
from bitscale.harness.artifacts import shipped
from bitscale.harness.errors import BitscaleError

VERIFY_HELP = __doc__.split("\n\n", 1)[1]


def add_parser(zsub) -> None:
    p = zsub.add_parser(
        "verify", help="retrain the shipped tiny zoo here and compare (bit for bit, else FID)", description=VERIFY_HELP
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="FAMILY, FAMILY/SIZE or 'classifier' (default: everything shipped)"
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=None,
        metavar="N",
        help="training worker processes (default: the usable cores)",
    )
    p.add_argument("--samples", type=positive_int, default=500, help="samples per FID (default 500)")
    p.set_defaults(func=verify)


def verify(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bitscale.harness.artifacts import cache
    from bitscale.harness.evaluation import digits_classifier
    from bitscale.zoo.pretrain import shipped_artifacts, sizes_by_family, train_into_cache

    catalog = shipped.catalog()
    if not catalog:
        raise BitscaleError(f"{shipped.CATALOG}: no shipped weights in this installation; nothing to verify")
    classifier = not args.names or "classifier" in args.names
    sizes = sizes_by_family([n for n in args.names if n != "classifier"] if args.names else [])
    if args.names and all(n == "classifier" for n in args.names):
        sizes = {}
    names = [n for n in shipped_artifacts(sizes) if classifier or n != digits_classifier.ARTIFACT]
    not_shipped = [n for n in names if n not in catalog]
    if not_shipped:  # e.g. a third-party family's artifacts: nothing shipped to compare with
        print(f"not shipped, not verified: {', '.join(not_shipped)}")
        names = [n for n in names if n in catalog]
    with tempfile.TemporaryDirectory(prefix="bitscale-verify-") as tmp:
        with shipped.using("trained", tmp):
            if train_into_cache(sizes, force=False, jobs=args.jobs, progress=False):
                return 1
            trained = {n: cache.weights_sha256(n) for n in names if n != digits_classifier.ARTIFACT}
            if classifier:
                digits_classifier.train_classifier()
                trained[digits_classifier.ARTIFACT] = cache.weights_sha256(digits_classifier.ARTIFACT)
        rows = [
            [
                n,
                catalog[n]["sha256"][:12],
                trained[n][:12],
                "identical" if trained[n] == catalog[n]["sha256"] else "differs",
            ]
            for n in names
        ]
        print(tabulate(rows, headers=["artifact", "shipped sha256", "trained here", "bit for bit"]))
        differ = {n for n in names if trained[n] != catalog[n]["sha256"]}
        if not differ:
            print(f"\nall {len(names)} artifacts reproduced bit for bit on this machine")
            return 0
        print(
            f"\n{len(differ)} of {len(names)} artifacts differ; what that does to FID "
            f"({args.samples} samples, seed 0, the shipped feature extractor):"
        )
        print(tabulate(_consequences(sizes, differ, tmp, args.samples), headers=["model", "shipped", "trained here"]))
    return 0


def _consequences(sizes: dict[object, list[str]], differ: set[str], tmp: str, samples: int) -> list[list[str]]:
    import torch

    from bitscale.harness.artifacts import cache
    from bitscale.harness.evaluation import digits_classifier
    from bitscale.harness.evaluation.fid import score
    from bitscale.harness.evaluation.references import reference_for
    from bitscale.harness.sampling import num_chunks, sample_chunks

    rows = []
    cpu = torch.device("cpu")
    for family, family_sizes in sizes.items():
        opts = family.Options()
        for size in family_sizes:
            if not differ & set(family.artifacts(size, opts)):
                continue
            fids = []
            for weights in ("shipped", "trained"):
                with shipped.using(weights, tmp if weights == "trained" else None):
                    model = family.build(size, opts, cpu)
                images, _ = sample_chunks(model, samples, 100, 0, range(num_chunks(samples, 100)))
                with shipped.using("shipped"):  # one protocol for both: the shipped feature extractor
                    fids.append(score(images, reference_for(model.dataset), seed=0)["fid"])
            rows.append([f"{family.name}/{size} FID", f"{fids[0]:.2f}", f"{fids[1]:.2f}"])
    if digits_classifier.ARTIFACT in differ:
        accuracies = []
        for weights in ("shipped", "trained"):
            with shipped.using(weights, tmp if weights == "trained" else None):
                accuracies.append(cache.load_manifest(digits_classifier.ARTIFACT)["test_accuracy"])
        rows.append(["digits classifier test accuracy", f"{accuracies[0]:.4f}", f"{accuracies[1]:.4f}"])
    return rows
