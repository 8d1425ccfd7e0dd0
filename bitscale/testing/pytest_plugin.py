"""pytest plugin (``pytest11`` entry point): fixtures for testing bitscale plugins.

- ``bitscale_store``: a fresh ``ResultStore`` in a temporary folder.
- ``register_plugin(obj, name=...)``: register a plugin object/module for one test only.
- ``bitscale_isolated``: only bitscale's built-ins, no installed entry points (tests must not
  depend on whatever happens to be installed).
- ``tiny_model``: a toy language-style ``GenerativeModel`` with random weights.
- ``bitscale_run_cell(quantizer, precision, ...)``: runs ONE real cell end to end (a shipped tiny-zoo
  model, a few samples, FID against the real reference) through the harness into a temporary store;
  returns the stored run. For a plugin's CI: the quantizer works inside bitscale, not only on a toy.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def bitscale_store(tmp_path):
    from bitscale.harness.store import ResultStore

    store = ResultStore(f"sqlite:///{tmp_path / 'bitscale.db'}")
    yield store
    store.dispose()


@pytest.fixture
def bitscale_isolated():
    """The process-wide plugin set holds only built-ins for this test."""
    from bitscale.harness import plugin_loader as plugin_loading

    previous = plugin_loading._CACHED
    pset = plugin_loading.load_plugins(entrypoints=False)
    plugin_loading.set_plugins(pset)
    yield pset
    plugin_loading.set_plugins(previous)


@pytest.fixture
def register_plugin():
    """``register_plugin(obj, name="x")`` adds a plugin (a module or object with hookimpls) for one test."""
    from bitscale.harness import plugin_loader as plugin_loading

    previous = plugin_loading._CACHED
    extra: list[tuple[str, object]] = []

    def register(obj, name: str = "test-plugin", entrypoints: bool = False):
        extra.append((name, obj))
        pset = plugin_loading.load_plugins(list(extra), entrypoints=entrypoints)
        plugin_loading.set_plugins(pset)
        return pset

    yield register
    plugin_loading.set_plugins(previous)


@pytest.fixture
def tiny_model():
    from bitscale.testing.toy import ToyModel

    return ToyModel()


@pytest.fixture
def bitscale_run_cell(tmp_path, monkeypatch):
    """``run_cell(quantizer, precision="W4A16", options=None, family="var-tiny", size=None, num_samples=100,
    seed=0, loss=None)`` -> the stored run as a dict (status, fid, effective_weight_bits, notes, ...).

    Uses the process-wide plugins (installed entry points, or those of ``register_plugin``) and the
    shipped tiny-zoo weights; the cache (reference statistics) is a temporary folder unless
    ``BITSCALE_CACHE`` is set. A failed cell fails the test with the cell's traceback.
    """
    import os

    from bitscale.harness.config import parse_experiment
    from bitscale.harness.planner import plan_grid
    from bitscale.harness.plugin_loader import get_plugins
    from bitscale.harness.runner import run_plan
    from bitscale.harness.store import ResultStore

    if not os.environ.get("BITSCALE_CACHE"):
        monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path / "cache"))
    store = ResultStore(f"sqlite:///{tmp_path / 'cell.db'}")

    def run_cell(
        quantizer: str,
        precision: str = "W4A16",
        options: dict | None = None,
        *,
        family: str = "var-tiny",
        size: str | None = None,
        num_samples: int = 100,
        seed: int = 0,
        loss: str | None = None,
    ) -> dict:
        plugins = get_plugins()
        size = size or plugins.models.get(family).sizes[0]
        method = {"name": quantizer, "options": options or {}}
        exp = parse_experiment(
            {
                "name": "plugin-ci",
                "models": [{"family": family, "sizes": [size]}],
                "quantizers": [method],
                **({"losses": [loss]} if loss else {}),
                "precisions": [precision],
                "seeds": [seed],
                "evaluation": {"num_samples": num_samples, "calibration_batches": 2, "batch_size": num_samples},
            },
            "bitscale_run_cell",
        )
        plan = plan_grid(exp, plugins, "bitscale_run_cell")
        if not plan.cells:
            reasons = "; ".join(f"{label}: {why}" for label, why in plan.skipped) or "nothing planned"
            raise AssertionError(f"{quantizer} at {precision} on {family}/{size} was not planned: {reasons}")
        run_plan(plan, store, plugins, experiment="plugin-ci", progress=False)
        frame = store.frame()
        row = frame[frame["cell_hash"] == plan.cells[0].hash].iloc[0].to_dict()
        if row["status"] != "ok":
            error = next(r.error for r in store.runs() if r.cell_hash == row["cell_hash"])
            raise AssertionError(f"the cell {plan.cells[0].label} failed:\n{error}")
        return row

    yield run_cell
    store.dispose()
