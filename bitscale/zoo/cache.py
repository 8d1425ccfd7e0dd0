"""On-disk cache for trained artifacts: ``<name>.safetensors`` plus a ``<name>.json`` manifest.

Writes are atomic (temp file + ``os.replace``) and guarded by a file lock, so two processes that
need the same missing model train it once and never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def cache_dir() -> Path:
    """``$BITSCALE_CACHE`` or ``~/.cache/bitscale``."""
    root = os.environ.get("BITSCALE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "bitscale")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifact_paths(name: str) -> tuple[Path, Path]:
    """(weights, manifest) paths of artifact ``name`` (``name`` may contain ``/`` subfolders)."""
    base = cache_dir() / name
    base.parent.mkdir(parents=True, exist_ok=True)
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock for artifact ``name``."""
    weights, _ = artifact_paths(name)
    with open(weights.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_artifact(name: str, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> None:
    """Write weights first, manifest last: a manifest on disk means the weights beside it are complete.

    An older manifest is removed before the weights are replaced: a process killed in between leaves
    no manifest, so the artifact reads as missing (and is retrained) rather than as the old one.
    """
    weights, meta = artifact_paths(name)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta.unlink(missing_ok=True)
    _atomic_write(weights, lambda p: save_file(tensors, p))
    _atomic_write(meta, lambda p: Path(p).write_text(json.dumps(manifest, indent=2, sort_keys=True)))


def load_manifest(name: str) -> dict[str, Any] | None:
    _, meta = artifact_paths(name)
    if not meta.exists():
        return None
    return json.loads(meta.read_text())


def load_artifact(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, manifest), or None when the artifact has not been trained yet."""
    manifest = load_manifest(name)
    weights, _ = artifact_paths(name)
    if manifest is None or not weights.exists():
        return None
    return load_file(str(weights)), manifest
