"""Paired view: each quantized cell's ΔFID against its W16A16 twin, over seeds, with its interval.

The per-seed numbers come from the run (``dfid``, ``dfid_se``, ``fp_distance``: see
``bitscale.harness.evaluation.paired``); seeds combine with ``combine_seeds``. A cell whose
interval contains 0 is marked ``CI overlaps FP``: the data do not tell it from full precision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitscale.harness.evaluation.paired import LEVEL, combine_seeds
from bitscale.leaderboard.results import CELL_KEY, ok_runs, parse_precision
from bitscale.leaderboard.table import precision_order

COLUMNS = [
    "family",
    "size",
    "precision",
    "method",
    "seeds",
    "fid",
    "dfid",
    "dfid_ci",
    "vs_fp",
    "fp_distance",
    "ci_from",
    "protocol",
]


def paired_rows(runs: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """One row per measured quantized cell that has paired metrics (protocol version 3 and later)."""
    if runs.empty or "dfid" not in runs.columns or "dfid_se" not in runs.columns:
        return pd.DataFrame(columns=COLUMNS)
    ok = ok_runs(runs)
    ok = ok[(ok["source"] == "measured") & ok["dfid"].notna() & ok["dfid_se"].notna()]
    ok = ok[~ok["precision"].map(lambda p: parse_precision(p).is_full)]
    rows = []
    for key, g in ok.groupby(CELL_KEY, sort=False, dropna=False):
        cell = dict(zip(CELL_KEY, key))
        c = combine_seeds(g["dfid"].astype(float).tolist(), g["dfid_se"].astype(float).tolist(), level)
        dist = g["fp_distance"].astype(float).mean() if "fp_distance" in g else np.nan
        rows.append(
            {
                "family": cell["family"],
                "size": cell["size"],
                "precision": cell["precision"],
                "method": cell["method_label"],
                "seeds": c.seeds,
                "fid": float(g["fid"].astype(float).mean()),
                "dfid": c.mean,
                "dfid_lo": c.lo,
                "dfid_hi": c.hi,
                "dfid_ci": f"[{c.lo:+.3g}, {c.hi:+.3g}]",
                "vs_fp": "CI overlaps FP" if c.overlaps_fp else ("worse" if c.lo > 0 else "better"),
                "fp_distance": dist,
                "ci_from": c.source,
                "protocol": cell["protocol_key"],
            }
        )
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.DataFrame(rows)
    order = df["precision"].map(precision_order)
    return (
        df.assign(_o=order)
        .sort_values(["family", "protocol", "_o", "method", "size"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def paired_table(runs: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """``paired_rows`` with the columns a reader needs, in display order."""
    return paired_rows(runs, level).reindex(columns=COLUMNS)
