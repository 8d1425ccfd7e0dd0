"""Shipped tiny-zoo weights: the same bytes on every machine, checked on load, never silently retrained."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from bitscale.cli import main
from bitscale.harness.artifacts import cache, shipped
from bitscale.harness.errors import BitscaleError
from bitscale.harness.evaluation import digits_classifier
from bitscale.harness.evaluation.references import reference_for
from bitscale.harness.plugin_loader import load_plugins
from bitscale.plugins.models.var.tiny import VarTinyFamily, VarTinyOptions

TINY = [e.obj for e in load_plugins(entrypoints=False).models if e.obj.trainable]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A cache with nothing trained in it: whatever loads, loads from the shipped files."""
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(shipped.SOURCE_ENV, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A writable copy of the shipped weights, used in their place."""
    folder = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, folder)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(shipped, "CATALOG", folder / "catalog.json")
    return folder


def test_every_default_tiny_model_and_the_extractor_ship_intact():
    catalog = shipped.catalog()
    for family in TINY:
        for size in family.sizes:
            for name in family.artifacts(size, family.Options()):
                assert name in catalog, name
    for name, entry in catalog.items():
        assert shipped.file_sha256(shipped.verified_path(name)) == entry["sha256"]
        assert entry["manifest"]["seed"] == 0 and entry["trained_on"]["threads"] == 1  # recipe and machine recorded
    assert digits_classifier.ARTIFACT in catalog


def test_tiny_models_build_from_shipped_weights_without_training(empty_cache):
    family = VarTinyFamily()
    model = family.build("d2", family.Options(), torch.device("cpu"))
    state = load_file(str(shipped.path_of("var-tiny/d2")))
    assert all(torch.equal(v, model.module.state_dict()[k]) for k, v in state.items())
    assert not list(empty_cache.rglob("*.safetensors"))  # nothing trained, nothing written


def test_weights_id_is_the_hash_of_the_shipped_files(empty_cache):
    family, catalog = VarTinyFamily(), shipped.catalog()
    expected = hashlib.sha256(" ".join(catalog[n]["sha256"] for n in ("var-tiny/vqvae", "var-tiny/d2")).encode())
    assert family.weights_id("d2", family.Options()) == expected.hexdigest()[:16]
    with shipped.using("trained"):  # nothing trained here yet: the cells cannot be named
        assert family.weights_id("d2", family.Options()) is None


def test_digits_protocol_is_named_by_the_shipped_extractor(empty_cache):
    sha = shipped.catalog()[digits_classifier.ARTIFACT]["sha256"]
    assert reference_for("digits16").reference_hash.endswith(f"-net-{sha[:16]}")
    assert not (empty_cache / "eval" / "digits-classifier.safetensors").exists()


def test_a_modified_shipped_file_is_a_one_line_error_naming_it(empty_cache, shipped_copy, tmp_path, capsys):
    path = shipped_copy / "var-tiny" / "d2.safetensors"
    state = load_file(str(path))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] += 1e-3  # a plausible edit: still a valid file, other weights
    save_file(state, str(path))
    with pytest.raises(BitscaleError, match="d2.safetensors.*modified or are corrupt"):
        VarTinyFamily().build("d2", VarTinyOptions(), torch.device("cpu"))
    exp = tmp_path / "e.yaml"
    exp.write_text("name: e\nmodels: [{family: var-tiny, sizes: [d2]}]\nquantizers: [rtn]\nprecisions: [W16A16]\n")
    store = tmp_path / "s.db"
    assert main(["run", str(exp), "--store", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "reinstall" in err[0]
    assert not store.exists()  # refused while planning: the store was never opened
    assert not list(empty_cache.rglob("var-tiny/*.safetensors"))  # and nothing was retrained


def test_a_changed_recipe_with_stale_shipped_weights_is_an_error(empty_cache, monkeypatch):
    from bitscale.plugins.models.dit.tiny import DiTTinyFamily

    family = DiTTinyFamily()
    assert family.weights_id("d3w64", family.Options()) != family.weights_id("d3w128", family.Options())
    monkeypatch.setattr(family, "recipe", {**family.recipe, "lr": 1e-4})
    with pytest.raises(BitscaleError, match="re-ship"):
        family.weights_id("d3w64", family.Options())


def test_trained_here_weights_name_their_cells_by_their_files(empty_cache):
    family, opts = VarTinyFamily(), VarTinyOptions(vae_steps=3, steps=4)  # not shipped: trained in the cache
    assert family.weights_id("d2", opts) is None
    family.train("d2", opts)
    vae, name = family.artifact_names("d2", opts)
    files = [shipped.file_sha256(cache.artifact_paths(n)[0]) for n in (vae, name)]
    assert family.weights_id("d2", opts) == hashlib.sha256(" ".join(files).encode()).hexdigest()[:16]


def test_corrupt_cached_files_are_named_and_retrained(empty_cache, capsys):
    family, opts = VarTinyFamily(), VarTinyOptions(vae_steps=3, steps=4)
    family.train("d2", opts)
    _, name = family.artifact_names("d2", opts)
    weights, meta = cache.artifact_paths(name)
    weights.write_bytes(b"\xff" * 64)  # header garbage: safetensors would say "header too large"
    with pytest.raises(BitscaleError, match=rf"{weights.name}.*modified or are corrupt.*zoo train --force"):
        cache.load_artifact(name)
    assert [u.artifact for u in family.training_units(["d2"], opts)] == [name]  # the zoo sees it as not trained
    family.train("d2", opts)
    assert cache.load_artifact(name) is not None
    meta.write_text("{not json")
    with pytest.raises(BitscaleError, match=rf"{meta.name}: unreadable manifest"):
        cache.load_manifest(name)


def test_training_into_the_cache_never_touches_shipped_names(empty_cache):
    with pytest.raises(BitscaleError, match="re-ship"):
        cache.save_artifact("var-tiny/d2", {"w": torch.zeros(1)}, {})
    with shipped.using("trained"):
        cache.save_artifact("var-tiny/d2", {"w": torch.zeros(1)}, {})  # the user's own copy: fine
    assert (empty_cache / "var-tiny" / "d2.safetensors").exists()


def test_zoo_weights_option_is_validated(monkeypatch, capsys):
    monkeypatch.setenv(shipped.SOURCE_ENV, "mine")
    with pytest.raises(BitscaleError, match="choose 'shipped'"):
        shipped.source()


def test_a_broken_catalog_is_an_error(shipped_copy):
    (shipped_copy / "catalog.json").write_text(json.dumps({"artifacts": {"x": {"sha256": 1}}}))
    with pytest.raises(BitscaleError, match="catalog.json: unreadable catalog"):
        shipped.catalog()


def test_zoo_verify_reports_bit_identity_or_the_cost(empty_cache, shipped_copy, capsys):
    # A shipped extractor that this machine's training cannot reproduce (other weights, same recipe):
    # verify says so and compares the two instead of failing.
    name = digits_classifier.ARTIFACT
    path = shipped_copy / f"{name}.safetensors"
    state = load_file(str(path))
    state["fc2.bias"] += 0.5
    save_file(state, str(path))
    catalog = json.loads((shipped_copy / "catalog.json").read_text())
    catalog["artifacts"][name]["sha256"] = shipped.file_sha256(path)
    (shipped_copy / "catalog.json").write_text(json.dumps(catalog))
    assert main(["zoo", "verify", "classifier"]) == 0
    out = capsys.readouterr().out
    assert "differs" in out and "digits classifier test accuracy" in out
    assert not list(empty_cache.rglob("*.safetensors"))  # trained in a temporary cache, not the user's


def test_the_gate_names_changed_shipped_weights_instead_of_missing_cells(tmp_path, capsys):
    from bitscale.harness.store import ResultStore
    from bitscale.testing import synthetic

    grid = synthetic.SyntheticGrid(
        families={"toyvar": {"d1": 100_000}},
        methods={"rtn": 1.0},
        precisions=["W16A16", "W4A16"],
        seeds=[0, 1],
        noise=0.02,
    )
    store = ResultStore(f"sqlite:///{tmp_path / 'base.db'}")
    for rec in synthetic.records(grid):
        store.record(run=rec["run"], metrics=rec["metrics"], protocol=rec["protocol"])
    out = tmp_path / "baseline.json"
    assert main(["baseline", "export", "--store", str(tmp_path / "base.db"), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["artifacts"] == {n: e["sha256"] for n, e in shipped.catalog().items()}
    data["artifacts"]["var-tiny/d2"] = "0" * 64  # exported with other shipped weights
    out.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", "--baseline", str(out), "--store", str(tmp_path / "base.db")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "shipped weights changed since the baseline: var-tiny/d2" in first


def test_zoo_train_says_when_another_process_trained_the_model(empty_cache, monkeypatch):
    # Issue 11 item 14: it printed "var-tiny/d4: final loss 2.5119 (321.7 s)" for a model another
    # process trained while it waited on the lock.
    import subprocess
    import sys

    from bitscale.zoo.parallel import train_units

    monkeypatch.setenv(shipped.SOURCE_ENV, "trained")
    family, opts = VarTinyFamily(), VarTinyOptions(vae_steps=2, steps=2)
    units = family.training_units(["d2"], opts)  # planned while nothing is trained
    assert [u.artifact for u in units] == list(family.artifact_names("d2", opts))
    other = (
        "from bitscale.plugins.models.var.tiny import VarTinyFamily, VarTinyOptions; "
        "VarTinyFamily().train('d2', VarTinyOptions(vae_steps=2, steps=2))"
    )
    subprocess.run([sys.executable, "-c", other], check=True)  # ... and trained by another process meanwhile
    lines: list[str] = []
    train_units(units, 1, progress=False, log=lines.append)
    assert [line for line in lines if not line.startswith("training ")] == [
        f"{u.artifact}: trained by another process meanwhile; loaded" for u in units
    ]


def test_a_process_that_would_load_other_weights_refuses_the_cell(empty_cache, monkeypatch):
    # A Ray worker with another cache or zoo-weights setting must not measure other weights under
    # the cell's hash.
    from bitscale.harness.cellwork import ModelCache
    from bitscale.harness.config import parse_experiment
    from bitscale.harness.planner import plan_grid

    exp = parse_experiment(
        {
            "name": "w",
            "models": [{"family": "var-tiny", "sizes": ["d2"]}],
            "quantizers": ["rtn"],
            "precisions": ["W16A16"],
        },
        "w.yaml",
    )
    cell = plan_grid(exp, load_plugins(entrypoints=False)).cells[0]
    monkeypatch.setenv(shipped.SOURCE_ENV, "trained")  # this "worker" has nothing trained
    with pytest.raises(BitscaleError, match="would load other weights than the grid was planned with"):
        ModelCache().fresh(cell, VarTinyFamily())


def test_zoo_list_shows_shipped_and_trained_here(empty_cache, capsys):
    assert main(["zoo", "list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("var-tiny")]
    assert [r[1] for r in rows] == ["d2", "d4", "d6"] and all(r[-2:] == ["yes", "no"] for r in rows)


def test_zoo_ship_names_ships_only_what_changed(empty_cache, shipped_copy, capsys):
    # The cache holds llamagen-tiny as shipped, except d3w64 (retrained: other bytes). Shipping
    # llamagen-tiny copies d3w64 alone; the other entries (and every other family's) keep theirs.
    before = json.loads((shipped_copy / "catalog.json").read_text())["artifacts"]
    names = [n for n in before if n.startswith("llamagen-tiny/")]
    for name in names:
        state = load_file(str(shipped_copy / f"{name}.safetensors"))
        if name == "llamagen-tiny/d3w64":
            state["norm.weight"] = state["norm.weight"] + 0.5
        weights, meta = cache.artifact_paths(name)
        save_file(state, str(weights))
        meta.write_text(json.dumps(dict(before[name]["manifest"], sha256=shipped.file_sha256(weights))))
    capsys.readouterr()
    assert main(["zoo", "ship", "llamagen-tiny"]) == 0
    out = capsys.readouterr().out
    assert "shipped llamagen-tiny/d3w64" in out and "unchanged llamagen-tiny/vq" in out
    after = json.loads((shipped_copy / "catalog.json").read_text())["artifacts"]
    assert set(after) == set(before)
    assert after["llamagen-tiny/d3w64"]["sha256"] != before["llamagen-tiny/d3w64"]["sha256"]
    assert {n: e for n, e in after.items() if n != "llamagen-tiny/d3w64"} == {
        n: e for n, e in before.items() if n != "llamagen-tiny/d3w64"
    }
    assert (
        shipped.file_sha256(shipped_copy / "llamagen-tiny/d3w64.safetensors") == after["llamagen-tiny/d3w64"]["sha256"]
    )
