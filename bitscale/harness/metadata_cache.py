"""The metadata cache: what a process learnt by importing the plugins, kept for the next one.

An entry is a JSON file in ``<artifact cache>/metadata/``, named by the digest of its key (built by
``bitscale.harness.fingerprint`` from everything the value depends on), so a changed input is a
different file, never a stale hit. Entries record the source files loaded when they were written
that the key cannot cover (``fingerprint.loaded_sources``) and are used only while those are
unchanged. An entry is written only if its key was the same before and after computing the value
(nothing it depends on changed meanwhile), and atomically (temp file, ``os.replace``): concurrent
processes at worst compute the same value twice. ``BITSCALE_NO_METADATA_CACHE=1`` turns it off.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bitscale.harness import fingerprint

#: Bump when an entry's layout changes: older files are then never read.
FORMAT = 1
#: Entries kept per kind (oldest removed first): one per recent input state, e.g. a few experiments.
KEEP = 16
DISABLE_ENV = "BITSCALE_NO_METADATA_CACHE"

T = TypeVar("T")


def enabled() -> bool:
    """False when ``BITSCALE_NO_METADATA_CACHE`` is set, or when this process already loaded plugins (a test's
    own plugin set, or the default one: then there is nothing to save)."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    loader = sys.modules.get("bitscale.harness.plugin_loader")
    return loader is None or getattr(loader, "_CACHED", None) is None


def _folder() -> Path:
    from bitscale.harness.artifacts.shipped import cache_dir

    return cache_dir() / fingerprint.CACHE_FOLDER


def _path(kind: str, key: Any) -> Path:
    return _folder() / f"{kind}-{fingerprint.digest([FORMAT, kind, key])}.json"


def load(kind: str, key: Any) -> Any | None:
    """The value stored under ``key``, or None (absent, unreadable, or a source it recorded changed)."""
    try:
        data = json.loads(_path(kind, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("sources"), dict):
        return None
    if not fingerprint.unchanged(data["sources"]):
        return None
    return data.get("value")


def save(kind: str, key: Any, value: Any) -> None:
    """Store ``value`` (JSON data) under ``key``; a cache that cannot be written only costs the next process time."""
    path = _path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "sources": fingerprint.loaded_sources(), "value": value}))
        tmp.replace(path)
        _prune(kind)
    except OSError:
        pass


def _prune(kind: str) -> None:
    entries = sorted(_folder().glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)


def cached(
    kind: str,
    key: Callable[[], Any],
    compute: Callable[[], T],
    dump: Callable[[T], Any],
    restore: Callable[[Any], T],
    keep: Callable[[T], bool] = lambda _: True,
) -> tuple[T, bool]:
    """(value, True) from the cache when an entry for ``key()`` exists, else (``compute()``, False), stored
    (as ``dump(value)``) if ``keep(value)`` and the key did not change while it was computed."""
    if not enabled():
        return compute(), False
    before = key()
    found = load(kind, before)

    if found is not None:
        try:
            return restore(found), True
        except (KeyError, TypeError, ValueError):
            pass  # an entry this code cannot read: compute it again
    value = compute()
    if keep(value) and key() == before:
        save(kind, before, dump(value))
    return value, False
