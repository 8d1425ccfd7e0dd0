"""``bitscale analyze``: the generation-phases extension, the analyses on the tiny zoo, the synthetic model's
step-like vs linear noise response, determinism, storage, the HTML section and bad input."""

from __future__ import annotations

import json
import types

import pytest
import torch

from bitscale import hookimpl
from bitscale.analysis import noise
from bitscale.cli import main
from bitscale.harness.plugin_loader import get_plugins
from bitscale.testing.contract_checks import check_generation_phases
from bitscale.testing.phases import SyntheticModel

SNRS = [40, 35, 30, 27.5, 25, 22.5, 20, 17.5, 15, 12.5, 10, 7.5, 5, 2.5, 0]
# Few steps and samples: the shipped tiny weights load in well under a second.
VAR = ["--family", "var-tiny", "--size", "d2", "--samples", "2"]
DIT = ["--family", "dit-tiny", "--size", "d3w64", "--samples", "2", "--model-option", "sampling_steps=4"]


def _build(family: str, size: str, **options):
    fam = get_plugins().models.get(family)
    return fam.build(size, fam.Options(**options), torch.device("cpu"))


@pytest.mark.parametrize(
    "family,size,options",
    [
        ("var-tiny", "d2", {}),
        ("dit-tiny", "d3w64", {"sampling_steps": 3}),
        ("dit-tiny", "d3w64", {"sampling_steps": 3, "sampler": "ddpm"}),
        ("llamagen-tiny", "d3w64", {}),
    ],
)
def test_phases_reproduce_sample(family, size, options):
    check_generation_phases(_build(family, size, **options), torch.arange(3))


def test_synthetic_discrete_is_step_like_continuous_is_linear():
    labels = torch.arange(8)
    discrete = noise.noise_tolerance(SyntheticModel(discrete=True), labels, 0, SNRS, step=5)
    continuous = noise.noise_tolerance(SyntheticModel(discrete=False), labels, 0, SNRS, step=5)
    d_loss = [p["loss_mean"] for p in discrete["points"]]
    # Continuous: loss proportional to the noise power, no plateau.
    assert continuous["pearson_r"] > 0.999 and continuous["flat_fraction"] == 0
    # Discrete: no loss until the noise flips a code, then plateaus between jumps.
    assert d_loss[0] == 0 and discrete["flat_fraction"] >= 0.4
    assert discrete["pearson_r"] < 0.95 < continuous["pearson_r"]
    assert continuous["pearson_r_ci"][0] > discrete["pearson_r_ci"][1]


def test_synthetic_accumulation_marks_the_noisy_steps():
    acc = noise.accumulation(SyntheticModel(discrete=False), torch.arange(4), 0, snr=10.0, fraction=0.1)
    assert acc["noisy_steps"] == 1 and [s["noisy"] for s in acc["steps"]][:2] == [True, False]
    # A rotation carries the first step's error unchanged through every later step.
    assert all(abs(s["mean"] - acc["steps"][0]["mean"]) < 1e-5 for s in acc["steps"])
    assert noise.noisy_steps(50, 0.1) == 5 and noise.noisy_steps(3, 0.1) == 1


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _stored(out: str):
    path = out.strip().splitlines()[-1].split(" ", 1)[1]
    from pathlib import Path

    return Path(path), json.loads((Path(path) / "result.json").read_text())


@pytest.mark.parametrize("model", [VAR, DIT], ids=["var-tiny", "dit-tiny"])
def test_errors_on_tiny_models_deterministic_and_reused(model, tmp_path, capsys):
    args = ["analyze", "errors", *model, "--method", "rtn", "--precision", "W4A8"]
    code, out, _ = _run(capsys, *args, "--analyses", str(tmp_path / "a"))
    assert code == 0 and "wrote" in out
    path, doc = _stored(out)
    assert {"errors.png", "errors.svg", "result.json"} <= {p.name for p in path.iterdir()}
    tf = doc["result"]["teacher_forced"]
    steps = 3 if model is VAR else 4
    assert len(tf["steps"]) == steps and doc["provenance"]["weights"]
    assert all(s["extraction"]["mean"] > 0 for s in tf["steps"])  # W4A8 changes the features at every step
    assert doc["result"]["free_running"]["final_output"]["mean"] >= 0
    code, out, _ = _run(capsys, *args, "--analyses", str(tmp_path / "a"))
    assert code == 0 and "reused" in out
    # Same seed, computed again from scratch elsewhere: the same numbers.
    code, out, _ = _run(capsys, *args, "--analyses", str(tmp_path / "b"), "--force")
    assert _stored(out)[1]["result"] == doc["result"]


@pytest.mark.parametrize("model", [VAR, DIT], ids=["var-tiny", "dit-tiny"])
def test_noise_tolerance_on_tiny_models(model, tmp_path, capsys):
    code, out, _ = _run(
        capsys, "analyze", "noise-tolerance", *model, "--snr", "30,20,10,0", "--analyses", str(tmp_path)
    )
    assert code == 0 and "Pearson r" in out
    path, doc = _stored(out)
    tol = doc["result"]["tolerance"]
    assert [p["snr_db"] for p in tol["points"]] == [30, 20, 10, 0]
    assert tol["points"][-1]["loss_mean"] > 0  # 0 dB noise changes the output
    assert doc["result"]["accumulation"]["noisy_steps"] == 1
    assert {"noise-tolerance.png", "accumulation.svg"} <= {p.name for p in path.iterdir()}


@pytest.mark.parametrize("model", [VAR, DIT], ids=["var-tiny", "dit-tiny"])
def test_activations_on_tiny_models(model, tmp_path, capsys):
    code, out, _ = _run(
        capsys,
        "analyze",
        "activations",
        *model,
        "--layer",
        "fc1",
        "--layer",
        "fc2",
        "--block",
        "0",
        "--block",
        "1",
        "--analyses",
        str(tmp_path),
    )
    assert code == 0
    path, doc = _stored(out)
    layers = doc["result"]["layers"]
    assert set(layers) == {"fc1@0", "fc1@1", "fc2@0", "fc2@1"}
    import numpy as np

    arrays = np.load(path / "arrays.npz")
    steps = 3 if model is VAR else 4
    for key, lay in layers.items():
        q = np.array(lay["quantiles"])
        assert q.shape == (steps, 7) and (np.diff(q, axis=1) >= 0).all()  # quantiles are ordered
        assert arrays[key].shape[0] == steps and (arrays[key] >= 0).all()


def test_html_page_shows_stored_analyses(tmp_path, capsys):
    from bitscale.analysis.store import list_analyses
    from bitscale.leaderboard.analyses_section import analyses_html

    assert analyses_html(tmp_path) is None
    assert main(["analyze", "noise-tolerance", *VAR, "--snr", "20,10,0", "--analyses", str(tmp_path)]) == 0
    html = analyses_html(tmp_path)
    assert len(list_analyses(tmp_path)) == 1
    assert "Pearson r" in html and html.count("data:image/png;base64,") == 2


def _no_phases_plugin():
    from bitscale.testing.toy import ToyFamily

    mod = types.ModuleType("no_phases")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    return mod


@pytest.mark.parametrize(
    "argv,message",
    [
        (["errors", "--family", "var-tinny", "--method", "rtn", "--precision", "W4A8"], "unknown model 'var-tinny'"),
        (["errors", *VAR, "--method", "rtn", "--precision", "W4Q8"], "cannot parse precision 'W4Q8'"),
        (["errors", *VAR], "give a quantized --precision"),
        (["errors", *VAR, "--precision", "W4A8"], "needs a quantizer"),
        (["errors", *VAR, "--method", "rtnn", "--precision", "W4A8"], "unknown quantizer 'rtnn'"),
        (["activations", *VAR, "--layer", "fc3"], "unknown layer kind 'fc3'"),
        (["activations", *VAR, "--block", "7"], "block 7 does not exist"),
        (["noise-tolerance", *VAR, "--step", "9"], "--step 9"),
        (["noise-tolerance", *VAR, "--snr", "10,0"], "at least 3 values"),
        (["activations", "--family", "var-tiny", "--size", "d9"], "no size 'd9'"),
        (["activations", *DIT, "--model-option", "sampler=euler"], "model option sampler"),
        (["activations", "--family", "toy", "--size", "d1"], "not supported: toy does not expose generation phases"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(argv, message, tmp_path, capsys, register_plugin):
    register_plugin(_no_phases_plugin(), name="no-phases")
    code, _, err = _run(capsys, "analyze", *argv, "--analyses", str(tmp_path / "a"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
