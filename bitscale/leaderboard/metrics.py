"""Which way is better, for every metric a leaderboard view can show: the one place that knows.

Tables (title and bold), budgets, Pareto fronts, fitted optima, down-left shifts, plots and the CI
gate all ask here, so ``--metric isc`` can never be rendered lower-is-better by one view while
another treats it as higher-is-better. A metric not listed is an input error rather than a guess.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitscale.harness.errors import ConfigError

#: metric name -> True when a lower score is better.
LOWER_IS_BETTER: dict[str, bool] = {
    "fid": True,  # Fréchet distance to the reference set
    "kid": True,  # kernel inception distance (older stores)
    "isc": False,  # inception score
}

#: How each metric is named in titles and axis labels.
DISPLAY_NAME: dict[str, str] = {"fid": "FID", "kid": "KID", "isc": "IS"}


def lower_is_better(metric: str) -> bool:
    """True when a lower ``metric`` is better; ConfigError for a metric nobody declared."""
    try:
        return LOWER_IS_BETTER[metric.lower()]
    except KeyError:
        known = ", ".join(sorted(LOWER_IS_BETTER))
        raise ConfigError(
            f"metric {metric!r} has no declared direction (known: {known}); add it to bitscale/leaderboard/metrics.py"
        ) from None


def direction_words(metric: str) -> str:
    """``"lower is better"`` or ``"higher is better"``."""
    return "lower is better" if lower_is_better(metric) else "higher is better"


def display_name(metric: str) -> str:
    """``FID``, ``IS``... for titles and axis labels."""
    return DISPLAY_NAME.get(metric.lower(), metric.upper())


def best_value(values: np.ndarray, metric: str, axis: int | None = None) -> np.ndarray:
    """The best of ``values`` (NaN ignored) along ``axis``."""
    return np.nanmin(values, axis=axis) if lower_is_better(metric) else np.nanmax(values, axis=axis)


def best_label(values: pd.Series, metric: str):
    """Index label of the best value of ``values``."""
    return values.idxmin() if lower_is_better(metric) else values.idxmax()


def improvement(new: float | np.ndarray, old: float | np.ndarray, metric: str):
    """How much better ``new`` is than ``old`` (positive = better), in the metric's units."""
    return (old - new) if lower_is_better(metric) else (new - old)
