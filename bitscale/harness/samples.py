"""Kept samples: a cell's images as one content-addressed ``.npz`` in the ADM evaluation-suite layout.

``arr_0`` holds the images as uint8 NHWC and ``arr_1`` their int64 class labels, exactly what
OpenAI's guided-diffusion ``evaluator.py`` reads (it takes ``arr_0``). The file is named by the
SHA-256 of its arrays (not of the zip bytes, which carry timestamps), so the name proves the
content: ``read_samples`` recomputes it and refuses a file that does not match.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from bitscale.harness.errors import BitscaleError


def samples_digest(images_nhwc: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    for name, arr in (("arr_0", images_nhwc), ("arr_1", labels)):
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def write_samples(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """Write uint8 ``images`` (N, 3, H, W) and ``labels`` to ``folder/<sha256>.npz``; returns the path."""
    nhwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    lab = labels.to(torch.int64).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{samples_digest(nhwc, lab)}.npz").resolve()
    if path.exists():  # same content, same name: written before (a rerun, another driver)
        return path
    # Written aside and renamed: a reader never sees half a file, two writers never mix theirs.
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, arr_0=nhwc, arr_1=lab)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_samples(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, 3, H, W), labels) of a kept-samples file, checked against its name."""
    path = Path(path)
    if not path.is_file():
        raise BitscaleError(f"kept samples {path}: no such file; was the folder moved? (the store records the path)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "arr_0" not in data:
                raise BitscaleError(f"{path}: no 'arr_0' array; not a samples file in the ADM layout")
            nhwc = data["arr_0"]
            labels = data["arr_1"] if "arr_1" in data else np.zeros(len(nhwc), dtype=np.int64)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BitscaleError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc}); regenerate the cell") from None
    if nhwc.dtype != np.uint8 or nhwc.ndim != 4 or nhwc.shape[-1] != 3:
        raise BitscaleError(f"{path}: arr_0 is {nhwc.dtype} {nhwc.shape}; expected uint8 (N, H, W, 3)")
    if path.stem != samples_digest(nhwc, labels):
        raise BitscaleError(f"{path}: content does not match its name (the file was changed); regenerate the cell")
    return torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
