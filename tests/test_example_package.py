"""The third-party example package (installed by `make test`) is discovered and usable in a run."""

import types

import pytest

from bitscale import hookimpl
from bitscale.harness.config import parse_experiment
from bitscale.harness.planner import plan_grid
from bitscale.harness.plugin_loader import load_plugins
from bitscale.harness.runner import run_plan
from bitscale.leaderboard.render import render
from bitscale.leaderboard.table import build_tables
from bitscale.testing.toy import ToyFamily

pytest.importorskip("bitscale_quantizer_example", reason="make test installs examples/bitscale-quantizer-example")


def test_entry_point_quantizer_runs_and_reaches_the_leaderboard(monkeypatch, bitscale_store):
    monkeypatch.setenv("BITSCALE_NO_ENTRYPOINTS", "0")
    toy = types.ModuleType("toyplug")
    toy.register_models = hookimpl(lambda register: register(ToyFamily()))
    ps = load_plugins([("toyplug", toy)])
    assert ps.quantizers.entry("pow2").plugin == "pow2"
    assert ps.version_of("pow2") == "bitscale-quantizer-example==0.1.0"
    exp = parse_experiment(
        {
            "models": [{"family": "toy", "sizes": ["d1"]}],
            "quantizers": ["pow2", "rtn"],
            "precisions": ["W16A16", "W4A16"],
            "evaluation": {"num_samples": 100, "calibration_batches": 1, "batch_size": 100},
        },
        "x",
    )
    plan = plan_grid(exp, ps)
    summary = run_plan(plan, bitscale_store, ps, progress=False)
    assert summary.failed == 0 and summary.ok == 3
    run = next(r for r in bitscale_store.runs() if r.method == "pow2")
    assert run.versions["quantizer"] == "bitscale-quantizer-example==0.1.0"
    assert run.effective_weight_bits > 4  # per-channel scales are counted
    table = render(build_tables(bitscale_store.frame(), "fid"), "github")
    assert "| W4A16" in table and "pow2" in table and "rtn" in table
