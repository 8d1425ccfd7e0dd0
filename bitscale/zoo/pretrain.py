"""Training the tiny-zoo models a grid or a command needs, before anything uses them: the one place that
turns families and sizes into training units and hands them to worker processes (``parallel``).

Used by ``bitscale run`` (``plan_trained``: a cell's hash names its weights, so they are trained before
the grid is planned for good) and by ``bitscale zoo train|verify|ship`` (``train_into_cache``). The
core's runner only refuses a plan whose weights are untrained; it never trains.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from bitscale.harness.config import Experiment
from bitscale.harness.contracts import TrainableFamily
from bitscale.harness.errors import BitscaleError
from bitscale.harness.planner import Cell, Plan, plan_grid
from bitscale.harness.plugin_loader import PluginSet, get_plugins
from bitscale.zoo.parallel import TrainingFailed, train_units, usable_cores
from bitscale.zoo.units import TrainingUnit, units_for


def _train(units: Sequence[TrainingUnit], jobs: int, progress: bool, log: Callable[[str], None]) -> str | None:
    """Train ``units`` in ``jobs`` processes; None, or why some failed."""
    try:
        train_units(units, jobs, progress, log=log)
    except TrainingFailed as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------- before a grid (bitscale run)


def plan_trained(plan: Plan, exp: Experiment, plugins: PluginSet, source: str, progress: bool = True) -> Plan:
    """``plan`` (``plan_grid(exp, ...)``) with final hashes: the tiny-zoo weights its cells need and the
    cache lacks are trained, then the grid is planned again.

    A cell's hash names the weights it is measured on (their files' hash), which exist only
    once trained; shipped weights need no training, so with them ``plan`` is returned as it is.
    """
    if plan.untrained and pretrain_missing(plan.untrained, plugins, progress):
        plan = plan_grid(exp, plugins, source)
    if plan.untrained:
        raise BitscaleError(
            f"{source}: {plan.untrained[0].label}: its model's weights could not be trained (see the errors above)"
        )
    return plan


def pretrain_missing(cells: list[Cell], plugins: PluginSet, progress: bool = True) -> bool:
    """Train the tiny-zoo models ``cells`` need and the cache lacks, in one process per core, before any cell.

    Serial training inside ``build`` would leave every core but one idle for minutes. Families
    that cannot say what they lack (no ``training_units``) still train inside ``build``.
    Returns True when something was trained.
    """
    wanted: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}  # (family, options) -> (options, sizes)
    for cell in cells:
        family = plugins.models.get(cell.family)
        if isinstance(family, TrainableFamily) and family.plans_training:
            key = (cell.family, repr(sorted(cell.model_options.items())))
            sizes = wanted.setdefault(key, (cell.model_options, []))[1]
            if cell.size not in sizes:
                sizes.append(cell.size)
    units = []
    for (name, _), (options, sizes) in wanted.items():
        family = plugins.models.get(name)
        units += units_for(family, sizes, family.Options.model_validate(options))
    if not units:
        return False
    tqdm.write(f"training {len(units)} missing tiny-zoo artifact(s) first", file=sys.stdout)
    failed = _train(units, usable_cores(), progress, lambda line: tqdm.write(f"  {line}", file=sys.stdout))
    if failed is not None:
        # Not fatal: the cells of these models train them again in ``build`` and fail with the traceback.
        tqdm.write(f"bitscale: warning: tiny-zoo training failed: {failed}", file=sys.stderr)
    return True


# ---------------------------------------------------------------- named models (bitscale zoo ...)


def targets(names: list[str]) -> list[tuple[TrainableFamily, str]]:
    """(family, size) of every tiny model ``names`` (``FAMILY`` or ``FAMILY/SIZE``; none: all) names."""
    ps = get_plugins()
    trainable = [e.obj for e in ps.models if isinstance(e.obj, TrainableFamily)]
    if not names:
        return [(f, s) for f in trainable for s in f.sizes]
    out = []
    for name in names:
        fam_name, _, size = name.partition("/")
        family = ps.models.get(fam_name)
        if not isinstance(family, TrainableFamily):
            raise BitscaleError(f"{fam_name} loads released checkpoints; only tiny-zoo families can be trained")
        if size and size not in family.sizes:
            raise BitscaleError(f"{fam_name} has no size {size!r}; choose from {', '.join(family.sizes)}")
        out += [(family, s) for s in ([size] if size else family.sizes)]
    return out


def sizes_by_family(names: list[str]) -> dict[TrainableFamily, list[str]]:
    """{family: sizes} named by ``names`` (``FAMILY`` or ``FAMILY/SIZE``; none: every tiny model), in order,
    once each."""
    sizes: dict[TrainableFamily, list[str]] = {}
    for family, size in targets(names):
        if size not in sizes.setdefault(family, []):
            sizes[family].append(size)
    return sizes


def train_into_cache(sizes: dict[TrainableFamily, list[str]], force: bool, jobs: int | None, progress: bool) -> int:
    """Train ``sizes`` (default options) into the cache; 0, or 1 when some training failed."""
    from bitscale.harness.artifacts.cache import cache_dir

    units = [u for family, s in sizes.items() for u in units_for(family, s, family.Options(), force)]
    if not units:
        if sizes:
            print(f"every tiny model asked for is trained and fresh in {cache_dir()}")
        return 0
    jobs = jobs or usable_cores()
    print(f"training {len(units)} artifact(s) in {min(jobs, len(units))} process(es)", flush=True)
    failed = _train(units, jobs, progress, lambda line: print(line, flush=True))
    if failed is not None:
        print(f"bitscale: error: training failed: {failed}", file=sys.stderr)
        return 1
    return 0


def shipped_artifacts(sizes: dict[Any, list[str]]) -> list[str]:
    """Every artifact the families' ``sizes`` load with default options, then the FID feature extractor."""
    from bitscale.harness.evaluation import digits_classifier

    names: list[str] = []
    for family, family_sizes in sizes.items():
        for size in family_sizes:
            names += [n for n in family.artifacts(size, family.Options()) if n not in names]
    return names + [digits_classifier.ARTIFACT]
