"""Paired evaluation: a quantized cell against its W16A16 twin (same labels, same seed, same noise).

Two independent FIDs of the same model differ by the seed-to-seed noise (several percent at a
few hundred samples), which hides the few-percent effects of quantization. A quantized cell and
its twin draw sample ``i`` with the same label and -- through the coupled noise of
``bitscale.harness.noise`` (token models) or the same initial noise (diffusion) -- the same
randomness, so most of that noise is common to both and cancels in the difference:

* ``dfid``: FID(quantized) - FID(twin), with a **paired, label-stratified bootstrap** over samples
  (each replicate resamples sample indices within each class and uses the same indices for both
  cells) giving its standard error ``dfid_se`` and the interval ``dfid_lo``/``dfid_hi``
  (``dfid ± z·se``; a normal interval rather than percentiles because FID's small-sample bias
  shifts bootstrap replicates drawn with duplicates, while their spread is what we need);
* ``fp_distance``: the mean feature-space distance between sample ``i`` of the quantized cell and
  sample ``i`` of its twin, divided by the mean distance between twin samples of the same class
  drawn with *different* noise: 0 = the quantized model draws the same images, ~1 = as different
  as unrelated samples of the right class. It needs no reference set and has far less variance.

Over seeds (``combine_seeds``) each seed is another independent set of samples, so the seeds'
standard errors pool (``sqrt(mean se² / n)``). When the seeds disagree by more than those errors
allow (a quantizer whose calibration draw depends on the seed), the between-seed spread is used
instead, with a Student-t quantile: the interval then covers the quantizer's randomness too.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: Bootstrap replicates per cell: the standard error to ~5%, about a second of CPU at 500 samples.
BOOTSTRAP = 200
LEVEL = 0.95
PAIRED_METRICS = ("dfid", "dfid_lo", "dfid_hi", "dfid_se", "fp_distance")


class Frechet:
    """FID against fixed reference statistics, fast enough for a bootstrap.

    tr sqrt(Σ Σ_ref) = Σ sqrt(eig(A Σ A)) with A = Σ_ref^½ computed once: one symmetric eigen-
    decomposition per score instead of a general matrix square root (the same number).
    """

    def __init__(self, mu_ref: np.ndarray, sigma_ref: np.ndarray) -> None:
        self.mu = np.asarray(mu_ref, dtype=np.float64)
        sigma_ref = np.asarray(sigma_ref, dtype=np.float64)
        w, v = np.linalg.eigh(sigma_ref)
        self.sqrt_ref = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        self.trace_ref = float(np.trace(sigma_ref))

    def from_stats(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        m = self.sqrt_ref @ sigma @ self.sqrt_ref
        root = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
        d = mu - self.mu
        return float(d @ d + np.trace(sigma) + self.trace_ref - 2 * root)

    def __call__(self, feats: np.ndarray) -> float:
        f = np.asarray(feats, dtype=np.float64)
        return self.from_stats(f.mean(0), np.cov(f, rowvar=False))


@dataclass(frozen=True)
class PairedResult:
    dfid: float
    se: float
    lo: float
    hi: float

    def metrics(self) -> dict[str, float]:
        return {"dfid": self.dfid, "dfid_se": self.se, "dfid_lo": self.lo, "dfid_hi": self.hi}


def _strata(labels: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def paired_bootstrap(
    feats_q: np.ndarray,
    feats_fp: np.ndarray,
    labels: np.ndarray,
    fid: Frechet,
    replicates: int = BOOTSTRAP,
    seed: int = 0,
    level: float = LEVEL,
) -> PairedResult:
    """ΔFID = FID(q) − FID(fp) and its paired, label-stratified bootstrap interval (module docstring)."""
    feats_q, feats_fp, labels = np.asarray(feats_q), np.asarray(feats_fp), np.asarray(labels)
    if feats_q.shape != feats_fp.shape or len(labels) != len(feats_q):
        raise ValueError(f"paired features must match: {feats_q.shape} vs {feats_fp.shape}, {len(labels)} labels")
    if replicates < 2:
        raise ValueError(f"a bootstrap needs at least 2 replicates, got {replicates}")
    dfid = fid(feats_q) - fid(feats_fp)
    rng = np.random.default_rng(seed)
    strata = _strata(labels)
    reps = np.empty(replicates)
    for b in range(replicates):
        idx = np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata])
        reps[b] = fid(feats_q[idx]) - fid(feats_fp[idx])
    se = float(reps.std(ddof=1))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return PairedResult(float(dfid), se, float(dfid - z * se), float(dfid + z * se))


def fp_distance(feats_q: np.ndarray, feats_fp: np.ndarray, labels: np.ndarray) -> float:
    """Mean paired feature distance over the mean distance between same-class twin samples of other noise."""
    feats_q, feats_fp, labels = (np.asarray(a, dtype=np.float64) for a in (feats_q, feats_fp, labels))
    paired = np.linalg.norm(feats_q - feats_fp, axis=1).mean()
    unpaired = []
    for s in _strata(labels):
        if len(s) > 1:  # each sample against the next one of its class: same label, other noise
            unpaired.append(np.linalg.norm(feats_fp[s] - feats_fp[np.roll(s, 1)], axis=1))
    if not unpaired:
        raise ValueError("fp_distance needs two samples of at least one class")
    scale = np.concatenate(unpaired).mean()
    return float(paired / scale) if scale > 0 else 0.0


def paired_metrics(
    feats_q: np.ndarray,
    feats_fp: np.ndarray,
    labels: np.ndarray,
    fid: Frechet,
    seed: int = 0,
    replicates: int = BOOTSTRAP,
) -> dict[str, float]:
    """The metrics a quantized cell stores about its twin (``PAIRED_METRICS``)."""
    out = paired_bootstrap(feats_q, feats_fp, labels, fid, replicates, seed).metrics()
    out["fp_distance"] = fp_distance(feats_q, feats_fp, labels)
    return out


@dataclass(frozen=True)
class Combined:
    """ΔFID over seeds: the mean, its standard error and interval, and which variance was used."""

    mean: float
    se: float
    lo: float
    hi: float
    seeds: int
    source: str  # "samples" (pooled bootstrap errors) or "seeds" (between-seed spread, Student t)

    @property
    def overlaps_fp(self) -> bool:
        """The interval contains 0: not resolved from full precision."""
        return self.lo <= 0 <= self.hi


def combine_seeds(dfids: list[float], ses: list[float], level: float = LEVEL) -> Combined:
    """Mean ΔFID over seeds with a ``level`` interval (module docstring: which variance, and why)."""
    from scipy import stats

    n = len(dfids)
    if n == 0 or len(ses) != n:
        raise ValueError(f"need one standard error per seed's dfid, got {n} dfids and {len(ses)} errors")
    d, s = np.asarray(dfids, dtype=np.float64), np.asarray(ses, dtype=np.float64)
    mean, within = float(d.mean()), float((s**2).mean())
    source, var, q = "samples", within / n, NormalDist().inv_cdf(0.5 + level / 2)
    if n >= 2:
        between = float(d.var(ddof=1))
        # Is the seeds' spread larger than their sampling errors explain (chi-square test at the level)?
        if between * (n - 1) > within * stats.chi2.ppf(level, n - 1):
            source, var, q = "seeds", between / n, float(stats.t.ppf(0.5 + level / 2, n - 1))
    se = float(np.sqrt(var))
    return Combined(mean, se, mean - q * se, mean + q * se, n, source)
