"""Planner + runner + store on the toy family: failures are isolated, resumes lose and duplicate nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest
import torch

from bitscale import hookimpl
from bitscale.harness.config import parse_experiment
from bitscale.harness.contracts import Quantizer, QuantReport
from bitscale.harness.planner import plan_grid
from bitscale.harness.plugin_loader import get_plugins
from bitscale.harness.runner import run_plan
from bitscale.testing.toy import ToyFamily


class Raises(Quantizer):
    name = "fixture-raises"

    def apply(self, job):
        raise RuntimeError("quantizer exploded")


class MakesNaN(Quantizer):
    name = "fixture-nan"

    def apply(self, job):
        next(iter(job.model.quant_layers().values())).weight.data.fill_(float("nan"))
        return QuantReport(effective_weight_bits=job.precision.w_bits)


class OutOfMemory(Quantizer):
    name = "fixture-oom"

    def apply(self, job):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")


def fixture_plugin():
    mod = types.ModuleType("fixture_plugin")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    mod.register_quantizers = hookimpl(lambda register: [register(c) for c in (Raises, MakesNaN, OutOfMemory)])
    return mod


def _exp(quantizers, precisions=("W16A16", "W8A16", "W4A16"), sizes=("d1",), seeds=(0,)):
    return parse_experiment(
        {
            "name": "t",
            "models": [{"family": "toy", "sizes": list(sizes)}],
            "quantizers": list(quantizers),
            "precisions": list(precisions),
            "seeds": list(seeds),
            "evaluation": {"num_samples": 100, "calibration_batches": 2, "batch_size": 50},
        },
        "t.yaml",
    )


def test_grid_runs_and_resumes_without_duplicates(register_plugin, store, capsys):
    bitscale_store = store  # on SQLite and on PostgreSQL
    register_plugin(fixture_plugin())
    plan = plan_grid(_exp(["rtn"]), get_plugins())
    assert [c.precision for c in plan.cells] == ["W16A16", "W8A16", "W4A16"]
    assert len({c.hash for c in plan.cells}) == 3
    s = run_plan(plan, bitscale_store, get_plugins(), progress=False)
    assert (s.ran, s.ok, s.failed) == (3, 3, 0)
    # Without a progress bar (CI logs) each cell still gets its result line.
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ": FID " in ln]
    assert len(lines) == 3 and all(c.label in ln for c, ln in zip(plan.cells, lines))
    frame = bitscale_store.frame()
    assert set(frame["status"]) == {"ok"} and frame["fid"].notna().all() and (frame["fid"] > 0).all()
    again = run_plan(plan_grid(_exp(["rtn"]), get_plugins()), bitscale_store, get_plugins(), progress=False)
    assert (again.ran, again.skipped_done) == (0, 3)
    assert bitscale_store.count() == 3
    run = bitscale_store.runs()[0]
    assert run.versions["torch"] == torch.__version__ and run.protocol_fingerprint and run.device
    assert set(run.timings) >= {"build", "sample", "evaluate", "total"}
    assert bitscale_store.protocols()[run.protocol_fingerprint]["num_samples"] == 100


def test_failing_plugins_fail_their_cell_only(register_plugin, bitscale_store):
    register_plugin(fixture_plugin())
    plan = plan_grid(_exp(["fixture-raises", "fixture-nan", "fixture-oom", "rtn"], ["W16A16", "W4A16"]), get_plugins())
    s = run_plan(plan, bitscale_store, get_plugins(), progress=False)
    assert (s.ran, s.ok, s.failed) == (5, 2, 3)
    by_method = {r.method: r for r in bitscale_store.runs()}
    assert "quantizer exploded" in by_method["fixture-raises"].error
    assert "NaN/inf" in by_method["fixture-nan"].error
    assert "OutOfMemoryError" in by_method["fixture-oom"].error
    assert by_method["rtn"].status == "ok" and by_method["fp16"].status == "ok"
    assert not by_method["fixture-raises"].metrics  # a failed cell stores no scores
    # Failed cells are not retried by default; --retry-failed replaces them, never duplicates.
    assert run_plan(plan, bitscale_store, get_plugins(), progress=False).ran == 0
    retry = run_plan(plan, bitscale_store, get_plugins(), progress=False, retry_failed=True)
    assert retry.ran == 3 and bitscale_store.count() == 5


def test_budget_filters_cells(register_plugin):
    register_plugin(fixture_plugin())
    n = ToyFamily().num_params("d1", ToyFamily.Options())
    exp = _exp(["rtn"], ["W16A16", "W8A16", "W4A16", "W4A8"])
    exp.budget.model_bits = n * 8
    plan = plan_grid(exp, get_plugins())
    assert sorted(c.precision for c in plan.cells) == ["W4A16", "W4A8", "W8A16"]
    exp.budget.compute_bits = n * 4 * 8
    assert sorted(c.precision for c in plan_grid(exp, get_plugins()).cells) == ["W4A8"]


SCRIPT = textwrap.dedent("""
    import sys, types, time
    from bitscale import hookimpl
    from bitscale.harness.config import parse_experiment
    from bitscale.harness.planner import plan_grid
    from bitscale.harness.plugin_loader import load_plugins
    from bitscale.harness.runner import run_plan
    from bitscale.harness.store import ResultStore
    from bitscale.testing.toy import ToyFamily
    mod = types.ModuleType("toyplug")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    ps = load_plugins([("toyplug", mod)], entrypoints=False)
    exp = parse_experiment({"models": [{"family": "toy", "sizes": ["d1"]}], "quantizers": ["rtn"],
                            "precisions": ["W16A16", "W8A16", "W4A16", "W3A16"], "seeds": [0, 1],
                            "evaluation": {"num_samples": 100, "calibration_batches": 1, "batch_size": 100}}, "x")
    s = run_plan(plan_grid(exp, ps), ResultStore(sys.argv[1]), ps, progress=False)
    print("ran", s.ran)
""")


@pytest.mark.slow
def test_kill_9_and_concurrent_writers_lose_and_duplicate_nothing(tmp_path, store_url):
    db = store_url  # a SQLite file, then a database on a real PostgreSQL server
    script = tmp_path / "grid.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "BITSCALE_NO_ENTRYPOINTS": "1"}
    # Kill a grid in the middle, then run two processes on the same file at once.
    p = subprocess.Popen([sys.executable, str(script), db], env=env)
    from bitscale.harness.store import ResultStore

    deadline = time.time() + 240
    while time.time() < deadline and _count(db) < 2:
        time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = ResultStore(db).count()
    assert 2 <= killed_at < 8
    a = subprocess.Popen([sys.executable, str(script), db], env=env, stdout=subprocess.PIPE, text=True)
    b = subprocess.Popen([sys.executable, str(script), db], env=env, stdout=subprocess.PIPE, text=True)
    assert a.wait(timeout=600) == 0 and b.wait(timeout=600) == 0
    store = ResultStore(db)
    frame = store.frame()
    assert len(frame) == 8 and frame["cell_hash"].is_unique and set(frame["status"]) == {"ok"}


def _count(url: str) -> int:
    # Without migrating: the killed process may not have created the schema yet.
    from sqlalchemy.exc import DBAPIError

    from bitscale.harness.store import ResultStore

    try:
        return ResultStore(url, migrate=False).count()
    except DBAPIError:  # no file or no table yet
        return 0


def test_other_weights_are_other_cells(register_plugin, monkeypatch):
    # A tiny model retrained with another recipe must not reuse results measured on the old weights:
    # the family's weights_id is part of every cell hash.
    register_plugin(fixture_plugin())
    before = [c.hash for c in plan_grid(_exp(["rtn"]), get_plugins()).cells]
    monkeypatch.setattr(ToyFamily, "weights_id", lambda self, size, options: f"recipe-2-{size}", raising=False)
    after = plan_grid(_exp(["rtn"]), get_plugins()).cells
    assert not set(before) & {c.hash for c in after}
    assert all(c.versions["weights"] == "recipe-2-d1" for c in after)
