"""How many seeds x samples resolve a given ΔFID: a power analysis from a pilot run in the store.

Model (per family and comparable protocol, from the pilot's quantized cells with >= 2 seeds):

* ``within``: the variance of one seed's ΔFID from its samples (the mean of the cells' squared
  bootstrap errors ``dfid_se²``), at the pilot's sample count ``n0``; it scales as ``n0 / n``;
* ``extra``: what the seeds disagree beyond that (between-seed variance of ΔFID minus ``within``,
  floored at 0): randomness of the quantizer itself (calibration draws), which more samples do
  not reduce, only more seeds.

With ``S`` seeds of ``n`` samples the mean ΔFID has variance ``(within·n0/n + extra) / S``; ΔFID
``delta`` is resolved (a two-sided test at ``confidence`` rejects ΔFID = 0 with probability
``power``) when ``(z_conf + z_power)² · variance <= delta²``. For comparison, ``unpaired`` is
what two independent FIDs would need: the W16A16 cells' seed-to-seed variance of FID, twice
(two cells), also scaling as ``n0 / n``.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from bitscale.leaderboard.results import CELL_KEY, ok_runs, parse_precision

#: The plan never proposes fewer seeds: one more seed is what tells a seed-dependent quantizer apart.
MIN_SEEDS = 2


def pilot_variances(runs: pd.DataFrame, protocols: dict[str, dict]) -> pd.DataFrame:
    """Per (family, protocol): pilot sample count, cells used, within/extra variance of ΔFID, FP FID variance."""
    ok = ok_runs(runs)
    ok = ok[ok["source"] == "measured"]
    if ok.empty or "dfid_se" not in ok.columns:
        return pd.DataFrame()
    samples = {}
    for details in protocols.values():
        from bitscale.leaderboard.results import comparison_key

        samples[comparison_key(details)] = details.get("num_samples")
    full = ok["precision"].map(lambda p: parse_precision(p).is_full)
    rows = []
    for (family, proto), g in ok.groupby(["family", "protocol_key"], sort=True):
        gq, gf = g[~full.loc[g.index]], g[full.loc[g.index]]
        within, extra = [], []
        for _, cell in gq[gq["dfid_se"].notna()].groupby(CELL_KEY, sort=False):
            if len(cell) < 2:
                continue
            w = float((cell["dfid_se"].astype(float) ** 2).mean())
            within.append(w)
            extra.append(max(0.0, float(cell["dfid"].astype(float).var(ddof=1)) - w))
        fp_var, fp_mean = [], []
        for _, cell in gf.groupby(CELL_KEY, sort=False):
            if len(cell) >= 2:
                fp_var.append(float(cell["fid"].astype(float).var(ddof=1)))
                fp_mean.append(float(cell["fid"].astype(float).mean()))
        if not within:
            continue
        rows.append(
            {
                "family": family,
                "protocol": proto,
                "pilot_samples": samples.get(proto),
                "pilot_cells": len(within),
                "within": float(np.mean(within)),
                "worst_within": float(max(within)),
                "extra": float(np.mean(extra)),
                "fp_fid": float(np.mean(fp_mean)) if fp_mean else math.nan,
                "fp_var": float(np.mean(fp_var)) if fp_var else math.nan,
            }
        )
    return pd.DataFrame(rows)


def seeds_needed(variance_per_seed: float, delta: float, confidence: float, power: float) -> int:
    z = NormalDist().inv_cdf(0.5 + confidence / 2) + NormalDist().inv_cdf(power)
    return max(MIN_SEEDS, math.ceil(z * z * variance_per_seed / (delta * delta)))


def plan(
    pilot: pd.DataFrame,
    delta: float | None,
    relative: float | None,
    confidence: float,
    power: float,
    sample_counts: list[int] | None,
) -> pd.DataFrame:
    """Seeds needed per family and sample count (``delta`` in FID, or ``relative`` x the family's FP FID)."""
    rows = []
    for r in pilot.itertuples():
        n0 = int(r.pilot_samples) if r.pilot_samples else None
        counts = sample_counts or ([n0, 2 * n0, 4 * n0] if n0 else [])
        d = delta if delta is not None else relative * r.fp_fid
        for n in counts:
            scale = n0 / n if n0 else 1.0
            paired = seeds_needed(r.within * scale + r.extra, d, confidence, power) if d and d > 0 else None
            unpaired = (
                seeds_needed(2 * r.fp_var * scale, d, confidence, power)
                if d and d > 0 and np.isfinite(r.fp_var)
                else None
            )
            rows.append(
                {
                    "family": r.family,
                    "protocol": r.protocol[:8],
                    "pilot": f"{r.pilot_cells} cells x {n0}",
                    "delta_fid": round(d, 4) if d == d else None,
                    "samples": n,
                    "seeds_paired": paired,
                    "samples_total": paired * n if paired else None,
                    "seeds_unpaired": unpaired,
                    "sd_dfid_per_seed": round(math.sqrt(r.within * scale + r.extra), 4),
                }
            )
    return pd.DataFrame(rows)
