"""Paired metrics stored per cell, the paired leaderboard view, and `bitscale plan-power` on a small pilot."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from bitscale import hookimpl
from bitscale.cli import main
from bitscale.harness.config import parse_experiment
from bitscale.harness.planner import fp_twin, plan_grid
from bitscale.harness.plugin_loader import get_plugins
from bitscale.harness.runner import run_plan
from bitscale.testing.toy import ToyFamily


def _plugin():
    mod = types.ModuleType("toy_plugin")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    return mod


def _exp(precisions, seeds=(0, 1)):
    return parse_experiment(
        {
            "name": "pilot",
            "models": [{"family": "toy", "sizes": ["d1"]}],
            "quantizers": ["rtn"],
            "precisions": list(precisions),
            "seeds": list(seeds),
            "evaluation": {"num_samples": 60, "calibration_batches": 1, "batch_size": 30},
        },
        "pilot.yaml",
    )


@pytest.fixture
def pilot(register_plugin, bitscale_store, tmp_path, monkeypatch):
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path / "cache"))  # twin features start uncached
    register_plugin(_plugin())
    # Quantized cells first: their twins are drawn on demand, then the W16A16 cells run themselves.
    run_plan(plan_grid(_exp(["W4A16", "W3A16"]), get_plugins()), bitscale_store, get_plugins(), progress=False)
    run_plan(plan_grid(_exp(["W16A16"]), get_plugins()), bitscale_store, get_plugins(), progress=False)
    return bitscale_store


BAD = [
    (["--delta", "-1"], "--delta '-1': expected a number > 0"),
    (["--delta", "nan"], "--delta 'nan'"),
    (["--relative", "x"], "--relative 'x'"),
    (["--delta", "1", "--confidence", "1.5"], "--confidence '1.5'"),
    (["--delta", "1", "--samples", "0,5"], "--samples '0,5'"),
]


def test_paired_metrics_leaderboard_and_plan_power_on_a_pilot(pilot, capsys):
    # One pilot grid serves every check: running it is most of this test's time.
    frame = pilot.frame().set_index("cell_hash")
    quantized = frame[frame["precision"] != "W16A16"]
    full = frame[frame["precision"] == "W16A16"]
    assert len(quantized) == 4 and len(full) == 2
    assert full["dfid"].isna().all()  # W16A16 is the twin, not paired with anything
    for cell in plan_grid(_exp(["W4A16", "W3A16"]), get_plugins()).cells:
        row, twin = frame.loc[cell.hash], frame.loc[fp_twin(cell).hash]
        # The twin drawn on demand is the W16A16 cell the grid ran later: the same FID, hence the same ΔFID.
        # (FID through torch-fidelity's sqrtm, ΔFID through paired.Frechet's eigenvalues: equal to ~1e-9 of FID.)
        assert row["dfid"] == pytest.approx(row["fid"] - twin["fid"], abs=1e-8 * row["fid"])
        assert row["dfid_lo"] < row["dfid"] < row["dfid_hi"] and row["dfid_se"] > 0
        assert 0 < row["fp_distance"] < 2

    url = pilot.url
    assert main(["leaderboard", "--store", url, "--paired", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    paired = out[out.index("family,size,precision,method,seeds") :]
    lines = paired.strip().splitlines()
    assert len(lines) == 3 and all(",2," in ln for ln in lines[1:])  # W4A16 and W3A16, 2 seeds each
    assert all(("CI overlaps FP" in ln) or ("worse" in ln) or ("better" in ln) for ln in lines[1:])
    # Against a method the store lacks: a warning, and an empty table rather than a wrong one.
    assert main(["leaderboard", "--store", url, "--paired", "gptq", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "--paired: no method 'gptq'" in captured.err and "Paired ΔFID vs gptq" in captured.out

    # The HTML page carries the same paired table, in its own section.
    page = Path(url.removeprefix("sqlite:///")).with_suffix(".html")
    assert main(["leaderboard", "--store", url, "--format", "html", "--out", str(page)]) == 0
    capsys.readouterr()
    html_text = page.read_text()
    section = html_text[html_text.index('<h2 id="paired">') :]
    section = section[: section.index("<h2 ", 5)]
    assert section.count("<tr>") == 1 + 2 and "W4A16" in section and "W3A16" in section

    assert main(["plan-power", "--store", url, "--delta", "0.5", "--samples", "60,240", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split(",") for ln in out.strip().splitlines()[1:]]  # CSV: a header, then one row per count
    assert [r[4] for r in rows] == ["60", "240"]
    paired60, paired240 = int(rows[0][5]), int(rows[1][5])
    assert paired60 >= paired240 >= 2  # more samples per seed: fewer seeds
    # A smaller effect needs more seeds.
    assert main(["plan-power", "--store", url, "--delta", "0.05", "--samples", "60", "--format", "csv"]) == 0
    small = int(capsys.readouterr().out.strip().splitlines()[1].split(",")[5])
    assert small >= paired60

    for argv, message in BAD:  # bad input: one line, exit 2
        assert main(["plan-power", "--store", url, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith("bitscale: error:"), (argv, err)


def test_twin_of_a_quantized_cell_is_the_planned_w16a16_cell(register_plugin):
    register_plugin(_plugin())
    cells = plan_grid(_exp(["W16A16", "W4A16"]), get_plugins()).cells
    full = {(c.seed): c.hash for c in cells if c.precision == "W16A16"}
    for c in cells:
        if c.precision != "W16A16":
            assert fp_twin(c).hash == full[c.seed]


def test_a_store_without_a_pilot_is_refused(register_plugin, bitscale_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BITSCALE_CACHE", str(tmp_path / "cache"))
    register_plugin(_plugin())
    run_plan(
        plan_grid(_exp(["W16A16", "W4A16"], seeds=(0,)), get_plugins()), bitscale_store, get_plugins(), progress=False
    )  # one seed only: no spread to plan from
    assert main(["plan-power", "--store", bitscale_store.url, "--delta", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pilot" in err[0]
    assert main(["plan-power", "--store", str(tmp_path / "missing.db"), "--delta", "1"]) == 2
    assert np.isfinite(bitscale_store.frame()["dfid"].dropna()).all()
