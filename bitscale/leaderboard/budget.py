"""Bit budgets: the best (size, precision) per method within a budget, and Pareto fronts.

Total model bits MT = N x w_bits and total compute bits CT = N x w_bits x a_bits (paper §3);
the *effective* variants use the quantizer's reported bits per weight, which count scales,
zero-points and codebooks. Scores from different sources or protocols are never compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bitscale.harness.errors import ConfigError
from bitscale.leaderboard.metrics import best_label, lower_is_better
from bitscale.leaderboard.results import cell_stats
from bitscale.leaderboard.stats import mean_ci

AXES = {"mt": "total model bits", "ct": "total compute bits"}
GROUP = ["source", "family", "protocol_key"]
_LIMITS = {"model_bits": "mt", "compute_bits": "ct"}


def axis_column(axis: str, effective: bool = False) -> str:
    """The frame column for ``axis`` ("mt" or "ct"), nominal or effective."""
    if axis not in AXES:
        raise ConfigError(f"unknown bits axis {axis!r}; choose mt (total model bits) or ct (total compute bits)")
    return f"{axis}_eff" if effective else axis


@dataclass(frozen=True)
class Budget:
    """Upper limits on total model bits and/or total compute bits (None = no limit)."""

    model_bits: float | None = None
    compute_bits: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``model_bits=2e7``, ``compute_bits=1e9`` or both, comma-separated."""
        limits: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in _LIMITS:
                raise ConfigError(f"--budget {text!r}: expected model_bits=NUMBER and/or compute_bits=NUMBER")
            try:
                limits[name] = float(value)
            except ValueError:
                raise ConfigError(f"--budget {text!r}: {value.strip()!r} is not a number (e.g. 2e7)") from None
            if not math.isfinite(limits[name]) or limits[name] <= 0:
                raise ConfigError(f"--budget {text!r}: {name} must be a positive number")
        if not limits:
            raise ConfigError(f"--budget {text!r}: give model_bits=NUMBER and/or compute_bits=NUMBER")
        return cls(**limits)

    @property
    def label(self) -> str:
        parts = [
            f"{k} <= {v:.3g}"
            for k, v in (("model_bits", self.model_bits), ("compute_bits", self.compute_bits))
            if v is not None
        ]
        return ", ".join(parts)

    def fits(self, cells: pd.DataFrame, effective: bool = False) -> pd.Series:
        ok = pd.Series(True, index=cells.index)
        if self.model_bits is not None:
            ok &= cells[axis_column("mt", effective)] <= self.model_bits
        if self.compute_bits is not None:
            ok &= cells[axis_column("ct", effective)] <= self.compute_bits
        return ok


def best_within(df: pd.DataFrame, budget: Budget, effective: bool = False, metric: str = "fid") -> pd.DataFrame:
    """Per (source, family, protocol, method): the best-scoring (size, precision) within ``budget``.

    "Best" follows ``metric``'s direction (``metrics.lower_is_better``); the score column keeps
    the name ``fid`` for the FID default and is named after the metric otherwise.

    A method with no cell inside the budget gets a row saying so, with its smallest cell.
    """
    cells = cell_stats(df)
    if cells.empty:
        return pd.DataFrame()
    inside = budget.fits(cells, effective)
    mt, ct = axis_column("mt", effective), axis_column("ct", effective)
    rows = []
    for key, grp in cells.groupby([*GROUP, "method_label"], sort=True):
        fit = grp[inside.loc[grp.index]]
        base = dict(zip([*GROUP, "method"], key))
        if fit.empty:
            small = grp.loc[grp[mt].idxmin()]
            rows.append(
                {
                    **base,
                    "size": None,
                    "precision": None,
                    "fid": np.nan,
                    "std": np.nan,
                    "seeds": 0,
                    "model_bits": np.nan,
                    "compute_bits": np.nan,
                    "candidates": 0,
                    "note": f"nothing within the budget; smallest is {small['size']} {small['precision']} "
                    f"(model_bits {small[mt]:.3g}, compute_bits {small[ct]:.3g})",
                }
            )
            continue
        best = fit.loc[best_label(fit["mean"], metric)]
        rows.append(
            {
                **base,
                "size": best["size"],
                "precision": best["precision"],
                "fid": best["mean"],
                "std": best["std"],
                "seeds": int(best["seeds"]),
                "model_bits": best[mt],
                "compute_bits": best[ct],
                "candidates": len(fit),
                "note": "",
            }
        )
    out = pd.DataFrame(rows)
    # every measured answer with its 95% CI over seeds (NaN with one seed)
    lo, hi = mean_ci(out["fid"].to_numpy(float), out["std"].to_numpy(float), out["seeds"].to_numpy(float))
    out.insert(out.columns.get_loc("std") + 1, "ci_lo", lo)
    out.insert(out.columns.get_loc("ci_lo") + 1, "ci_hi", hi)
    out.insert(0, "budget", budget.label)
    out = out.sort_values(
        [*GROUP, "fid"], ascending=[True] * len(GROUP) + [lower_is_better(metric)], na_position="last", kind="stable"
    )
    return out.reset_index(drop=True).rename(columns={"fid": metric} if metric != "fid" else {})


def pareto(df: pd.DataFrame, axis: str = "mt", effective: bool = False, metric: str = "fid") -> pd.DataFrame:
    """Every cell with ``on_front``: no other cell of its group has fewer-or-equal bits and a better score."""
    cells = cell_stats(df)
    if cells.empty:
        return cells.assign(on_front=[])
    col = axis_column(axis, effective)
    lower = lower_is_better(metric)
    parts = []
    for _, grp in cells.groupby(GROUP, sort=True):
        # In "lower is better" units: a higher-is-better score is negated, so one rule serves both.
        sign = 1.0 if lower else -1.0
        g = grp.assign(_score=sign * grp["mean"]).sort_values([col, "_score"], kind="stable")
        best_so_far = np.minimum.accumulate(g["_score"].to_numpy())
        prev = np.concatenate([[np.inf], best_so_far[:-1]])
        parts.append(g.assign(on_front=g["_score"].to_numpy() < prev, bits=g[col]).drop(columns="_score"))
    out = pd.concat(parts)
    out["axis"] = col
    return out.reset_index(drop=True)


def pareto_front(df: pd.DataFrame, axis: str = "mt", effective: bool = False, metric: str = "fid") -> pd.DataFrame:
    """Only the cells on the front, in increasing bits: the answer to "what is worth its bits"."""
    p = pareto(df, axis, effective, metric)
    if p.empty:
        return p
    cols = [*GROUP, "size", "method_label", "precision", "bits", "mean", "std", "seeds"]
    return p[p["on_front"]][cols].rename(columns={"method_label": "method", "mean": "fid"}).reset_index(drop=True)
