"""A grid's plan, kept in the metadata cache so that re-running a grid plans without importing a plugin.

Planning needs the plugins (option defaults, declared precisions, parameter counts on the meta
device, the tiny zoo's weight ids), and they import torch: seconds, for a re-run whose cells are all
stored. A plan is a function of

- the installation (``fingerprint.installation_key``: bitscale's files, the plugins' entry points
  and sources, every installed distribution, the ``BITSCALE_*`` variables),
- the tiny-zoo weights it names (``fingerprint.weights_key``: the artifact cache's weight files and
  manifests; shipped weights are files of the bitscale package),
- the experiment (its file name, as messages show it, and its bytes; or the built-in quick grid),
- ``PROTOCOL_VERSION``,

so it is kept under the digest of all of them; any change is another key and plans again. Plans
with cells on untrained weights, or made while a plugin failed to load, are not kept. A stored
plan's cells are checked against their hashes when read. ``bitscale run --force`` always plans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bitscale.harness import fingerprint, metadata_cache
from bitscale.harness.cells import PROTOCOL_VERSION, Cell, Plan, cell_hash
from bitscale.harness.plugin_sources import Provenance

KIND = "plan"
#: The built-in quick grid (``bitscale run`` without a file): ``bitscale/harness/quick.yaml``.
QUICK_SOURCE = "quick.yaml (built-in)"


@dataclass
class PlannedGrid:
    """A plan and what ``bitscale run`` needs besides it, without the plugins."""

    plan: Plan
    name: str  # the experiment's name (the store's ``experiment`` column)
    source: str  # the experiment file as messages name it
    sizes: dict[str, list[str]]  # family -> every size it offers, smallest first (the leaderboard's columns)
    provenance: Provenance  # which plugin registered what (stale-cell warnings)
    cached: bool = False
    experiment: Any = None  # the parsed ``Experiment`` when this process planned it, else None


def _read(path: str | None) -> tuple[str, str | None]:
    """(source label, text or None when unreadable) of the experiment file, or of the quick grid."""
    if path is None:
        return QUICK_SOURCE, resources.files("bitscale.harness").joinpath("quick.yaml").read_text()
    try:
        return path, Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return path, None


def load_experiment(path: str | None):
    """(Experiment, source label) of the file at ``path``, or of the built-in quick grid; ConfigError if bad."""
    import yaml

    from bitscale.harness.config import load_experiment as load_file
    from bitscale.harness.config import parse_experiment

    if path:
        return load_file(path), path
    return parse_experiment(yaml.safe_load(_read(None)[1]), QUICK_SOURCE), QUICK_SOURCE


def _key(path: str | None) -> dict[str, Any]:
    return {
        "installation": fingerprint.installation_key(),
        "weights": fingerprint.weights_key(),
        "experiment": list(_read(path)),
        "protocol": PROTOCOL_VERSION,
    }


def _dump(grid: PlannedGrid) -> dict[str, Any]:
    return {
        "cells": [asdict(c) for c in grid.plan.cells],
        "skipped": grid.plan.skipped,
        "name": grid.name,
        "source": grid.source,
        "sizes": grid.sizes,
        "provenance": grid.provenance.to_data(),
    }


def _restore(data: dict[str, Any]) -> PlannedGrid:
    cells = [Cell(**c) for c in data["cells"]]
    for c in cells:
        if c.hash != cell_hash(c.config()):
            raise ValueError(f"stored plan: {c.label} does not match its hash")
    plan = Plan(cells, [(label, reason) for label, reason in data["skipped"]])
    return PlannedGrid(
        plan,
        data["name"],
        data["source"],
        {k: list(v) for k, v in data["sizes"].items()},
        Provenance.from_data(data["provenance"]),
        cached=True,
    )


def plan_experiment(
    path: str | None, *, use_cache: bool = True, on_plugins: Callable[[Any], None] = lambda plugins: None
) -> PlannedGrid:
    """The plan of the experiment at ``path`` (None: the quick grid), from the cache when its inputs are unchanged.

    When it plans, ``on_plugins`` is called with the loaded ``PluginSet`` first (to report plugins
    that failed to load); every input error is a ``ConfigError``, as ``plan_grid`` raises it.
    """
    keys: list[dict[str, Any]] = []

    def key() -> dict[str, Any]:
        keys.append(_key(path))
        return keys[-1]

    def compute() -> PlannedGrid:
        from bitscale.harness.planner import plan_grid
        from bitscale.harness.plugin_loader import get_plugins
        from bitscale.harness.plugin_sources import provenance

        exp, source = load_experiment(path)
        plugins = get_plugins()
        on_plugins(plugins)
        plan = plan_grid(exp, plugins, source)  # every input error surfaces here, before the store is touched
        sizes = {spec.family: list(plugins.models.get(spec.family).sizes) for spec in exp.models}
        grid = PlannedGrid(plan, exp.name, source, sizes, provenance(plugins), experiment=exp)
        if keys:  # the plugins are loaded now: keep their metadata too (``bitscale plugins list``)
            from bitscale.harness.plugin_metadata import remember

            remember(keys[0]["installation"], plugins)
        return grid

    def keep(grid: PlannedGrid) -> bool:
        from bitscale.harness.plugin_loader import get_plugins

        return not grid.plan.untrained and not get_plugins().errors

    if not use_cache:
        return compute()
    grid, _ = metadata_cache.cached(KIND, key, compute, _dump, _restore, keep)
    return grid
