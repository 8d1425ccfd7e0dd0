"""Distribution-guided calibration (PTQ4ARVG's DGC): keep the calibration samples that are farthest
from their set, so the calibration covers the tails of the activation distribution.

Criterion: the Mahalanobis distance of each sample's feature to the mean and covariance of its
own set (conditional or unconditional CFG half), as the official code computes it; the paper's
text calls the selection "entropy"-guided. The ``n`` largest distances over both sets are kept,
so the conditional/unconditional proportion is whatever the distances dictate.

Batches are a model's own ``calibration_batches`` objects: tensors, dicts, tuples or NamedTuples
whose tensor leaves share the batch dimension. ``split_batches`` / ``merge_samples`` cut them
into single samples and back; ``with_labels`` makes the unconditional copy of a batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def mahalanobis(features: Tensor, shrinkage: float = 1e-3) -> Tensor:
    """Distance of each row of ``features`` ``(N, D)`` to the rows' mean under their covariance.

    The covariance is shrunk towards its mean variance (``shrinkage`` of the trace per dim) so
    that fewer samples than dimensions still give a well-posed inverse.
    """
    f = features.double()
    d = f - f.mean(dim=0, keepdim=True)
    cov = d.t() @ d / max(1, f.shape[0] - 1)
    ridge = shrinkage * float(torch.diagonal(cov).mean().clamp(min=1e-12))
    cov = cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype)
    sol = torch.linalg.solve(cov, d.t()).t()
    return (d * sol).sum(dim=1).clamp(min=0).sqrt().to(features.dtype)


def dgc_select(sets: dict[str, Tensor], n: int, shrinkage: float = 1e-3) -> list[tuple[str, int]]:
    """The ``n`` samples with the largest distance to their own set: ``[(set name, index), ...]``."""
    scored: list[tuple[float, str, int]] = []
    for name, feats in sets.items():
        if feats.shape[0] == 0:
            continue
        dist = mahalanobis(feats, shrinkage)
        scored.extend((float(v), name, i) for i, v in enumerate(dist))
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))  # ties: deterministic order
    return [(name, i) for _, name, i in scored[:n]]


# --------------------------------------------------------------------------- batch plumbing


def batch_size(batch: Any) -> int:
    for leaf in _leaves(batch):
        return int(leaf.shape[0])
    raise ValueError("a calibration batch without any tensor cannot be split into samples")


def _leaves(batch: Any) -> list[Tensor]:
    if isinstance(batch, Tensor):
        return [batch]
    if isinstance(batch, dict):
        return [v for v in batch.values() if isinstance(v, Tensor)]
    if isinstance(batch, (tuple, list)):
        return [v for v in batch if isinstance(v, Tensor)]
    return []


def _map(batch: Any, fn) -> Any:
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: fn(v) if isinstance(v, Tensor) else v for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(fn(v) if isinstance(v, Tensor) else v for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(fn(v) if isinstance(v, Tensor) else v for v in batch)
    raise TypeError(f"cannot split a calibration batch of type {type(batch).__name__}")


def split_batches(batches: list[Any]) -> list[Any]:
    """Every sample of every batch as a batch of one."""
    out = []
    for b in batches:
        for i in range(batch_size(b)):
            out.append(_map(b, lambda t, i=i: t[i : i + 1]))
    return out


def merge_samples(samples: list[Any], size: int) -> list[Any]:
    """Consecutive samples regrouped into batches of ``size`` (the last may be smaller)."""
    out = []
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        first = chunk[0]
        if isinstance(first, Tensor):
            out.append(torch.cat(chunk))
        elif isinstance(first, dict):
            out.append({k: torch.cat([c[k] for c in chunk]) if isinstance(v, Tensor) else v for k, v in first.items()})
        else:
            cols = [torch.cat([c[j] for c in chunk]) if isinstance(v, Tensor) else v for j, v in enumerate(first)]
            out.append(type(first)(*cols) if hasattr(first, "_fields") else type(first)(cols))
    return out


def labels_of(batch: Any) -> Tensor | None:
    """The class labels of a batch (dict key or NamedTuple field ``labels``), or ``None``."""
    if isinstance(batch, dict):
        v = batch.get("labels")
    else:
        v = getattr(batch, "labels", None) if hasattr(batch, "_fields") else None
    return v if isinstance(v, Tensor) else None


def with_labels(batch: Any, labels: Tensor) -> Any:
    """A copy of ``batch`` with ``labels`` (e.g. the null class: the unconditional CFG half)."""
    if isinstance(batch, dict):
        return {**batch, "labels": labels}
    return batch._replace(labels=labels)
