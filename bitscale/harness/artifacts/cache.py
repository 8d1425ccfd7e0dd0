"""Trained artifacts: the shipped ones (``bitscale.harness.artifacts.shipped``) and the user's on-disk cache.

An artifact is ``<name>.safetensors`` plus a manifest (what it was trained with, and the
sha256 of its file). Reading goes through ``load_manifest``/``load_artifact``: with shipped
weights in use (the default) a shipped artifact comes from the package, anything else from the
cache (``$BITSCALE_CACHE`` or ``~/.cache/bitscale``). Every file read is checked against its
recorded sha256, so an edited or corrupt file is an error naming it, not silently used.

Writes go to the cache only. They are atomic (temp file + ``os.replace``) and guarded by a file
lock, so two processes that need the same missing model train it once and never see a
half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bitscale.harness.artifacts import shipped
from bitscale.harness.artifacts.shipped import cache_dir  # noqa: F401 - where it was; found without torch there
from bitscale.harness.errors import BitscaleError
from bitscale.hashing import sha256_text


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


#: Artifacts this process wrote: what it trained, as opposed to found trained (by another process).
_SAVED_HERE: set[str] = set()


def saved_here(name: str) -> bool:
    """True when this process wrote (trained) artifact ``name``."""
    return name in _SAVED_HERE


def save_artifact(name: str, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> dict[str, Any]:
    """Write weights first, manifest (with the weights' sha256) last: a manifest on disk means the weights beside
    it are complete. Returns the manifest as written (what ``load_manifest`` reads back).

    An older manifest is removed before the weights are replaced: a process killed in between leaves
    no manifest, so the artifact reads as missing (and is retrained) rather than as the old one.
    """
    if shipped.entry(name) is not None:
        # Training only happens when the weights in use do not fit the code's recipe; with shipped
        # weights in use, writing the cache would not change what is loaded.
        raise _stale_shipped(name)
    _SAVED_HERE.add(name)
    weights, meta = artifact_paths(name)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta.unlink(missing_ok=True)
    _atomic_write(weights, lambda p: save_file(tensors, p))
    manifest = {**manifest, "sha256": shipped.file_sha256(weights)}
    _atomic_write(meta, lambda p: Path(p).write_text(json.dumps(manifest, indent=2, sort_keys=True)))
    return manifest


def is_shipped(name: str) -> bool:
    """True when ``name`` is read from the shipped weights (they are in use and it ships)."""
    return shipped.entry(name) is not None


def load_manifest(name: str) -> dict[str, Any] | None:
    """The manifest of the artifact in use (shipped or cached), or None when there is none."""
    found = shipped.entry(name)
    if found is not None:
        return dict(found["manifest"], sha256=found["sha256"])
    _, meta = artifact_paths(name)
    if not meta.exists():
        return None
    try:
        manifest = json.loads(meta.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise BitscaleError(
            f"{meta}: unreadable manifest ({exc}); delete it and its .safetensors, "
            f"or retrain: bitscale zoo train --force"
        ) from None
    return manifest


def has_weights(name: str) -> bool:
    """The weights file of the artifact in use is there and intact.

    A shipped file that is not is an error (it is never retrained silently); a cached one reads
    as missing, so that it is trained again.
    """
    if is_shipped(name):
        shipped.verified_path(name)
        return True
    path = artifact_paths(name)[0]
    return path.exists() and _intact(path, load_manifest(name) or {})


def _intact(path: Path, manifest: dict[str, Any]) -> bool:
    """A cached file is the one its manifest records (manifests of older versions record no hash)."""
    expected = manifest.get("sha256")
    return expected is None or shipped.file_sha256(path) == expected


def weights_sha256(name: str) -> str:
    """sha256 of the weights file in use: the catalog's for shipped ones, the manifest's (or the file's) for cached."""
    manifest = load_manifest(name) or {}
    return manifest.get("sha256") or shipped.file_sha256(artifact_paths(name)[0])


def load_artifact(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, manifest) of the artifact in use, or None when it has not been trained yet.

    Raises ``BitscaleError`` naming the file when it does not match its recorded sha256 or
    cannot be read as safetensors.
    """
    manifest = load_manifest(name)
    if manifest is None:
        return None
    if is_shipped(name):
        path = shipped.verified_path(name)
    else:
        path = artifact_paths(name)[0]
        if not path.exists():
            return None
        if not _intact(path, manifest):
            raise BitscaleError(
                f"{path}: cached weights of {name} were modified or are corrupt (their sha256 is not "
                f"the one their manifest records); delete the file (it is retrained when needed) "
                f"or retrain: bitscale zoo train --force"
            )
    try:
        return load_file(str(path)), manifest
    except (SafetensorError, OSError) as exc:
        raise BitscaleError(
            f"{path}: not a readable safetensors file ({exc}); delete it (it is retrained when "
            f"needed) or retrain: bitscale zoo train --force"
        ) from None


def load_fresh(
    name: str, fresh: Callable[[dict[str, Any]], bool]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, manifest) of artifact ``name`` if its manifest is ``fresh`` and its file intact; else None
    (to train). A shipped file that is not intact is an error."""
    manifest = load_manifest(name)
    if manifest is None or not fresh(manifest) or not has_weights(name):
        return None
    return load_artifact(name)


def weights_digest(artifacts: Sequence[tuple[str, Callable[[dict[str, Any]], bool]]]) -> str | None:
    """Short hash of the weights files a model loads: ``artifacts`` are (name, is this manifest fresh?).

    None when one of them is missing or stale (still to be trained). A stale *shipped* artifact is
    an error: the code's recipe changed and the shipped weights were not re-shipped.
    """
    digests = []
    for name, fresh in artifacts:
        manifest = load_manifest(name)
        if manifest is None or not has_weights(name) or not fresh(manifest):
            if is_shipped(name):
                raise _stale_shipped(name)
            return None
        digests.append(weights_sha256(name))
    return sha256_text(" ".join(digests), 16)


def _stale_shipped(name: str) -> BitscaleError:
    return BitscaleError(
        f"{name}: the shipped weights do not match this code's training recipe (edited recipe?); "
        f"re-ship them (`bitscale zoo ship`) or use weights trained here ({shipped.SOURCE_ENV}=trained)"
    )
