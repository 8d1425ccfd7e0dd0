"""Bit budgets: nominal and effective MT/CT, best cell per method within a budget, Pareto fronts."""

import pytest

from bitscale.harness.errors import ConfigError
from bitscale.leaderboard.budget import Budget, best_within, pareto, pareto_front
from bitscale.leaderboard.results import load_results
from bitscale.testing import synthetic

GRID = synthetic.SyntheticGrid(
    families={"f": {"d1": 1000, "d2": 2000, "d4": 4000}},
    methods={"rtn": 1.0},
    precisions=["W16A16", "W8A16", "W4A16", "W8A8"],
    seeds=[0, 1],
)


@pytest.fixture
def runs(bitscale_store):
    synthetic.fill(bitscale_store, GRID)
    return load_results(bitscale_store).runs


def test_nominal_and_effective_model_and_compute_bits(runs):
    r = runs[(runs["size"] == "d2") & (runs["precision"] == "W4A16")].iloc[0]
    assert r["mt"] == 2000 * 4 and r["ct"] == 2000 * 4 * 16  # paper §3: N·w and N·w·a
    # the synthetic quantizer reports 4.25 effective bits per weight (scales)
    assert r["mt_eff"] == pytest.approx(2000 * 4.25) and r["ct_eff"] == pytest.approx(2000 * 4.25 * 16)
    full = runs[(runs["size"] == "d1") & (runs["precision"] == "W16A16")].iloc[0]
    assert full["mt_eff"] == full["mt"] == 16_000 and full["ct"] == 1000 * 256
    w8a8 = runs[(runs["size"] == "d4") & (runs["precision"] == "W8A8")].iloc[0]
    assert w8a8["ct"] == 4000 * 64


def test_budget_parse_and_errors():
    b = Budget.parse("model_bits=2e4, compute_bits=1e6")
    assert (b.model_bits, b.compute_bits) == (2e4, 1e6) and "model_bits <= 2e+04" in b.label
    for bad in ("", "model_bits", "flops=3", "model_bits=abc", "model_bits=-1"):
        with pytest.raises(ConfigError):
            Budget.parse(bad)


def test_best_within_budget_per_method(runs):
    ans = best_within(runs, Budget(model_bits=16_000))
    rtn = ans[ans["method"] == "rtn"].iloc[0]
    # within 16k model bits: d4 W4A16 (16k) beats d2 W8A16 (16k) and d1 anything
    assert (rtn["size"], rtn["precision"]) == ("d4", "W4A16") and rtn["model_bits"] <= 16_000
    fp = ans[ans["method"] == "fp16"].iloc[0]
    assert (fp["size"], fp["precision"]) == ("d1", "W16A16")


def test_joint_budget_and_nothing_fits(runs):
    ans = best_within(runs, Budget(model_bits=16_000, compute_bits=70_000))
    rtn = ans[ans["method"] == "rtn"].iloc[0]
    assert rtn["compute_bits"] <= 70_000 and rtn["precision"] == "W8A8"  # W4A16 at d4 costs 256k CT
    none = best_within(runs, Budget(model_bits=10))
    assert none["fid"].isna().all() and none["note"].str.contains("nothing within the budget").all()


def test_effective_bits_tighten_the_budget(runs):
    nominal = best_within(runs, Budget(model_bits=16_000))
    effective = best_within(runs, Budget(model_bits=16_000), effective=True)
    n = nominal[nominal["method"] == "rtn"].iloc[0]
    e = effective[effective["method"] == "rtn"].iloc[0]
    assert (n["size"], n["precision"]) == ("d4", "W4A16")
    assert e["model_bits"] <= 16_000 and (e["size"], e["precision"]) != ("d4", "W4A16")


def test_pareto_front_is_monotone_and_undominated(runs):
    p = pareto(runs, "mt")
    front = p[p["on_front"]].sort_values("bits")
    assert front["mean"].is_monotonic_decreasing
    for _, cell in p[~p["on_front"]].iterrows():
        assert ((front["bits"] <= cell["bits"]) & (front["mean"] < cell["mean"])).any()
    assert list(pareto_front(runs, "ct").columns)[:3] == ["source", "family", "protocol_key"]
