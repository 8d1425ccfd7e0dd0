"""``bitscale run --force``, the editable-plugin warning, and ``bitscale store prune``."""

import json
import os
import types
from datetime import timedelta

import pytest

from bitscale import hookimpl
from bitscale.cli import main
from bitscale.harness.config import parse_experiment
from bitscale.harness.planner import plan_grid
from bitscale.harness.runner import run_plan
from bitscale.harness.store import ResultStore
from bitscale.testing import ToyFamily, synthetic

EXP = {
    "models": [{"family": "toy", "sizes": ["d1"]}],
    "quantizers": ["rtn"],
    "precisions": ["W4A16"],
    "evaluation": {"num_samples": 50, "calibration_batches": 1, "batch_size": 50},
}


@pytest.fixture
def toy_plugins(register_plugin):
    mod = types.ModuleType("toyplug")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    return register_plugin(mod, name="toyplug")


def test_force_recomputes_stored_cells_and_replaces_their_rows(toy_plugins, bitscale_store):
    plan = plan_grid(parse_experiment(EXP, "x"), toy_plugins)
    assert run_plan(plan, bitscale_store, toy_plugins, progress=False).ran == 1
    first = bitscale_store.runs()[0]
    assert run_plan(plan, bitscale_store, toy_plugins, progress=False).ran == 0  # stored: reused
    again = run_plan(plan, bitscale_store, toy_plugins, progress=False, force=True)
    assert again.ran == 1 and again.skipped_done == 0
    rows = bitscale_store.runs()
    assert len(rows) == 1 and rows[0].cell_hash == first.cell_hash  # replaced, not added
    assert rows[0].timings != first.timings  # a new measurement (its own timings)
    assert rows[0].metrics[0].value == pytest.approx(first.metrics[0].value)  # same cell, same seed: same FID


def test_editable_plugin_edited_after_a_stored_cell_is_reported(toy_plugins, bitscale_store, monkeypatch, tmp_path):
    from bitscale.harness import plugin_sources

    plan = plan_grid(parse_experiment(EXP, "x"), toy_plugins)
    run_plan(plan, bitscale_store, toy_plugins, progress=False)
    started = bitscale_store.started_at(c.hash for c in plan.cells)
    assert set(started) == {plan.cells[0].hash}
    when = next(iter(started.values()))
    # the model's plugin, as if installed with pip install -e and edited after the cell ran
    source = plugin_sources.EditableSource("toyplug", "toy-dist", tmp_path, when + timedelta(minutes=1))
    monkeypatch.setattr(plugin_sources, "editable_sources", lambda plugins: {"toyplug": source})
    assert plugin_sources.stale_cells(plan.cells, started, toy_plugins) == {"toyplug": plan.cells}
    earlier = plugin_sources.EditableSource("toyplug", "toy-dist", tmp_path, when - timedelta(minutes=1))
    monkeypatch.setattr(plugin_sources, "editable_sources", lambda plugins: {"toyplug": earlier})
    assert plugin_sources.stale_cells(plan.cells, started, toy_plugins) == {}


def test_editable_sources_sees_the_example_package_when_installed_editable(monkeypatch):
    from bitscale.harness import plugin_sources

    pytest.importorskip("bitscale_quantizer_example", reason="make test installs examples/bitscale-quantizer-example")
    monkeypatch.delenv("BITSCALE_NO_ENTRYPOINTS", raising=False)
    from bitscale.harness.plugin_loader import load_plugins

    sources = plugin_sources.editable_sources(load_plugins())
    if not plugin_sources._is_editable("bitscale-quantizer-example"):
        pytest.skip("the example is installed, but not editable")
    assert sources["pow2"].folder.name == "bitscale_quantizer_example"


def _older_copy(rec: dict, hash_suffix: str, fid: float) -> dict:
    """The same cell measured earlier under another plugin version: another hash, same coordinates."""
    run = {
        **rec["run"],
        "cell_hash": rec["run"]["cell_hash"][:-2] + hash_suffix,
        "versions": {"bitscale": "synthetic", "quantizer": "0.9"},
        "started_at": rec["run"]["started_at"] - timedelta(days=1),
        "finished_at": rec["run"]["finished_at"] - timedelta(days=1),
    }
    return {"run": run, "metrics": {"fid": fid}, "protocol": rec["protocol"]}


def test_store_prune_lists_then_deletes_superseded_runs_only(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = ResultStore(url)
    grid = synthetic.SyntheticGrid(seeds=[0])
    recs = synthetic.records(grid)
    for rec in recs:
        store.record(**rec)
    store.record(**_older_copy(recs[3], "zz", 999.0))
    store.record(**_older_copy(recs[5], "yy", 998.0))
    before = store.count()
    table_before = _table(url, capsys)

    assert main(["store", "prune", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "2 superseded run(s)" in out and "rerun with --yes" in out and store.count() == before  # dry run

    assert main(["store", "prune", "--store", url, "--yes"]) == 0
    assert "deleted 2 superseded run(s)" in capsys.readouterr().out
    assert store.count() == before - 2
    assert {r.cell_hash for r in store.runs()} == {r["run"]["cell_hash"] for r in recs}
    assert _table(url, capsys) == table_before  # the leaderboard never showed them
    assert main(["store", "prune", "--store", url]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    store.dispose()


def test_store_prune_is_one_transaction(tmp_path):
    """Killed just before its commit, a prune deletes nothing."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'k.db'}"
    store = ResultStore(url)
    recs = synthetic.records(synthetic.SyntheticGrid(seeds=[0]))
    for rec in recs:
        store.record(**rec)
    for i, suffix in enumerate(("aa", "bb", "cc")):
        store.record(**_older_copy(recs[i + 2], suffix, 900.0 + i))
    before = store.count()
    env = {**os.environ, "BITSCALE_FAULT": "delete:before-commit"}
    res = subprocess.run([sys.executable, "-m", "bitscale", "store", "prune", "--store", url, "--yes"], env=env)
    assert res.returncode == -9  # SIGKILL at the fault point
    assert store.count() == before
    store.dispose()


def test_store_prune_on_a_missing_store_is_a_one_line_error(tmp_path, capsys):
    assert main(["store", "prune", "--store", str(tmp_path / "missing.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitscale: error:") and err.count("\n") == 1


def _table(url: str, capsys) -> str:
    capsys.readouterr()
    assert main(["leaderboard", "--store", url, "--format", "json"]) == 0
    return json.dumps(json.loads(capsys.readouterr().out), sort_keys=True)


def test_run_force_flag_reaches_the_runner(toy_plugins, tmp_path, capsys, monkeypatch):
    exp = tmp_path / "e.yaml"
    exp.write_text(json.dumps(EXP))
    store = str(tmp_path / "r.db")
    assert main(["run", str(exp), "--store", store, "--no-progress"]) == 0
    assert main(["run", str(exp), "--store", store, "--no-progress"]) == 0
    assert "1 cells: 0 run (0 ok, 0 failed), 1 already in" in capsys.readouterr().out
    assert main(["run", str(exp), "--store", store, "--no-progress", "--force"]) == 0
    assert "1 cells: 1 run (1 ok, 0 failed), 0 already in" in capsys.readouterr().out
