"""The paper's Fig. 1 question, answered per family with intervals: does quantization pay at equal bits?

Three readings, side by side, for every (family, method, quantized precision):

* **Equal bits** (the paper's view): does the quantized curve sit below-left of the W16A16 curve
  at equal total model bits (MT) and total compute bits (CT)? From ``fit.shift_vs_full``: the
  mean change of the fitted curves over the bits both were measured on, with its bootstrap CI.
* **Equal size** (what makes the first reading mean something): how much worse is the quantized
  model than its own W16A16 twin of the same size? Dividing the bits by 16/w all but guarantees
  a down-left shift when quantization is nearly lossless, so a shift with ~0% degradation says
  "quantization is cheap here", not "this family scales better under quantization".
* **Within a budget**: the best measured cell (any precision of the method, or W16A16) whose MT
  fits each budget; by default the budgets are the W16A16 models' own MT, so each row answers
  "for the bits of the full-precision dX, what is best?".

Every number carries its 95% interval; a reading whose interval spans zero is "not resolved".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitscale.leaderboard.budget import Budget, axis_column
from bitscale.leaderboard.fit import CONFIDENCE
from bitscale.leaderboard.metrics import best_label, lower_is_better
from bitscale.leaderboard.results import analysis_rows, cell_stats, parse_precision
from bitscale.leaderboard.stats import intervals_overlap, mean_ci

GROUP = ["source", "family", "protocol_key"]


def degradation_at_equal_size(runs: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (source, family, protocol, method, precision): the score change vs W16A16 of the same size.

    ``change_pct`` averages, over the sizes measured at both precisions, the relative change of
    the mean over seeds (positive = higher score; for FID, worse). The 95% CI is a bootstrap:
    seeds resampled at each size, paired with the W16A16 twin's same seed where both have it
    (same labels and noise, so most of the sampling noise cancels), independently otherwise.
    """
    rows = analysis_rows(runs)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(_full=rows["precision"].map(lambda p: parse_precision(p).is_full))
    rng = np.random.default_rng(seed)
    out = []
    for key, grp in rows.groupby(GROUP, sort=True):
        ref = grp[grp["_full"]]
        if ref.empty:
            continue
        ref_by_size = {s: dict(zip(g["seed"], g["value"].astype(float))) for s, g in ref.groupby("size")}
        for (method, prec), q in grp[~grp["_full"]].groupby(["method_label", "precision"], sort=True):
            per_size = []
            for size, g in q.groupby("size"):
                if size not in ref_by_size:
                    continue
                per_size.append((dict(zip(g["seed"], g["value"].astype(float))), ref_by_size[size]))
            if not per_size:
                continue
            point, lo, hi, paired, seeds = _relative_change(per_size, n_boot, rng)
            out.append(
                {
                    "source": key[0],
                    "family": key[1],
                    "protocol": key[2],
                    "method": method,
                    "precision": prec,
                    "sizes": len(per_size),
                    "seeds": seeds,
                    "change_pct": point,
                    "change_lo": lo,
                    "change_hi": hi,
                    "paired": paired,
                }
            )
    return pd.DataFrame(out)


def _relative_change(
    per_size: list[tuple[dict, dict]], n_boot: int, rng: np.random.Generator
) -> tuple[float, float, float, bool, int]:
    """Mean over sizes of (mean quantized / mean W16A16 - 1) in percent, with a bootstrap CI."""
    point = 100 * float(np.mean([np.mean(list(q.values())) / np.mean(list(f.values())) - 1 for q, f in per_size]))
    paired = all(len(set(q) & set(f)) >= 2 for q, f in per_size)
    seeds = min(len(q) for q, _ in per_size)
    if min(min(len(q), len(f)) for q, f in per_size) < 2 or n_boot <= 0:
        return point, np.nan, np.nan, paired, seeds
    boot = np.zeros(n_boot)
    for q, f in per_size:
        if paired:
            common = sorted(set(q) & set(f))
            qv, fv = np.array([q[s] for s in common]), np.array([f[s] for s in common])
            idx = rng.integers(0, len(common), size=(n_boot, len(common)))
            qm, fm = qv[idx].mean(axis=1), fv[idx].mean(axis=1)
        else:
            qv, fv = np.array(list(q.values())), np.array(list(f.values()))
            qm = qv[rng.integers(0, len(qv), size=(n_boot, len(qv)))].mean(axis=1)
            fm = fv[rng.integers(0, len(fv), size=(n_boot, len(fv)))].mean(axis=1)
        boot += qm / fm - 1
    boot *= 100 / len(per_size)
    lo, hi = np.percentile(boot, [(1 - CONFIDENCE) / 2 * 100, (1 + CONFIDENCE) / 2 * 100])
    return point, float(lo), float(hi), paired, seeds


def _interval_word(lo: float, hi: float, below: str, above: str) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no CI (one seed)"
    if hi < 0:
        return below
    if lo > 0:
        return above
    return "not resolved"


def equal_bits_and_size(
    runs: pd.DataFrame, shifts: pd.DataFrame, metric: str = "fid", effective: bool = False, n_boot: int = 1000
) -> pd.DataFrame:
    """One row per (family, method, quantized precision): shift at equal MT and CT, change at equal size."""
    deg = degradation_at_equal_size(runs, n_boot)
    if deg.empty:
        return deg
    lower = lower_is_better(metric)
    out = deg.rename(
        columns={"change_pct": "equal_size_pct", "change_lo": "equal_size_lo", "change_hi": "equal_size_hi"}
    )
    better, worse = ("better than W16A16", "worse than W16A16")
    out["equal_size"] = [
        _interval_word(lo, hi, better if lower else worse, worse if lower else better)
        for lo, hi in zip(out["equal_size_lo"], out["equal_size_hi"])
    ]
    for axis in ("mt", "ct"):
        col = axis_column(axis, effective)
        sh = shifts[shifts["axis"] == col] if len(shifts) else shifts
        index = {(r.source, r.family, r.protocol, r.method, r.precision): r for r in sh.itertuples()} if len(sh) else {}
        pct, lo, hi, verdict = [], [], [], []
        for r in out.itertuples():
            s = index.get((r.source, r.family, r.protocol, r.method, r.precision))
            pct.append(np.nan if s is None else s.shift_pct)
            lo.append(np.nan if s is None else s.shift_lo)
            hi.append(np.nan if s is None else s.shift_hi)
            verdict.append("no fit (fewer than 2 sizes)" if s is None else s.verdict)
        out[f"{axis}_shift_pct"], out[f"{axis}_shift_lo"], out[f"{axis}_shift_hi"] = pct, lo, hi
        out[f"equal_{axis}"] = verdict
    out["reading"] = [_reading(r) for r in out.itertuples()]
    cols = [
        "source",
        "family",
        "protocol",
        "method",
        "precision",
        "sizes",
        "seeds",
        "equal_mt",
        "mt_shift_pct",
        "mt_shift_lo",
        "mt_shift_hi",
        "equal_ct",
        "ct_shift_pct",
        "ct_shift_lo",
        "ct_shift_hi",
        "equal_size",
        "equal_size_pct",
        "equal_size_lo",
        "equal_size_hi",
        "paired",
        "reading",
    ]
    return out[cols]


def _reading(r) -> str:
    """What the pair of readings says, in one line."""
    down_left = str(r.equal_mt).startswith("down-left")
    if not down_left:
        return f"at equal MT: {r.equal_mt}"
    if r.equal_size == "not resolved":
        return (
            "below-left at equal MT, but no loss at equal size is resolved: the shift is mostly the "
            "bits divided by 16/w (quantization is nearly free here)"
        )
    if r.equal_size.startswith("worse"):
        return "below-left at equal MT despite a resolved loss at equal size: quantization pays at equal bits"
    return f"below-left at equal MT; at equal size: {r.equal_size}"


def default_budgets(runs: pd.DataFrame, effective: bool = False) -> pd.DataFrame:
    """The MT of every W16A16 model: (source, family, protocol, size, bits)."""
    cells = cell_stats(runs)
    if cells.empty:
        return pd.DataFrame()
    full = cells[cells["precision"].map(lambda p: parse_precision(p).is_full)]
    col = axis_column("mt", effective)
    return full[[*GROUP, "size", col]].rename(columns={col: "bits"}).drop_duplicates()


def best_within_budgets(
    runs: pd.DataFrame, budgets: list[Budget] | None = None, metric: str = "fid", effective: bool = False
) -> pd.DataFrame:
    """Per (family, method, budget): the best measured cell of the method or W16A16 inside the budget.

    With no ``budgets``, each W16A16 size's own MT is a budget. ``resolved`` says whether the
    best cell's 95% CI clears the best cell of every other precision inside the budget.
    """
    cells = cell_stats(runs)
    if cells.empty:
        return pd.DataFrame()
    lo, hi = mean_ci(cells["mean"].to_numpy(float), cells["std"].to_numpy(float), cells["seeds"].to_numpy(float))
    cells = cells.assign(ci_lo=lo, ci_hi=hi, _full=cells["precision"].map(lambda p: parse_precision(p).is_full))
    mt = axis_column("mt", effective)
    out = []
    for key, grp in cells.groupby(GROUP, sort=True):
        if budgets:
            limits = [(b.label, b.fits(grp, effective)) for b in budgets]
        else:
            full = grp[grp["_full"]].sort_values(mt)
            limits = [(f"model_bits <= {b:.3g} (W16A16 {s})", grp[mt] <= b) for s, b in zip(full["size"], full[mt])]
        for method in sorted(set(grp.loc[~grp["_full"], "method_label"])):
            mine = grp[(grp["method_label"] == method) | grp["_full"]]
            for label, inside in limits:
                sel = mine[inside.reindex(mine.index, fill_value=False)]
                if sel.empty:
                    continue
                top = sel.loc[best_label(sel["mean"], metric)]
                others = sel[sel["precision"] != top["precision"]]
                rival = others.loc[best_label(others["mean"], metric)] if len(others) else None
                resolved = None
                if rival is not None and np.isfinite(top["ci_lo"]) and np.isfinite(rival["ci_lo"]):
                    resolved = not bool(intervals_overlap(top["ci_lo"], top["ci_hi"], rival["ci_lo"], rival["ci_hi"]))
                out.append(
                    {
                        "source": key[0],
                        "family": key[1],
                        "protocol": key[2],
                        "method": method,
                        "budget": label,
                        "best_size": top["size"],
                        "best_precision": top["precision"],
                        "best": top["mean"],
                        "best_lo": top["ci_lo"],
                        "best_hi": top["ci_hi"],
                        "runner_up": ""
                        if rival is None
                        else f"{rival['size']} {rival['precision']} {rival['mean']:.4g}",
                        "resolved": resolved,
                    }
                )
    return pd.DataFrame(out)
