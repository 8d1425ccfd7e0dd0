"""Scaling-law fits: recover a known power law, CIs from seeds, bivariate form, verdicts, no mixing."""

import numpy as np
import pytest

from bitscale.leaderboard.fit import (
    _t_quantile,
    fit_bivariate,
    fit_power_law,
    fit_power_laws,
    optimal_precision,
    shift_vs_full,
)
from bitscale.leaderboard.paper import import_paper
from bitscale.leaderboard.results import load_results
from bitscale.testing import synthetic

SIZES = {"d1": 100_000, "d2": 200_000, "d4": 400_000, "d8": 800_000}
GRID = synthetic.SyntheticGrid(
    families={"f": SIZES},
    methods={"rtn": 1.0},
    precisions=["W16A16", "W4A16", "W3A16"],
    seeds=[0, 1, 2, 3],
    alpha=0.45,
    noise=0.02,
)


@pytest.fixture
def runs(bitscale_store):
    synthetic.fill(bitscale_store, GRID)
    return load_results(bitscale_store).runs


def test_recovers_the_exponent_with_a_bootstrap_ci_over_seeds(runs):
    fits = {f.precision: f for f in fit_power_laws(runs, "mt")}
    assert set(fits) == {"W16A16", "W4A16", "W3A16"}
    for f in fits.values():
        assert f.alpha == pytest.approx(0.45, abs=0.03)
        assert f.alpha_ci[0] < f.alpha < f.alpha_ci[1]
        assert f.ci_method.startswith("bootstrap over seeds") and f.seeds == 4 and f.sizes == 4
        assert f.r2 > 0.99
    # k relates to the law: FID = k0 N^-a pen = k0 (MT/w)^-a pen
    w16 = fits["W16A16"]
    assert w16.predict(16 * 400_000) == pytest.approx(2000 * 400_000**-0.45, rel=0.05)


def test_bootstrap_intervals_cover_the_true_exponent():
    # 60 independent noisy grids of 4 sizes x 3 seeds: a 95% interval should cover ~95% of them
    rng = np.random.default_rng(1)
    x = np.array([1e6, 2e6, 4e6, 8e6])
    hits = 0
    for _ in range(60):
        vals = [50 * v**-0.3 * np.exp(rng.normal(0, 0.05, 3)) for v in x]
        lo, hi = fit_power_law(x, vals, n_boot=400, rng=rng)["alpha_ci"]
        hits += lo < 0.3 < hi
    assert hits >= 50


def test_one_seed_falls_back_to_standard_errors():
    x = np.array([1e6, 2e6, 4e6, 8e6])
    vals = [np.array([30 * v**-0.3 * (1 + e)]) for v, e in zip(x, (0.01, -0.01, 0.02, 0.0))]
    r = fit_power_law(x, vals)
    assert r["ci_method"].startswith("OLS standard errors") and r["alpha_ci"][0] < 0.3 < r["alpha_ci"][1]
    r2 = fit_power_law(x[:2], vals[:2])
    assert r2["ci_method"].startswith("none") and np.isnan(r2["alpha_ci"][0])


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 5, 30, 31, 60, 500):
        assert _t_quantile(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=2e-3)


def test_bivariate_form_recovers_the_parameter_exponent(runs):
    biv = fit_bivariate(runs, "mt")
    row = biv[biv["method"] == "rtn"].iloc[0]
    assert row["a"] == pytest.approx(0.45, abs=0.03) and row["a_lo"] < row["a"] < row["a_hi"]
    assert row["points"] == 12 and "fixed total bits" in row["reading"]


def test_quantized_curves_shift_down_left_of_w16a16(runs):
    sh = shift_vs_full(fit_power_laws(runs, "mt"))
    w4 = sh[sh["precision"] == "W4A16"].iloc[0]
    assert w4["shift_pct"] < -20 and w4["verdict"] == "down-left" and w4["shift_hi"] < 0


def test_optimal_precision_at_a_budget(runs):
    opt = optimal_precision(fit_power_laws(runs, "mt"), 1.6e6)
    row = opt.iloc[0]
    # at 1.6M model bits: W4A16 on d4, W3A16 on ~d4, W16A16 on d1 -> the 4-bit curve is lowest
    assert row["best_precision"] == "W4A16" and not row["extrapolated"]
    assert row["ranking"].startswith("W4A16")


def test_published_rows_get_their_own_fits_never_mixed(runs, bitscale_store):
    import_paper(bitscale_store)
    runs = load_results(bitscale_store).runs
    fits = fit_power_laws(runs, "mt")
    measured = [f for f in fits if f.source == "measured"]
    published = [f for f in fits if f.source == "paper"]
    assert measured and published
    assert all(f.family == "f" and f.sizes == 4 for f in measured)
    assert all(f.family == "var" and f.x_min >= 9e8 for f in published)  # VAR d16 x 3 bits and up
    # Table 2 and Table 5 repeat rows: each published value counts once
    topkld = next(f for f in published if f.method == "qat+topkld" and f.precision == "W3A16")
    assert topkld.sizes == 4 and topkld.seeds == 1
