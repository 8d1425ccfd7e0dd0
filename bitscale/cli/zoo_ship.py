"""``bitscale zoo ship``: make the tiny-zoo weights trained in the cache the ones bitscale ships (maintainers).

It trains what is missing (on one thread per artifact, as always), then copies every artifact the
built-in families load with default options, and the FID feature extractor, into
``bitscale/zoo/weights/`` and rewrites ``catalog.json``: sha256, training manifest and the
machine that trained them. Commit the result; every machine then scores with these bytes.
Naming families ships only theirs and keeps every other catalog entry; an artifact they share
with another family (a tokenizer) must be the file that family already ships.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil


from bitscale.cli.common import positive_int
from bitscale.harness.artifacts import shipped

SHIP_HELP = __doc__.split("\n\n", 1)[1]


def add_parser(zsub) -> None:
    p = zsub.add_parser("ship", help="copy the cached tiny-zoo weights into the package (maintainers)",
                        description=SHIP_HELP)
    p.add_argument("names", nargs="*", metavar="FAMILY",
                   help="ship only these tiny families' artifacts, keeping every other catalog entry as it is "
                        "(default: the whole zoo and the FID feature extractor)")
    p.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N",
                   help="worker processes for what is still to train (default: the usable cores)")
    p.set_defaults(func=ship)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ship(args: argparse.Namespace) -> int:
    import torch

    from bitscale.zoo.pretrain import shipped_artifacts, sizes_by_family, train_into_cache
    from bitscale.harness.evaluation import digits_classifier
    from bitscale.harness.artifacts import cache
    from bitscale.harness.errors import BitscaleError

    old_catalog = shipped.catalog()
    shipped.use_trained()  # read and train the cache, never the files being replaced
    names = getattr(args, "names", None) or []
    if any("/" in n for n in names):
        raise BitscaleError("zoo ship takes whole families (a family's sizes are shipped together)")
    sizes = sizes_by_family(names)
    if train_into_cache(sizes, force=False, jobs=args.jobs, progress=False):
        return 1
    wanted = shipped_artifacts(sizes)
    machine = {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version(), "threads": 1}
    artifacts = {}
    if names:
        # Only the named families: every other entry stays; a shared artifact (a tokenizer another family
        # ships too) must be the very file already shipped, or shipping would change the other family.
        wanted = [n for n in wanted if n != digits_classifier.ARTIFACT]
        artifacts = {k: v for k, v in old_catalog.items() if k not in wanted}
        for name in list(wanted):
            owner = name.partition("/")[0]
            if name in old_catalog and owner not in names:
                if cache.weights_sha256(name) != old_catalog[name]["sha256"]:
                    raise BitscaleError(f"{name} is shipped by {owner}, and the cached copy these families were "
                                        f"trained on is another file; ship {owner} too, or train on the shipped one")
                artifacts[name] = old_catalog[name]
                wanted.remove(name)
    else:
        digits_classifier.train_classifier()
    for name in wanted:
        manifest = cache.load_manifest(name)
        source = cache.artifact_paths(name)[0]
        target = shipped.path_of(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        manifest.pop("sha256", None)
        artifacts[name] = {"sha256": shipped.file_sha256(target), "bytes": target.stat().st_size,
                           "manifest": manifest, "trained_on": machine}
        print(f"shipped {name}: {artifacts[name]['sha256'][:12]}… ({artifacts[name]['bytes'] / 1e6:.2f} MB)")
    # Shipping some families leaves the other families' files alone, stale or not.
    for stale in ([] if names else shipped.WEIGHTS_DIR.rglob("*.safetensors")):
        if stale.relative_to(shipped.WEIGHTS_DIR).with_suffix("").as_posix() not in artifacts:
            stale.unlink()
    shipped.CATALOG.write_text(json.dumps({"format": 1, "artifacts": artifacts}, indent=1, sort_keys=True) + "\n")
    total = sum(a["bytes"] for a in artifacts.values())
    print(f"{len(artifacts)} artifacts, {total / 1e6:.1f} MB, catalog {shipped.CATALOG}")
    return 0
