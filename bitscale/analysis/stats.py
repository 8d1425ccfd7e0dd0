"""Small statistics shared by the analyses: per-sample relative errors, means with CIs, Pearson's r."""

from __future__ import annotations

import numpy as np
import torch


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per sample ``||x - ref|| / ||ref||`` over everything but the batch dimension, ``(B,)`` float64."""
    d = (x.double() - reference.double()).flatten(1).norm(dim=1)
    return d / reference.double().flatten(1).norm(dim=1).clamp_min(1e-30)


def mean_ci(values: np.ndarray | torch.Tensor, n_boot: int = 1000) -> dict[str, float]:
    """Mean and a 95% percentile-bootstrap CI over samples (fixed resampling seed: deterministic; errors are
    skewed and non-negative, which a normal approximation would ignore)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "lo": mean, "hi": mean}
    means = v[np.random.default_rng(0).integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    return {"mean": mean, "lo": float(np.percentile(means, 2.5)), "hi": float(np.percentile(means, 97.5))}


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r, or None when either side is constant (r is undefined there)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def pearson_bootstrap(
    x: np.ndarray, per_sample: np.ndarray, seed: int, n_boot: int = 1000
) -> tuple[float, float] | None:
    """95% percentile CI of ``pearson(x, mean over a resample of samples)``; ``per_sample`` is (points, samples)."""
    rng = np.random.default_rng(seed)
    n = per_sample.shape[1]
    rs = []
    for _ in range(n_boot):
        r = pearson(x, per_sample[:, rng.integers(0, n, n)].mean(axis=1))
        if r is not None:
            rs.append(r)
    if len(rs) < n_boot // 2:
        return None
    return float(np.percentile(rs, 2.5)), float(np.percentile(rs, 97.5))
