"""The CI regression gate: compare the store's current scores with a baseline, cell by cell.

For each baseline cell the current mean over its seeds is compared with the baseline mean.
Both means carry seed noise, so the standard deviation of their difference is
``noise.std * sqrt(1/n_baseline + 1/n_current)``; a cell regresses when its score got worse
by more than ``sigma`` of those (``sigma`` from the command line, else the baseline's,
default 3), or by more than an explicit ``--threshold`` when one is given.

Outcomes, reported separately: regression, improvement, unchanged, failed (a seed whose run
failed and that has no score: a failed seed fails its cell, even when other seeds scored),
missing (no run; the reason says whether the cell exists under another protocol), new (in the
store, not in the baseline). A check that compared no cell at all does not pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from bitscale.leaderboard.baseline import Baseline, cell_key, changed_artifacts, measured_cells
from bitscale.leaderboard.metrics import LOWER_IS_BETTER, lower_is_better  # noqa: F401  (re-exported)
from bitscale.leaderboard.results import Results


@dataclass
class CellCheck:
    key: str
    status: str  # regression | improvement | ok | failed | missing | new
    baseline: float | None = None
    current: float | None = None
    delta: float | None = None
    threshold: float | None = None
    z: float | None = None
    seeds_baseline: int = 0
    seeds_current: int = 0
    note: str = ""
    known_failure: bool = False  # failed in the baseline too: reported, not fatal


@dataclass
class CheckResult:
    cells: list[CellCheck]
    sigma: float
    metric: str
    strict: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    changed_artifacts: list[str] = field(default_factory=list)  # shipped weights that differ from the baseline's

    def of(self, status: str) -> list[CellCheck]:
        return [c for c in self.cells if c.status == status]

    @property
    def compared(self) -> int:
        """Cells whose score was compared with the baseline (regressed, improved or unchanged)."""
        return sum(c.status in ("regression", "improvement", "ok") for c in self.cells)

    @property
    def exit_code(self) -> int:
        """1 on a regression, a newly failed cell, no compared cell at all (and a missing cell
        under ``strict``), else 0."""
        new_failures = [c for c in self.of("failed") if not c.known_failure]
        bad = self.of("regression") or new_failures or (self.strict and self.of("missing")) or not self.compared
        return 1 if bad else 0

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "sigma": self.sigma,
            "exit_code": self.exit_code,
            "counts": self.counts,
            "changed_artifacts": self.changed_artifacts,
            "cells": [asdict(c) for c in self.cells],
        }


def check(
    baseline: Baseline,
    results: Results,
    sigma: float | None = None,
    threshold: float | None = None,
    floor: float = 0.0,
    strict: bool = False,
    artifacts: dict[str, str] | None = None,
) -> CheckResult:
    """Compare ``results`` (the store now) with ``baseline``; see the module docstring.

    ``artifacts`` are the shipped weights in use now ({name: sha256}); those that differ from the
    baseline's explain cells measured under another protocol or on other weights.
    """
    sigma = baseline.sigma if sigma is None else sigma
    changed = changed_artifacts(baseline, artifacts or {})
    weights_note = (
        (
            f"the shipped weights changed since the baseline ({', '.join(changed)}): scores are not "
            "comparable; export a new baseline"
        )
        if changed
        else ""
    )
    lower = lower_is_better(baseline.metric)
    ok = measured_cells(results)
    # key -> {seed: score}; plain dicts, because a pandas group per cell costs a millisecond
    # each and a baseline has thousands of cells (prepare() already kept one run per seed).
    current: dict[str, dict[int, float]] = {}
    for key, seed, value in zip(ok["key"], ok["seed"], ok["value"]):
        current.setdefault(key, {})[int(seed)] = float(value)
    runs = results.runs
    failed_runs = runs[(runs["status"] == "failed") & (runs["source"] == "measured")]
    scored: dict[tuple, set[int]] = {}  # label -> seeds with a score, under any protocol
    by_label: dict[tuple, set[str]] = {}
    for f, s, m, p, k, seed in zip(
        ok["family"], ok["size"], ok["method_label"], ok["precision"], ok["protocol_key"], ok["seed"]
    ):
        by_label.setdefault((f, s, m, p), set()).add(k)
        scored.setdefault((f, s, m, p), set()).add(int(seed))
    # label -> {seed: last error line} of seeds that failed and have no score: each fails its cell.
    failed_seeds: dict[tuple, dict[int, str]] = {}
    for f, s, m, p, seed, e in zip(
        failed_runs["family"],
        failed_runs["size"],
        failed_runs["method_label"],
        failed_runs["precision"],
        failed_runs["seed"],
        failed_runs["error_line"] if "error_line" in failed_runs.columns else [""] * len(failed_runs),
    ):
        if int(seed) not in scored.get((f, s, m, p), ()):
            failed_seeds.setdefault((f, s, m, p), {})[int(seed)] = e if isinstance(e, str) else ""
    known_failures = set(baseline.failed)

    out: list[CellCheck] = []
    reported: set[tuple] = set()  # labels whose failure is reported
    for cell in baseline.cells:
        label = (cell.family, cell.size, cell.method, cell.precision)
        cur = current.get(cell.key)
        if label in failed_seeds:
            reported.add(label)
            out.append(
                CellCheck(
                    cell.key,
                    "failed",
                    baseline=cell.mean,
                    current=sum(cur.values()) / len(cur) if cur else None,
                    seeds_baseline=len(cell.values),
                    seeds_current=len(cur or {}),
                    note=_failure_note(failed_seeds[label], cur),
                    known_failure=cell_key(*label, "") in known_failures,
                )
            )
            continue
        if cur is None:
            if label in by_label:
                others = ", ".join(sorted(k[:8] for k in by_label[label]))
                out.append(
                    CellCheck(
                        cell.key,
                        "missing",
                        baseline=cell.mean,
                        seeds_baseline=len(cell.values),
                        note=weights_note
                        or f"measured only under another protocol ({others}): scores "
                        "are not comparable; export a new baseline if the change is intended",
                    )
                )
            else:
                out.append(
                    CellCheck(
                        cell.key,
                        "missing",
                        baseline=cell.mean,
                        seeds_baseline=len(cell.values),
                        note="not in the store: was the grid run (bitscale run ...)?",
                    )
                )
            continue
        n_b, n_c = len(cell.values), len(cur)
        mean = sum(cur.values()) / n_c
        delta = mean - cell.mean
        sd = cell.noise.std * math.sqrt(1 / n_b + 1 / n_c)
        limit = threshold if threshold is not None else max(sigma * sd, floor)
        worse = delta if lower else -delta
        z = worse / sd if sd > 0 else (math.inf if worse > 0 else (-math.inf if worse < 0 else 0.0))
        status = "regression" if worse > limit else ("improvement" if worse < -limit else "ok")
        now = sorted(cur)
        seeds_note = (
            ""
            if set(cell.values) == {str(s) for s in now}
            else f"seeds differ (baseline {','.join(sorted(cell.values))}, now {','.join(map(str, now))})"
        )
        note = "; ".join(n for n in (seeds_note, weights_note) if n)
        out.append(CellCheck(cell.key, status, cell.mean, mean, delta, limit, z, n_b, n_c, note))

    known = {c.key for c in baseline.cells}
    for key, cur in current.items():
        if key not in known:
            out.append(
                CellCheck(
                    key, "new", current=sum(cur.values()) / len(cur), seeds_current=len(cur), note="not in the baseline"
                )
            )
    # Failures of cells the baseline does not know.
    for label, seeds in failed_seeds.items():
        if label not in reported:
            key = cell_key(*label, "")
            known_failure = key in known_failures
            note = _failure_note(seeds, None) + (" (already failed in the baseline)" if known_failure else "")
            out.append(CellCheck(key, "failed", note=note, known_failure=known_failure))
    counts = pd.Series([c.status for c in out]).value_counts().to_dict() if out else {}
    return CheckResult(out, sigma, baseline.metric, strict, {k: int(v) for k, v in counts.items()}, changed)


def _failure_note(seeds: dict[int, str], scored: dict[int, float] | None) -> str:
    """``seed 1 failed: ValueError: ...; seeds 0 scored``: which seeds failed, why, which did not."""
    errors = [e for e in seeds.values() if e]
    text = (
        f"seed{'s' * (len(seeds) > 1)} {','.join(map(str, sorted(seeds)))} failed: "
        f"{errors[0] if errors else 'traceback in the store'}"
    )
    if scored:
        text += f"; seed{'s' * (len(scored) > 1)} {','.join(map(str, sorted(scored)))} scored"
    return text
