"""Analyses on disk: ``<root>/analyses/<hash>/`` with ``result.json`` (config, provenance, numbers),
``arrays.npz`` (large per-channel arrays, when any) and the figures (PNG and SVG).

Why files and not a store table: an analysis is a handful of curves plus figures, read by people
and by the HTML page, never queried; files next to the store keep the store's schema (and its
PostgreSQL migrations) untouched. The folder name is a hash of the resolved config, the plugin
versions and the weights id, so the same analysis of the same weights lands in the same folder
(and is not recomputed), and a changed model or plugin gets a new one. A result is written into a
temporary sibling folder and renamed into place, so a crash never leaves a half-written analysis.
No torch here: the leaderboard page reads analyses without importing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitscale.harness.errors import BitscaleError

RESULT = "result.json"
ARRAYS = "arrays.npz"


def analysis_hash(kind: str, config: dict[str, Any], provenance: dict[str, Any]) -> str:
    """20 hex digits over the canonical JSON of what determines the numbers."""
    ident = {
        "kind": kind,
        "config": config,
        "versions": provenance.get("versions"),
        "weights": provenance.get("weights"),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]


def analyses_root(store_url: str, override: str | None) -> Path:
    """``override``, else the folder of a SQLite store file; other stores need ``--analyses DIR``."""
    if override:
        return Path(override)
    from bitscale.harness.store.urls import normalize_url

    url = normalize_url(store_url)
    if url.startswith("sqlite:///") and url not in ("sqlite:///", "sqlite:///:memory:"):
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "analyses"
    raise BitscaleError(
        "analyses are files next to the store, but this store is not a SQLite file; pass --analyses DIR"
    )


@dataclass(frozen=True)
class StoredAnalysis:
    """One analysis folder: its hash, result document and figure files."""

    path: Path

    @property
    def hash(self) -> str:
        return self.path.name

    @property
    def result(self) -> dict[str, Any]:
        return json.loads((self.path / RESULT).read_text())

    def figures(self, suffix: str = ".png") -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.suffix == suffix)


def find(root: Path, digest: str) -> StoredAnalysis | None:
    path = root / digest
    return StoredAnalysis(path) if (path / RESULT).is_file() else None


def list_analyses(root: Path) -> list[StoredAnalysis]:
    """Every complete analysis under ``root``, oldest first (by their ``created`` stamp)."""
    if not root.is_dir():
        return []
    found = [StoredAnalysis(p) for p in root.iterdir() if p.is_dir() and (p / RESULT).is_file()]
    return sorted(found, key=lambda a: (a.result.get("provenance", {}).get("created", ""), a.hash))


def save(root: Path, digest: str, document: dict[str, Any], write_files) -> StoredAnalysis:
    """Write ``document`` as ``result.json`` and let ``write_files(folder)`` add arrays and figures, atomically."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
    try:
        write_files(tmp)
        (tmp / RESULT).write_text(json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n")
        final = root / digest
        if final.exists():  # a forced re-run: the old folder goes only once the new one is complete
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StoredAnalysis(final)
