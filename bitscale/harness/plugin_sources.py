"""Plugins installed from a working tree (``pip install -e``), and stored cells older than their code.

A cell's hash names the versions of the plugins it used, so a new release of a plugin makes new
cells. An editable install keeps its version while its code changes: the stored cells of the old
code would be reused silently. ``stale_cells`` finds them (stored cells started before the newest
edit of a plugin's source files) so ``bitscale run`` can warn and point at ``--force``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, UTC
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType

from bitscale.harness.plugin_loader import PluginSet


@dataclass(frozen=True)
class EditableSource:
    plugin: str
    dist: str
    folder: Path  # the plugin's package folder (or its module file)
    changed: datetime  # newest modification time of its .py files, UTC (naive, as the store's times)


def _is_editable(dist: str) -> bool:
    try:
        text = distribution(dist).read_text("direct_url.json")
    except PackageNotFoundError:
        return False
    try:
        return bool(text) and bool(json.loads(text).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def _newest_change(path: Path) -> datetime:
    files = [path] if path.is_file() else list(path.rglob("*.py"))
    newest = max((f.stat().st_mtime for f in files), default=0.0)
    return datetime.fromtimestamp(newest, UTC).replace(tzinfo=None)


def editable_sources(plugins: PluginSet) -> dict[str, EditableSource]:
    """Every loaded third-party plugin whose distribution is an editable install, by plugin name."""
    out: dict[str, EditableSource] = {}
    for info in plugins.plugins.values():
        if info.builtin or not _is_editable(info.dist):
            continue
        obj = plugins.manager.get_plugin(info.name)
        file = getattr(obj, "__file__", None) if isinstance(obj, ModuleType) else None
        if not file:
            continue
        path = Path(file)
        folder = path.parent if path.name == "__init__.py" else path
        out[info.name] = EditableSource(info.name, info.dist, folder, _newest_change(folder))
    return out


def stale_cells(cells: Iterable, started: dict[str, datetime], plugins: PluginSet) -> dict[str, list]:
    """Stored cells (``started``: hash -> start time) that ran before an edit of an editable plugin they use.

    Returns plugin name -> those cells; ``cells`` are the planner's ``Cell``s.
    """
    sources = editable_sources(plugins)
    if not sources:
        return {}
    out: dict[str, list] = {}
    for cell in cells:
        when = started.get(cell.hash)
        if when is None:
            continue
        used = [plugins.models.entry(cell.family).plugin]
        if cell.method in plugins.quantizers:
            used.append(plugins.quantizers.entry(cell.method).plugin)
        if cell.loss and cell.loss in plugins.losses:
            used.append(plugins.losses.entry(cell.loss).plugin)
        for name in used:
            src = sources.get(name)
            if src is not None and src.changed > when.replace(tzinfo=None):
                out.setdefault(name, []).append(cell)
    return out
