"""Shared helpers for the benchmarks: a machine-speed reference and result printing.

Benchmarks report absolute seconds against the issue's targets and, per STYLE.md, the ratio
to a reference workload timed in the same run, so numbers from a loaded or slower machine
can still be compared.
"""

from __future__ import annotations

import time

import numpy as np


def reference_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` timings of a fixed mixed workload (numpy sort + pandas groupby + one figure)."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    data = rng.random(1_000_000)
    frame = pd.DataFrame({"k": rng.integers(0, 1000, 200_000), "v": rng.random(200_000)})
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.sort(data)
        frame.groupby("k")["v"].agg(["mean", "std"])
        fig = Figure(figsize=(5, 4))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.plot(np.arange(100), np.arange(100) ** 0.5, "o-")
        fig.canvas.print_png(__import__("io").BytesIO())
        best = min(best, time.perf_counter() - t)
    return best


def report(name: str, seconds: float, target: float, reference: float, extra: str = "") -> bool:
    """Print one result line; True when within the target."""
    ok = seconds <= target
    print(
        f"{name}: {seconds:.2f} s (target < {target:g} s: {'OK' if ok else 'OVER'}; "
        f"{seconds / reference:.1f}x the reference workload of {reference:.3f} s){extra}"
    )
    return ok
