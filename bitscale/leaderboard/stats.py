"""Small-sample statistics shared by the leaderboard views: Student-t quantiles and CIs of a mean.

scipy.stats is not imported on purpose: it costs seconds, more than every fit together.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
_Z975 = 1.959963984540054


def t_quantile(dof: int) -> float:
    """The 97.5% quantile of Student's t (the 95% two-sided CI multiplier); NaN below 1 dof."""
    if dof < 1:
        return float("nan")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975  # Cornish-Fisher expansion: accurate to 1e-4 beyond 30 dof
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def mean_ci(mean: np.ndarray, std: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% t-interval of a mean over ``count`` seeds (elementwise); NaN where count < 2."""
    mean, std, count = (np.asarray(a, dtype=float) for a in (mean, std, count))
    n = np.nan_to_num(count, nan=0.0).astype(int)
    t = np.array([t_quantile(k - 1) if k >= 2 else np.nan for k in n.ravel()], dtype=float).reshape(n.shape)
    half = t * std / np.sqrt(np.where(n > 0, n, 1))
    return mean - half, mean + half


def intervals_overlap(lo1: np.ndarray, hi1: np.ndarray, lo2: np.ndarray, hi2: np.ndarray) -> np.ndarray:
    """True where [lo1, hi1] and [lo2, hi2] overlap; False where either interval is unknown (NaN)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(lo1) <= np.asarray(hi2)) & (np.asarray(lo2) <= np.asarray(hi1))
