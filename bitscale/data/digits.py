"""scikit-learn's handwritten digits (1,797 8x8 images, ships with the package), upsampled to 16x16.

The split is fixed (stratified, seed 0): ``train`` (80%) trains the tiny zoo and the in-domain
classifier; ``test`` (20%) is the held-out reference set FID is measured against.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 16
NUM_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplit:
    images: torch.Tensor  # float32 (N, 3, 16, 16) in [-1, 1], gray replicated to RGB
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def uint8(self) -> torch.Tensor:
        """The images as ``uint8`` (N, 3, 16, 16), the form samples and FID use."""
        return to_uint8(self.images)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to uint8 [0, 255], the convention of VAR/LlamaGen/DiT sample saving."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@cache
def _all() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0  # [0, 1]
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=0, stratify=y)
    return x, y, np.stack([np.isin(idx, train_idx), np.isin(idx, test_idx)])


@cache
def load(split: str = "train") -> DigitsSplit:
    """The ``train`` or ``test`` split at 16x16, RGB, in [-1, 1]."""
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', not {split!r}")
    x, y, masks = _all()
    mask = masks[0] if split == "train" else masks[1]
    t = torch.from_numpy(x[mask]).unsqueeze(1)
    t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    t = (t * 2 - 1).expand(-1, 3, -1, -1).contiguous()
    return DigitsSplit(t, torch.from_numpy(y[mask]))


@cache
def data_hash(memo_dir: Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the raw data and split: part of manifests and protocols.

    With ``memo_dir``, the hash is remembered there per scikit-learn installation (its version and
    the data file's size and time): computing it imports scikit-learn and SciPy (a second or more),
    which a run whose cells are all stored needs for nothing else.
    """
    key = _installation_key()
    memo = memo_dir / "digits-data-hash.json" if memo_dir is not None and key else None
    if memo is not None:
        try:
            saved = json.loads(memo.read_text())
            if saved.get("key") == key:
                return str(saved["hash"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # absent or unreadable: compute it
    x, y, masks = _all()
    h = hashlib.sha256()
    for a in (x, y, masks):
        h.update(np.ascontiguousarray(a).tobytes())
    digest = h.hexdigest()[:16]
    if memo is not None:
        try:
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "hash": digest}))
            tmp.replace(memo)  # atomic: concurrent processes write the same content
        except OSError:
            pass  # a read-only cache only costs the recomputation
    return digest


def _installation_key() -> str | None:
    """scikit-learn's version and its digits file's size and time, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    data = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    try:
        from importlib.metadata import version

        st = data.stat()
        return f"scikit-learn {version('scikit-learn')} {data} {st.st_size} {st.st_mtime_ns}"
    except (OSError, ValueError, ImportError):
        return None
