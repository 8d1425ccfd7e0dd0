"""The CI regression gate: compare the store's current scores with a baseline, cell by cell.

For each baseline cell the current mean over its seeds is compared with the baseline mean.
Both means carry seed noise, so the standard deviation of their difference is
``noise.std * sqrt(1/n_baseline + 1/n_current)``; a cell regresses when its score got worse
by more than ``sigma`` of those (``sigma`` from the command line, else the baseline's,
default 3), or by more than an explicit ``--threshold`` when one is given.

Outcomes, reported separately: regression, improvement, unchanged, failed (a failed run and
no score), missing (no run; the reason says whether the cell exists under another protocol),
new (in the store, not in the baseline).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from bitscale.leaderboard.baseline import Baseline, cell_key, changed_artifacts, measured_cells
from bitscale.leaderboard.results import Results

LOWER_IS_BETTER = {"fid": True, "kid": True, "isc": False}


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
    def exit_code(self) -> int:
        """1 on a regression or a newly failed cell (and a missing one under ``strict``), else 0."""
        new_failures = [c for c in self.of("failed") if not c.known_failure]
        bad = self.of("regression") or new_failures or (self.strict and self.of("missing"))
        return 1 if bad else 0

    def as_dict(self) -> dict:
        return {"metric": self.metric, "sigma": self.sigma, "exit_code": self.exit_code, "counts": self.counts,
                "changed_artifacts": self.changed_artifacts, "cells": [asdict(c) for c in self.cells]}


def check(baseline: Baseline, results: Results, sigma: float | None = None, threshold: float | None = None,
          floor: float = 0.0, strict: bool = False, artifacts: dict[str, str] | None = None) -> CheckResult:
    """Compare ``results`` (the store now) with ``baseline``; see the module docstring.

    ``artifacts`` are the shipped weights in use now ({name: sha256}); those that differ from the
    baseline's explain cells measured under another protocol or on other weights.
    """
    sigma = baseline.sigma if sigma is None else sigma
    changed = changed_artifacts(baseline, artifacts or {})
    weights_note = (f"the shipped weights changed since the baseline ({', '.join(changed)}): scores are not "
                    "comparable; export a new baseline") if changed else ""
    lower = LOWER_IS_BETTER.get(baseline.metric, True)
    ok = measured_cells(results)
    # key -> {seed: score}; plain dicts, because a pandas group per cell costs a millisecond
    # each and a baseline has thousands of cells (prepare() already kept one run per seed).
    current: dict[str, dict[int, float]] = {}
    for key, seed, value in zip(ok["key"], ok["seed"], ok["value"]):
        current.setdefault(key, {})[int(seed)] = float(value)
    runs = results.runs
    failed_runs = runs[(runs["status"] == "failed") & (runs["source"] == "measured")]
    failed_labels = {(f, s, m, p): e for f, s, m, p, e in zip(
        failed_runs["family"], failed_runs["size"], failed_runs["method_label"], failed_runs["precision"],
        failed_runs["error_line"] if "error_line" in failed_runs.columns else [""] * len(failed_runs))}
    by_label: dict[tuple, set[str]] = {}
    for f, s, m, p, k in zip(ok["family"], ok["size"], ok["method_label"], ok["precision"], ok["protocol_key"]):
        by_label.setdefault((f, s, m, p), set()).add(k)

    out: list[CellCheck] = []
    for cell in baseline.cells:
        label = (cell.family, cell.size, cell.method, cell.precision)
        cur = current.get(cell.key)
        if cur is None:
            if label in failed_labels:
                out.append(CellCheck(cell.key, "failed", baseline=cell.mean, seeds_baseline=len(cell.values),
                                     note=failed_labels[label] or "failed (traceback in the store)"))
            elif label in by_label:
                others = ", ".join(sorted(k[:8] for k in by_label[label]))
                out.append(CellCheck(cell.key, "missing", baseline=cell.mean, seeds_baseline=len(cell.values),
                                     note=weights_note or f"measured only under another protocol ({others}): scores "
                                          "are not comparable; export a new baseline if the change is intended"))
            else:
                out.append(CellCheck(cell.key, "missing", baseline=cell.mean, seeds_baseline=len(cell.values),
                                     note="not in the store: was the grid run (bitscale run ...)?"))
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
        seeds_note = "" if set(cell.values) == {str(s) for s in now} else \
            f"seeds differ (baseline {','.join(sorted(cell.values))}, now {','.join(map(str, now))})"
        note = "; ".join(n for n in (seeds_note, weights_note) if n)
        out.append(CellCheck(cell.key, status, cell.mean, mean, delta, limit, z, n_b, n_c, note))

    known = {c.key for c in baseline.cells}
    for key, cur in current.items():
        if key not in known:
            out.append(CellCheck(key, "new", current=sum(cur.values()) / len(cur), seeds_current=len(cur),
                                 note="not in the baseline"))
    # Failures of cells the baseline does not know, and that have no score either.
    known_labels = {(c.family, c.size, c.method, c.precision) for c in baseline.cells} | set(by_label)
    for label, err in failed_labels.items():
        if label not in known_labels:
            key = cell_key(*label, "")
            known_failure = key in set(baseline.failed)
            note = (err or "failed (traceback in the store)") + (" (already failed in the baseline)"
                                                                 if known_failure else "")
            out.append(CellCheck(key, "failed", note=note, known_failure=known_failure))
    counts = pd.Series([c.status for c in out]).value_counts().to_dict() if out else {}
    return CheckResult(out, sigma, baseline.metric, strict, {k: int(v) for k, v in counts.items()}, changed)
