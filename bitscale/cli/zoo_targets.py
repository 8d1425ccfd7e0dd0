"""What the ``bitscale zoo`` actions act on: tiny-zoo families and sizes named on the command line,
the artifacts they ship, and training them into the cache (shared by ``train``, ``verify``, ``ship``)."""

from __future__ import annotations

import sys

from bitscale.harness.errors import BitscaleError
from bitscale.harness.plugin_loader import get_plugins


def targets(names: list[str]) -> list[tuple[object, str]]:
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


def sizes_by_family(names: list[str]) -> dict[object, list[str]]:
    """{family: sizes} named by ``names`` (``FAMILY`` or ``FAMILY/SIZE``; none: every tiny model), in order,
    once each."""
    sizes: dict[object, list[str]] = {}
    for family, size in targets(names):
        if size not in sizes.setdefault(family, []):
            sizes[family].append(size)
    return sizes


def train_into_cache(sizes: dict[object, list[str]], force: bool, jobs: int | None, progress: bool) -> int:
    """Train ``sizes`` (default options) into the cache; 0, or 1 when some training failed."""
    from bitscale.harness.artifacts.cache import cache_dir
    from bitscale.zoo.parallel import TrainingFailed, train_units, usable_cores
    from bitscale.zoo.units import units_for

    units = [u for family, s in sizes.items() for u in units_for(family, s, family.Options(), force)]
    if not units:
        if sizes:
            print(f"every tiny model asked for is trained and fresh in {cache_dir()}")
        return 0
    jobs = jobs or usable_cores()
    print(f"training {len(units)} artifact(s) in {min(jobs, len(units))} process(es)", flush=True)
    try:
        train_units(units, jobs, progress=progress, log=lambda line: print(line, flush=True))
    except TrainingFailed as exc:
        print(f"bitscale: error: training failed: {exc}", file=sys.stderr)
        return 1
    return 0


def shipped_artifacts(sizes: dict[object, list[str]]) -> list[str]:
    """Every artifact the families' ``sizes`` load with default options, then the FID feature extractor."""
    from bitscale.harness.evaluation import digits_classifier

    names: list[str] = []
    for family, family_sizes in sizes.items():
        if not hasattr(family, "artifacts"):  # a third-party trainable family: it caches its own way
            continue
        for size in family_sizes:
            names += [n for n in family.artifacts(size, family.Options()) if n not in names]
    return names + [digits_classifier.ARTIFACT]
