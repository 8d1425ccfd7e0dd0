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
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


@dataclass(frozen=True)
class Provenance:
    """Which plugin registered each name, and the editable ones' sources: what ``stale_cells`` needs, from a
    loaded ``PluginSet`` (``provenance``) or from a plan kept in the metadata cache (``to_data``/``from_data``)."""

    owners: dict[str, dict[str, str]]  # "models"/"quantizers"/"losses" -> registered name -> plugin
    sources: dict[str, EditableSource]

    def to_data(self) -> dict[str, Any]:
        return {
            "owners": self.owners,
            "sources": {n: [s.dist, str(s.folder), s.changed.isoformat()] for n, s in self.sources.items()},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Provenance:
        sources = {
            n: EditableSource(n, dist, Path(folder), datetime.fromisoformat(changed))
            for n, (dist, folder, changed) in data["sources"].items()
        }
        return cls({k: dict(v) for k, v in data["owners"].items()}, sources)


def provenance(plugins: PluginSet) -> Provenance:
    owners = {kind: {e.name: e.plugin for e in getattr(plugins, kind)} for kind in ("models", "quantizers", "losses")}
    return Provenance(owners, editable_sources(plugins))


def stale_cells(cells: Iterable, started: dict[str, datetime], plugins: PluginSet | Provenance) -> dict[str, list]:
    """Stored cells (``started``: hash -> start time) that ran before an edit of an editable plugin they use.

    Returns plugin name -> those cells; ``cells`` are the planner's ``Cell``s.
    """
    prov = plugins if isinstance(plugins, Provenance) else provenance(plugins)
    if not prov.sources:
        return {}
    out: dict[str, list] = {}
    for cell in cells:
        when = started.get(cell.hash)
        if when is None:
            continue
        used = [prov.owners["models"][cell.family]]
        if cell.method in prov.owners["quantizers"]:
            used.append(prov.owners["quantizers"][cell.method])
        if cell.loss and cell.loss in prov.owners["losses"]:
            used.append(prov.owners["losses"][cell.loss])
        for name in used:
            src = prov.sources.get(name)
            if src is not None and src.changed > when.replace(tzinfo=None):
                out.setdefault(name, []).append(cell)
    return out
