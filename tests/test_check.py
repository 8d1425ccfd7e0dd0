"""The CI regression gate: baseline export, pooled seed noise, check outcomes and exit codes."""

import json
import math

import numpy as np
import pytest

from bitscale.cli import main
from bitscale.harness.store import ResultStore
from bitscale.leaderboard.baseline import export_baseline
from bitscale.leaderboard.results import load_results
from bitscale.testing import synthetic

GRID = synthetic.SyntheticGrid(
    families={"toyvar": {"d1": 100_000, "d2": 200_000}},
    methods={"rtn": 1.0},
    precisions=["W16A16", "W8A16", "W4A16"],
    seeds=[0, 1, 2],
    noise=0.02,
)
DEGRADED = "toyvar/d2 W4A16 rtn"


def _store(
    path,
    grid=GRID,
    degrade: dict[str, float] | None = None,
    drop: str | None = None,
    protocol_change: str | None = None,
):
    """A store holding ``grid``; ``degrade`` multiplies the FID of cells whose key starts with a label."""
    store = ResultStore(f"sqlite:///{path}")
    for rec in synthetic.records(grid):
        r = rec["run"]
        label = f"{r['family']}/{r['size']} {r['precision']} {r['method']}"
        if label == drop:
            continue
        factor = (degrade or {}).get(label, 1.0)
        if label == protocol_change:
            details = {**rec["protocol"][1], "num_samples": 5000}
            rec["protocol"] = (synthetic.protocol_fingerprint(details), details)
            r["protocol_fingerprint"] = rec["protocol"][0]
        store.record(run=r, metrics={"fid": rec["metrics"]["fid"] * factor}, protocol=rec["protocol"])
    return store


@pytest.fixture
def baseline(tmp_path):
    _store(tmp_path / "base.db")
    out = tmp_path / "baseline.json"
    assert main(["baseline", "export", "--store", str(tmp_path / "base.db"), "--out", str(out)]) == 0
    return out


def _check(tmp_path, baseline, store_path, *extra):
    return main(["check", "--baseline", str(baseline), "--store", str(store_path), *extra])


def test_baseline_file_holds_values_means_and_pooled_noise(tmp_path, baseline):
    data = json.loads(baseline.read_text())
    assert data["format"] == "bitscale-baseline" and data["version"] == 1 and data["sigma"] == 3.0
    assert len(data["cells"]) == 2 * 3
    cell = next(c for c in data["cells"] if c["key"].startswith(DEGRADED))
    assert set(cell["values"]) == {"0", "1", "2"} and len(cell["hashes"]) == 3
    assert cell["mean"] == pytest.approx(np.mean(list(cell["values"].values())))
    # relative noise pooled over the two W4A16 cells (d1, d2): 3 seeds each -> 4 dof
    pool = [c for c in data["cells"] if " W4A16 " in c["key"]]
    ss = sum(
        ((np.log(list(c["values"].values())) - np.log(list(c["values"].values())).mean()) ** 2).sum() for c in pool
    )
    assert cell["noise"]["dof"] == 4 and cell["noise"]["rel_std"] == pytest.approx(math.sqrt(ss / 4))
    assert cell["noise"]["std"] == pytest.approx(cell["noise"]["rel_std"] * cell["mean"])
    assert "toyvar W4A16" in cell["noise"]["pool"]


def test_passes_on_the_baselines_own_results(tmp_path, baseline, capsys):
    assert _check(tmp_path, baseline, tmp_path / "base.db") == 0
    out = capsys.readouterr().out
    assert "✅ passed" in out and "| unchanged | 6 |" in out


def test_passes_on_a_rerun_within_noise(tmp_path, baseline):
    _store(tmp_path / "ci.db", degrade={DEGRADED: 1.01})  # 1% worse: inside 3 sigma of 2% seed noise
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 0


def test_one_degraded_cell_fails_with_a_readable_summary(tmp_path, baseline, capsys):
    _store(tmp_path / "ci.db", degrade={DEGRADED: 1.5})
    summary = tmp_path / "summary.md"
    assert (
        _check(tmp_path, baseline, tmp_path / "ci.db", "--summary", str(summary), "--json", str(tmp_path / "r.json"))
        == 1
    )
    out = capsys.readouterr().out
    assert "❌ FAILED: 1 regression" in out and "### Regressions (1)" in out
    section = out.split("### Regressions (1)")[1].split("###")[0].split("<details>")[0]
    assert DEGRADED in section and section.count("| `") == 1
    assert summary.read_text() == out
    result = json.loads((tmp_path / "r.json").read_text())
    bad = [c for c in result["cells"] if c["status"] == "regression"]
    assert len(bad) == 1 and bad[0]["key"].startswith(DEGRADED) and bad[0]["z"] > 3
    assert bad[0]["delta"] > bad[0]["threshold"] > 0


def test_improvements_are_reported_not_fatal(tmp_path, baseline, capsys):
    _store(tmp_path / "ci.db", degrade={DEGRADED: 0.6})
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 0
    assert "### Improvements (1)" in capsys.readouterr().out


def test_threshold_and_sigma_overrides(tmp_path, baseline):
    _store(tmp_path / "ci.db", degrade={DEGRADED: 1.05})
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 1
    assert _check(tmp_path, baseline, tmp_path / "ci.db", "--sigma", "50") == 0
    assert _check(tmp_path, baseline, tmp_path / "ci.db", "--threshold", "100") == 0
    assert _check(tmp_path, baseline, tmp_path / "ci.db", "--threshold", "0.01") == 1


def test_missing_new_and_failed_cells_are_reported_separately(tmp_path, baseline, capsys):
    store = _store(tmp_path / "ci.db", drop="toyvar/d1 W8A16 rtn")
    extra = synthetic.SyntheticGrid(
        families={"toyvar": {"d4": 400_000}}, methods={"rtn": 1.0}, precisions=["W4A16"], seeds=[0]
    )
    synthetic.fill(store, extra)
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 0
    out = capsys.readouterr().out
    assert "### Missing cells (1)" in out and "toyvar/d1 W8A16 rtn" in out and "was the grid run" in out
    assert "### New cells (1)" in out and "toyvar/d4 W4A16 rtn" in out
    assert _check(tmp_path, baseline, tmp_path / "ci.db", "--strict") == 1
    store.record(**synthetic.failed_record("toyvar", "d4", 400_000, "W8A16", "rtn"))
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 1
    out = capsys.readouterr().out
    assert "### Failed cells (1)" in out and "quantizer exploded" in out


def test_a_failed_baseline_cell_fails_the_check(tmp_path, baseline, capsys):
    store = _store(tmp_path / "ci.db", drop=DEGRADED)
    store.record(**synthetic.failed_record("toyvar", "d2", 200_000, "W4A16", "rtn"))
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 1
    assert "❌ FAILED: 1 failed" in capsys.readouterr().out


def test_a_protocol_change_is_missing_not_compared(tmp_path, baseline, capsys):
    _store(tmp_path / "ci.db", protocol_change=DEGRADED, degrade={DEGRADED: 3.0})
    assert _check(tmp_path, baseline, tmp_path / "ci.db") == 0
    out = capsys.readouterr().out
    assert "only under another protocol" in out and "Regressions" not in out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "baseline file not found"),
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "not a bitscale baseline"),
        ('{"format": "bitscale-baseline", "version": 99}', "version 99 is not supported"),
        ('{"format": "bitscale-baseline", "version": 1, "created": "x", "cells": [{"key": 1}]}', "cells.0"),
    ],
)
def test_bad_baseline_files_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    _store(tmp_path / "ci.db")
    assert _check(tmp_path, path, tmp_path / "ci.db") == 2
    assert message in capsys.readouterr().err


def test_missing_store_exits_2(tmp_path, baseline, capsys):
    assert _check(tmp_path, baseline, tmp_path / "nope.db") == 2
    assert "does not exist" in capsys.readouterr().err


def test_noise_must_be_measured_not_guessed(tmp_path, capsys):
    one_seed = synthetic.SyntheticGrid(
        families=GRID.families, methods=GRID.methods, precisions=GRID.precisions, seeds=[0]
    )
    _store(tmp_path / "one.db", grid=one_seed)
    out = tmp_path / "b.json"
    assert main(["baseline", "export", "--store", str(tmp_path / "one.db"), "--out", str(out)]) == 2
    assert "two or more seeds" in capsys.readouterr().err and not out.exists()
    assert (
        main(["baseline", "export", "--store", str(tmp_path / "one.db"), "--out", str(out), "--noise-rel-std", "0.03"])
        == 0
    )
    assert json.loads(out.read_text())["cells"][0]["noise"]["pool"].startswith("given on the command line")


def test_noise_falls_back_to_the_family_pool(tmp_path):
    # W8A16 cells have one seed only: their noise comes from the family's multi-seed cells
    store = _store(
        tmp_path / "s.db",
        grid=synthetic.SyntheticGrid(
            families=GRID.families, methods=GRID.methods, precisions=["W16A16", "W4A16"], seeds=[0, 1]
        ),
    )
    synthetic.fill(
        store, synthetic.SyntheticGrid(families=GRID.families, methods=GRID.methods, precisions=["W8A16"], seeds=[5])
    )
    b = export_baseline(load_results(store))
    w8 = next(c for c in b.cells if " W8A16 " in c.key)
    assert "toyvar (all precisions)" in w8.noise.pool and w8.noise.dof == 4
