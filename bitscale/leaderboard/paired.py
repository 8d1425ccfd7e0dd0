"""Paired view: each quantized cell's ΔFID against its W16A16 twin, over seeds, with its interval.

The per-seed numbers come from the run (``dfid``, ``dfid_se``, ``fp_distance``: see
``bitscale.harness.evaluation.paired``); seeds combine with ``combine_seeds``. A cell whose
interval contains 0 is marked ``CI overlaps FP``: the data do not tell it from full precision.

``against=METHOD`` compares two quantized methods instead: per seed, ΔFID(cell) − ΔFID(METHOD's
cell of the same family, size, precision and protocol) = FID(cell) − FID(METHOD's cell), both
sampled with the same coupled noise. Its per-seed error is taken as sqrt(se² + se_ref²): the
two cells' bootstrap errors are positively correlated (same noise, same twin), so that error is
an upper bound and the interval is conservative, never optimistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitscale.harness.evaluation.paired import LEVEL, Combined, combine_seeds
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


def paired_rows(runs: pd.DataFrame, level: float = LEVEL, against: str | None = None) -> pd.DataFrame:
    """One row per measured quantized cell that has paired metrics (protocol version 3 and later).

    ``against``: a method label (``rtn``, ``qat+mse``); each row is then that cell minus the
    method's cell, seed by seed (module docstring), and cells without such a twin are left out.
    """
    if runs.empty or "dfid" not in runs.columns or "dfid_se" not in runs.columns:
        return pd.DataFrame(columns=COLUMNS)
    ok = ok_runs(runs)
    ok = ok[(ok["source"] == "measured") & ok["dfid"].notna() & ok["dfid_se"].notna()]
    ok = ok[~ok["precision"].map(lambda p: parse_precision(p).is_full)]
    if "fp_distance" not in ok.columns:
        ok = ok.assign(fp_distance=np.nan)
    if against is not None:
        ok = _minus_method(ok, against)
    rows = []
    for key, g in ok.groupby(CELL_KEY, sort=False, dropna=False):
        cell = dict(zip(CELL_KEY, key))
        c = combine_seeds(g["dfid"].astype(float).tolist(), g["dfid_se"].astype(float).tolist(), level)
        dist = g["fp_distance"].astype(float).mean()
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
                "vs_fp": _verdict(c, against),
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


def _verdict(c: Combined, against: str | None) -> str:
    if c.overlaps_fp:
        return "CI overlaps FP" if against is None else f"CI overlaps {against}"
    return "worse" if c.lo > 0 else "better"


def _minus_method(ok: pd.DataFrame, against: str) -> pd.DataFrame:
    """Each run of another method minus ``against``'s run of the same cell and seed (module docstring)."""
    site = ["source", "family", "size", "precision", "protocol_key", "seed"]
    ref = ok[ok["method_label"] == against].drop_duplicates(site)
    ref = ref[site + ["dfid", "dfid_se", "fp_distance"]].rename(
        columns={"dfid": "_ref_dfid", "dfid_se": "_ref_se", "fp_distance": "_ref_dist"}
    )
    both = ok[ok["method_label"] != against].merge(ref, on=site, how="inner")
    return both.assign(
        dfid=both["dfid"].astype(float) - both["_ref_dfid"].astype(float),
        dfid_se=np.hypot(both["dfid_se"].astype(float), both["_ref_se"].astype(float)),
        fp_distance=both["fp_distance"].astype(float) - both["_ref_dist"].astype(float),
    )


def paired_table(runs: pd.DataFrame, level: float = LEVEL, against: str | None = None) -> pd.DataFrame:
    """``paired_rows`` with the columns a reader needs, in display order; ``against`` renames
    the columns that then hold differences to that method."""
    table = paired_rows(runs, level, against).reindex(columns=COLUMNS)
    if against is None:
        return table
    return table.rename(
        columns={
            "dfid": f"dfid_vs_{against}",
            "dfid_ci": "ci",
            "vs_fp": f"vs_{against}",
            "fp_distance": f"dfp_distance_vs_{against}",
        }
    )
