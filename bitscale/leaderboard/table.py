"""Shape stored runs into the paper's Table-2 layout: rows (bits, method), columns model sizes.

Scores measured under different protocols (reference set, extractor, sample count, sampler)
are never put in one column: each (family, protocol) gets its own table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bitscale.harness.precision import Precision


@dataclass
class LeaderboardTable:
    family: str
    protocol: str | None
    metric: str
    frame: pd.DataFrame  # index (precision, method), columns sizes; mean over seeds
    std: pd.DataFrame  # same shape: std over seeds (NaN with one seed)
    seeds: int


def method_label(method: str, loss: object) -> str:
    return f"{method}+{loss}" if isinstance(loss, str) and loss else method


def precision_order(label: str) -> tuple:
    """W16A16 first, then weight-only settings by falling width, then weight-activation ones."""
    p = Precision.parse(label)
    return (not p.is_full, not p.weight_only, -p.w_bits, -p.a_bits, label)


def build_tables(runs: pd.DataFrame, metric: str = "fid", size_order: dict[str, list[str]] | None = None,
                 families: list[str] | None = None) -> list[LeaderboardTable]:
    """One table per (family, protocol) from the store's ``frame()``; only ``ok`` runs count."""
    if runs.empty or metric not in runs.columns:
        return []
    ok = runs[(runs["status"] == "ok") & runs[metric].notna()].copy()
    if families:
        ok = ok[ok["family"].isin(families)]
    if ok.empty:
        return []
    ok["method_label"] = [method_label(m, l) for m, l in zip(ok["method"], ok["loss"])]
    ok["protocol_key"] = ok["protocol_fingerprint"].fillna("")
    tables = []
    for (family, protocol), grp in ok.groupby(["family", "protocol_key"], sort=True):
        agg = grp.groupby(["precision", "method_label", "size"])[metric].agg(["mean", "std", "count"])
        mean = agg["mean"].unstack("size")
        std = agg["std"].unstack("size")
        sizes = [s for s in (size_order or {}).get(family, []) if s in mean.columns]
        sizes += sorted(c for c in mean.columns if c not in sizes)
        rows = sorted(mean.index, key=lambda r: (precision_order(r[0]), r[1]))
        tables.append(LeaderboardTable(family, protocol or None, metric, mean.loc[rows, sizes],
                                       std.loc[rows, sizes], int(agg["count"].max())))
    return tables


def best_mask(table: LeaderboardTable, lower_is_better: bool = True) -> pd.DataFrame:
    """True where a cell is the best of its precision block (only blocks with several methods)."""
    f = table.frame
    mask = pd.DataFrame(False, index=f.index, columns=f.columns)
    for prec in f.index.get_level_values(0).unique():
        block = f.loc[[prec]]
        if len(block) < 2:
            continue
        best = block.min() if lower_is_better else block.max()
        for col in f.columns:
            if pd.notna(best[col]):
                mask.loc[block.index[block[col] == best[col]], col] = True
    return mask


def deltas(table: LeaderboardTable) -> pd.DataFrame:
    """Each cell minus the W16A16 row of the same size (positive = worse FID)."""
    f = table.frame
    full = [r for r in f.index if Precision.parse(r[0]).is_full]
    if not full:
        return f * float("nan")
    return f - f.loc[full[0]]
