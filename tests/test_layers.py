"""Layers point down, and the layering refactor changed no hash.

The import graph is read from the source (every ``import``, module level or inside a function):
the core (``bitscale.harness``) imports neither the zoo, the leaderboard nor the CLI; the quant
library imports nothing of the harness; no two modules import each other, directly or around a loop.
"""

import ast
import types
from pathlib import Path

import bitscale

ROOT = Path(bitscale.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        parts = ("bitscale", *f.relative_to(ROOT).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:  # a name imported from a module counts as that module
                    t = t.rpartition(".")[0]
                if t and t != m:
                    edges[m].add(t)
    return edges


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_function_level_imports():
    # runner imports the local executor inside run_plan: a checker blind to it would miss cycles
    assert "bitscale.harness.executors.local" in _graph()["bitscale.harness.runner"]


def test_the_core_imports_no_zoo_leaderboard_or_cli():
    bad = [
        f"{m} imports {t}"
        for m, ts in _graph().items()
        if _under(m, "bitscale.harness")
        for t in ts
        if any(_under(t, p) for p in ("bitscale.zoo", "bitscale.leaderboard", "bitscale.cli"))
    ]
    assert bad == []


def test_quant_imports_nothing_of_the_harness():
    bad = [
        f"{m} imports {t}"
        for m, ts in _graph().items()
        if _under(m, "bitscale.quant")
        for t in ts
        if _under(t, "bitscale.harness")
    ]
    assert bad == []


def test_leaves_import_no_bitscale_module():
    graph = _graph()
    for leaf in ("bitscale.hashing", "bitscale.precision"):
        assert graph[leaf] == set(), leaf


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own submodules is how packages re-export: not a cycle of layers
    edges = {m: {t for t in ts if not (_under(t, m) and m != t)} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(path[path.index(t) :] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


# ---------------------------------------------------------------- hashes: byte-for-byte those of before the refactor


def test_cell_hashes_and_fingerprints_are_unchanged(monkeypatch):
    """Cell hashes and protocol fingerprints are stored in users' databases and in baselines/ci-tiny.json;
    these values were computed before the layering refactor (commit 35ffe44)."""
    from bitscale import hookimpl
    from bitscale.harness import cells
    from bitscale.harness.config import parse_experiment
    from bitscale.harness.evaluation.fid import protocol_fingerprint
    from bitscale.harness.planner import cell_hash, plan_grid
    from bitscale.harness.plugin_loader import load_plugins
    from bitscale.leaderboard import paper, results
    from bitscale.testing import synthetic
    from bitscale.testing.toy import ToyFamily

    monkeypatch.setattr(bitscale, "__version__", "0.1.0")  # the version is part of every hash
    # Pinned under protocol version 2 (the measurement protocol of issue 12 made version 3, which changes
    # every cell hash on purpose); the hashing itself must be the same bytes as before.
    monkeypatch.setattr(cells, "PROTOCOL_VERSION", 2)  # Cell.config reads it there (the planner re-exports it)
    mod = types.ModuleType("pin_plugin")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    plugins = load_plugins([("pin", mod)], entrypoints=False)
    exp = parse_experiment(
        {
            "name": "pin",
            "models": [{"family": "toy", "sizes": ["d1"]}],
            "quantizers": ["rtn", {"name": "gptq", "options": {"group_size": 32}}],
            "precisions": ["W16A16", "W4A16", "W8A8"],
            "seeds": [0, 1],
            "evaluation": {"num_samples": 100, "calibration_batches": 2, "batch_size": 50},
        },
        "pin.yaml",
    )
    hashes = {c.label: c.hash for c in plan_grid(exp, plugins).cells}
    assert hashes["toy/d1 W16A16 fp16 seed=0"] == "dc247e23923aa07f9df0"
    assert hashes["toy/d1 W4A16 rtn seed=1"] == "49b7a4a9b3dc4474f793"
    assert hashes["toy/d1 W4A16 gptq seed=0"] == "a3cca59255e56cce45a6"
    assert hashes["toy/d1 W8A8 gptq seed=1"] == "3dbce4c448e7498db6e3"
    # a shipped tiny-zoo cell of the CI gate's baseline (its hash names the shipped weights' files)
    ci = parse_experiment(
        {
            "name": "pin2",
            "models": [{"family": "var-tiny", "sizes": ["d2"]}],
            "quantizers": ["rtn"],
            "precisions": ["W16A16"],
            "seeds": [0],
            "evaluation": {"num_samples": 500},
        },
        "pin2.yaml",
    )  # the default then
    assert [c.hash for c in plan_grid(ci, plugins).cells] == ["714deccc1e63d466c5d4"]
    monkeypatch.setattr(cells, "PROTOCOL_VERSION", 3)
    assert plan_grid(exp, plugins).cells[0].hash != hashes["toy/d1 W16A16 fp16 seed=0"]  # a new protocol, new cells

    details = {
        "reference": "digits-train",
        "extractor": "digits-classifier@abc",
        "num_samples": 1000,
        "seed": 3,
        "t": (1, 2),
    }
    assert protocol_fingerprint(details) == synthetic.protocol_fingerprint(details) == "cb993e15c46861df"
    assert paper.protocol()[0] == "4b0aac91c3acc4b1"
    assert paper.paper_cell_hash("2", "W4A16", "GPTQ", "d16") == "paper-785ec9f1a0a2f95bbff7"
    assert results.comparison_key(details) == "79dca46db15b"
    assert cell_hash({"a": 1, "b": [1, "x"], "c": None}) == "42d46a7fbf78fdb02fee"
