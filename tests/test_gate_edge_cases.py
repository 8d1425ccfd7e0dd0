"""The CI gate's edge cases: a failed seed, insane baselines and thresholds, a check that compares nothing."""

import json

import pytest

from bitscale.cli import main
from bitscale.harness.store import ResultStore
from bitscale.testing import synthetic

GRID = synthetic.SyntheticGrid(
    families={"toyvar": {"d1": 100_000, "d2": 200_000}},
    methods={"rtn": 1.0},
    precisions=["W16A16", "W4A16"],
    seeds=[0, 1],
    noise=0.02,
)


def _fill(path, grid=GRID, skip_seed: tuple[str, int] | None = None) -> ResultStore:
    store = ResultStore(f"sqlite:///{path}")
    for rec in synthetic.records(grid):
        r = rec["run"]
        if (
            skip_seed
            and f"{r['family']}/{r['size']} {r['precision']} {r['method']}" == skip_seed[0]
            and r["seed"] == skip_seed[1]
        ):
            continue
        store.record(**rec)
    return store


@pytest.fixture
def baseline(tmp_path):
    _fill(tmp_path / "base.db")
    out = tmp_path / "baseline.json"
    assert main(["baseline", "export", "--store", str(tmp_path / "base.db"), "--out", str(out)]) == 0
    return out


def _check(baseline, store, *extra):
    return main(["check", "--baseline", str(baseline), "--store", str(store), *extra])


def test_a_failed_seed_fails_its_cell_even_when_another_seed_scored(tmp_path, baseline, capsys):
    store = _fill(tmp_path / "ci.db", skip_seed=("toyvar/d2 W4A16 rtn", 1))
    store.record(**synthetic.failed_record("toyvar", "d2", 200_000, "W4A16", "rtn", seed=1))
    capsys.readouterr()
    assert _check(baseline, tmp_path / "ci.db") == 1
    out = capsys.readouterr().out
    assert "❌ FAILED: 1 failed" in out and "### Failed cells (1)" in out
    assert "seed 1 failed: RuntimeError: quantizer exploded; seed 0 scored" in out


def test_a_seed_that_failed_then_succeeded_is_not_a_failure(tmp_path, baseline, capsys):
    # An old failed row of seed 1 (say, a previous plugin version) is superseded by its ok run.
    store = _fill(tmp_path / "ci.db")
    store.record(**synthetic.failed_record("toyvar", "d2", 200_000, "W4A16", "rtn", seed=1))
    assert _check(baseline, tmp_path / "ci.db") == 0


def _edit(baseline, tmp_path, change) -> str:
    data = json.loads(baseline.read_text())
    change(data)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(data))  # json writes NaN / Infinity, as a careless script would
    return str(out)


def _cell(data, label="toyvar/d2 W4A16 rtn"):
    return next(c for c in data["cells"] if c["key"].startswith(label))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: _cell(d).update(mean=float("nan")), "cells.*mean.*finite"),
        (lambda d: _cell(d)["values"].update({"0": float("nan")}), "values.*finite"),
        (lambda d: _cell(d)["noise"].update(std=float("inf")), "noise.std.*finite"),
        (lambda d: _cell(d)["noise"].update(rel_std=-0.1), "rel_std.*greater than or equal to 0"),
        (lambda d: _cell(d).update(mean=_cell(d)["mean"] - 30), "mean .* is not the mean of the values"),
        (lambda d: _cell(d).update(values={}), "values.*at least 1"),
        (lambda d: d.update(cells=[]), "cells.*at least 1"),
        (lambda d: d.update(sigma=float("inf")), "sigma.*finite"),
    ],
)
def test_insane_baselines_are_input_errors(tmp_path, baseline, capsys, change, message):
    # A NaN mean passed a +30 FID regression, an infinite noise could never regress, an empty
    # baseline passed: each is now refused before anything is compared.
    _fill(tmp_path / "ci.db")
    edited = _edit(baseline, tmp_path, change)
    capsys.readouterr()
    assert main(["check", "--baseline", edited, "--store", str(tmp_path / "ci.db")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "edited.json" in err
    import re

    assert re.search(message, err), err


@pytest.mark.parametrize(
    "flags",
    [
        ["--threshold", "-1"],
        ["--threshold", "nan"],
        ["--sigma", "inf"],
        ["--sigma", "0"],
        ["--floor", "-0.5"],
        ["--max-rows", "-3"],
    ],
)
def test_insane_thresholds_are_input_errors(tmp_path, baseline, capsys, flags):
    _fill(tmp_path / "ci.db")
    try:
        code = _check(baseline, tmp_path / "ci.db", *flags)
    except SystemExit as exc:  # argparse's own check (--max-rows)
        code = exc.code
    assert code == 2 and "must be" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--sigma", "nan"], ["--noise-rel-std", "-0.02"]])
def test_insane_export_options_are_input_errors(tmp_path, capsys, flags):
    _fill(tmp_path / "base.db")
    assert (
        main(["baseline", "export", "--store", str(tmp_path / "base.db"), "--out", str(tmp_path / "b.json"), *flags])
        == 2
    )
    assert "must be a finite number" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_a_check_that_compares_nothing_does_not_pass(tmp_path, baseline, capsys):
    # The store holds another grid (another protocol, other sizes): all baseline cells are missing.
    other = synthetic.SyntheticGrid(
        families={"toyvar": {"d8": 800_000}}, methods={"rtn": 1.0}, precisions=["W16A16"], seeds=[0]
    )
    _fill(tmp_path / "ci.db", grid=other)
    capsys.readouterr()
    assert _check(baseline, tmp_path / "ci.db") == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert "❌ FAILED" in first and "nothing compared (4 of 4 baseline cells missing)" in first
