"""``bitscale zoo ship``: make the tiny-zoo weights trained in the cache the ones bitscale ships (maintainers).

It trains what is missing (on one thread per artifact, as always), then copies every artifact the
built-in families load with default options, and the FID feature extractor, into
``bitscale/zoo/weights/`` and rewrites ``catalog.json``: sha256, training manifest and the
machine that trained them. Commit the result; every machine then scores with these bytes.

With NAMES (``FAMILY`` or ``FAMILY/SIZE``) only their artifacts are trained and shipped; every
other catalog entry and file stays as it is. An artifact whose cached file is byte for byte the
shipped one keeps its catalog entry (it did not change, so neither did the machine that trained it).
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
    p = zsub.add_parser(
        "ship", help="copy the cached tiny-zoo weights into the package (maintainers)", description=SHIP_HELP
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="FAMILY or FAMILY/SIZE to ship (default: the whole tiny zoo and the extractor)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes for what is still to train (default: the usable cores)",
    )
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

    from bitscale.harness.artifacts import cache
    from bitscale.harness.evaluation import digits_classifier
    from bitscale.zoo.pretrain import shipped_artifacts, sizes_by_family, train_into_cache

    old = shipped.catalog()
    shipped.use_trained()  # read and train the cache, never the files being replaced
    sizes = sizes_by_family(args.names)
    if train_into_cache(sizes, force=False, jobs=args.jobs, progress=False):
        return 1
    names = shipped_artifacts(sizes)
    if args.names:
        names.remove(digits_classifier.ARTIFACT)  # the extractor ships only with the whole zoo
    else:
        digits_classifier.train_classifier()
    machine = {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version(), "threads": 1}
    artifacts = dict(old) if args.names else {}
    for name in names:
        manifest = cache.load_manifest(name)
        source = cache.artifact_paths(name)[0]
        target = shipped.path_of(name)
        if name in old and shipped.file_sha256(source) == old[name]["sha256"]:
            artifacts[name] = old[name]
            print(f"unchanged {name}: {old[name]['sha256'][:12]}…")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        manifest.pop("sha256", None)
        artifacts[name] = {
            "sha256": shipped.file_sha256(target),
            "bytes": target.stat().st_size,
            "manifest": manifest,
            "trained_on": machine,
        }
        print(f"shipped {name}: {artifacts[name]['sha256'][:12]}… ({artifacts[name]['bytes'] / 1e6:.2f} MB)")
    for stale in shipped.WEIGHTS_DIR.rglob("*.safetensors"):
        if stale.relative_to(shipped.WEIGHTS_DIR).with_suffix("").as_posix() not in artifacts:
            stale.unlink()
    shipped.CATALOG.write_text(json.dumps({"format": 1, "artifacts": artifacts}, indent=1, sort_keys=True) + "\n")
    total = sum(a["bytes"] for a in artifacts.values())
    print(f"{len(artifacts)} artifacts, {total / 1e6:.1f} MB, catalog {shipped.CATALOG}")
    return 0
