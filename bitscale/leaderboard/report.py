"""Everything the leaderboard shows, computed once from one read of the store.

The CLI commands, the HTML page and the benchmark all go through :func:`build_report`, so a
table, a fit and a plot of the same page can never disagree about which runs they used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bitscale.leaderboard.budget import Budget, best_within, pareto_front
from bitscale.leaderboard.fig1 import best_within_budgets, equal_bits_and_size
from bitscale.leaderboard.fit import PowerLawFit, fit_axes, fit_bivariate, optimal_precision, shift_vs_full
from bitscale.leaderboard.results import Results, cell_stats
from bitscale.leaderboard.table import LeaderboardTable, build_tables


@dataclass
class BudgetAnswer:
    budget: Budget
    best: pd.DataFrame  # per method: best (size, precision) within the budget, measured
    optimal: list[pd.DataFrame] = field(default_factory=list)  # per axis limit: fitted optimal precision


@dataclass
class Report:
    results: Results
    tables: list[LeaderboardTable]
    fits: dict[str, list[PowerLawFit]]  # axis column (mt, ct, mt_eff, ct_eff) -> fits
    bivariate: pd.DataFrame
    shifts: pd.DataFrame
    fronts: dict[str, pd.DataFrame]  # axis column -> Pareto front cells
    budgets: list[BudgetAnswer]
    effective: bool = False
    fig1: pd.DataFrame | None = None  # per family/method/precision: equal-bits shift beside equal-size change
    fig1_budgets: pd.DataFrame | None = None  # per family/method: best measured cell within each budget


def filter_results(results: Results, families: list[str] | None = None, sources: list[str] | None = None) -> Results:
    """The same results restricted to some families and/or sources ("measured", "paper")."""
    runs = results.runs
    if families:
        runs = runs[runs["family"].isin(families)]
    if sources:
        runs = runs[runs["source"].isin(sources)]
    return Results(runs, results.protocols, results.metric, results.store_url)


def build_report(
    results: Results,
    *,
    size_order: dict[str, list[str]] | None = None,
    budgets: list[Budget] | tuple[Budget, ...] = (),
    effective: bool = False,
    n_boot: int = 1000,
    fig1: bool = False,
) -> Report:
    """Tables, fits (MT and CT), bivariate fits, down-left shifts, Pareto fronts, budget answers;
    with ``fig1``, the paper's Fig. 1 readings per family (``leaderboard.fig1``)."""
    runs, metric = results.runs, results.metric
    tables = build_tables(runs, metric, size_order, protocols=results.protocols, prepared=runs)
    suffix = "_eff" if effective else ""
    fits = fit_axes(runs, ("mt", "ct"), effective, n_boot)
    bivariate = pd.concat([fit_bivariate(runs, axis, effective) for axis in ("mt", "ct")], ignore_index=True)
    shifts = pd.concat([shift_vs_full(f, metric=metric) for f in fits.values()], ignore_index=True)
    fronts = {f"{axis}{suffix}": pareto_front(runs, axis, effective, metric) for axis in ("mt", "ct")}
    cells = cell_stats(runs) if budgets else None
    answers = []
    for b in budgets:
        ans = BudgetAnswer(b, best_within(runs, b, effective, metric))
        # The measured cells inside the whole budget (every limit) decide; the fits are read beside them.
        inside = b.fits(cells, effective) if cells is not None and len(cells) else None
        if b.model_bits is not None:
            ans.optimal.append(optimal_precision(fits[f"mt{suffix}"], b.model_bits, cells, inside, metric))
        if b.compute_bits is not None:
            ans.optimal.append(optimal_precision(fits[f"ct{suffix}"], b.compute_bits, cells, inside, metric))
        answers.append(ans)
    report = Report(results, tables, fits, bivariate, shifts, fronts, answers, effective)
    if fig1:
        report.fig1 = equal_bits_and_size(runs, shifts, metric, effective, n_boot)
        report.fig1_budgets = best_within_budgets(runs, list(budgets) or None, metric, effective)
    return report
