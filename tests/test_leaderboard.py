"""Table-2 tables: layout, protocol guard, reasons for empty cells, deltas, every text format, escaping."""

import json

import pytest

from bitscale.leaderboard.render import render
from bitscale.leaderboard.results import load_results
from bitscale.leaderboard.table import build_tables
from bitscale.testing import synthetic

SMALL = synthetic.SyntheticGrid(
    families={"toyvar": {"d1": 100_000, "d2": 200_000, "d4": 400_000}},
    methods={"rtn": 1.0, "gptq": 0.8},
    precisions=["W16A16", "W8A16", "W4A16"],
    seeds=[0, 1],
)


@pytest.fixture
def store(bitscale_store):
    synthetic.fill(bitscale_store, SMALL)
    return bitscale_store


def _tables(store, **kw):
    r = load_results(store)
    return build_tables(r.runs, "fid", protocols=r.protocols, prepared=r.runs, **kw)


def test_layout_w16a16_first_sizes_by_params_seeds_share_a_column(store):
    (t,) = _tables(store)
    assert list(t.frame.columns) == ["d1", "d2", "d4"]
    assert list(t.frame.index) == [
        ("W16A16", "fp16"),
        ("W8A16", "gptq"),
        ("W8A16", "rtn"),
        ("W4A16", "gptq"),
        ("W4A16", "rtn"),
    ]
    # the runner's fingerprint includes the seed; both seeds must still land in one column
    assert t.seeds == 2 and t.std.notna().all().all()


def test_legacy_call_without_protocols_still_renders(store):
    tables = build_tables(store.frame(), "fid", {"toyvar": ["d4", "d2", "d1"]})
    assert tables and list(tables[0].frame.columns) == ["d4", "d2", "d1"]
    assert "toyvar" in render(tables, "github")


def test_best_per_block_is_bold_in_markdown_and_latex(store):
    (t,) = _tables(store)
    md = render([t], "github")
    gptq_w4 = next(line for line in md.splitlines() if "W4A16" in line)
    assert gptq_w4.count("**") == 6  # gptq (penalty 0.8) wins all three sizes in its block
    assert "\\textbf{" in render([t], "latex")
    assert "**" not in render([t], "plain")


def test_deltas_against_w16a16_and_against_a_method(store):
    (t,) = _tables(store)
    full = t.frame.loc[("W16A16", "fp16"), "d1"]
    rtn = t.frame.loc[("W4A16", "rtn"), "d1"]
    gptq = t.frame.loc[("W4A16", "gptq"), "d1"]
    text = render([t], "plain", with_deltas=True)
    assert f"({rtn - full:+.2f})" in text and "delta vs W16A16" in text
    text = render([t], "plain", with_deltas="rtn")
    assert f"({gptq - rtn:+.2f})" in text and "delta vs rtn" in text
    rows = json.loads(render([t], "json", with_deltas="rtn"))
    cell = next(r for r in rows if r["precision"] == "W4A16" and r["method"] == "gptq" and r["size"] == "d1")
    assert cell["delta"] == pytest.approx(gptq - rtn)


def test_csv_and_json_exports_carry_every_cell(store):
    (t,) = _tables(store)
    csv = render([t], "csv").splitlines()
    assert csv[0].startswith("family,source,table,precision,method,size,mean,std")
    assert len(csv) == 1 + 5 * 3
    rows = json.loads(render([t], "json"))
    assert {r["seeds"] for r in rows} == {2} and all(r["runs"].count(",") == 1 for r in rows)


def test_protocol_guard_separates_columns_and_explains_holes(store):
    # the same cells measured under another protocol (more samples): a separate table
    other = synthetic.SyntheticGrid(
        families={"toyvar": {"d1": 100_000, "d8": 800_000}},
        methods={"rtn": 1.0},
        precisions=["W16A16", "W4A16"],
        seeds=[0],
        experiment="bigger",
    )
    for rec in synthetic.records(other):
        details = {**rec["protocol"][1], "num_samples": 5000}
        fp = synthetic.protocol_fingerprint(details)
        rec["run"]["protocol_fingerprint"] = fp
        store.record(run=rec["run"], metrics=rec["metrics"], protocol=(fp, details))
    store.record(**synthetic.failed_record("toyvar", "d2", 200_000, "W4A16", "awq"))
    tables = _tables(store)
    assert len(tables) == 2
    main = next(t for t in tables if "d4" in t.frame.columns)
    side = next(t for t in tables if "d8" in t.frame.columns)
    assert list(main.frame.columns) == ["d1", "d2", "d4"]  # d8 never joins the first protocol's columns
    assert {"d1", "d8"} <= set(side.frame.columns) and "d4" not in side.frame.columns
    assert main.protocol != side.protocol
    assert main.missing[("W4A16", "awq", "d2")].startswith("failed: RuntimeError: quantizer exploded")
    assert main.missing[("W4A16", "awq", "d1")] == "not run"
    # the failed d2 cell has no protocol: the side table shows its column, and explains its holes
    assert "only under another protocol" in side.missing[("W16A16", "fp16", "d2")]
    text = render([main], "github")
    assert "— [" in text and "failed: RuntimeError: quantizer exploded" in text


def test_cell_measured_only_under_another_protocol_says_so(bitscale_store):
    grid = synthetic.SyntheticGrid(
        families={"f": {"d1": 1000, "d2": 2000}}, methods={"rtn": 1.0}, precisions=["W16A16", "W4A16"], seeds=[0]
    )
    for rec in synthetic.records(grid):
        if rec["run"]["precision"] == "W4A16" and rec["run"]["size"] == "d2":
            details = {**rec["protocol"][1], "sampler": {"top_k": 5}}
            rec["protocol"] = (synthetic.protocol_fingerprint(details), details)
            rec["run"]["protocol_fingerprint"] = rec["protocol"][0]
        bitscale_store.record(**rec)
    main = next(t for t in _tables(bitscale_store) if ("W16A16", "fp16") in t.frame.index)
    assert "only under another protocol" in main.missing[("W4A16", "rtn", "d2")]


def test_option_variants_of_one_method_are_separate_rows(bitscale_store):
    # Table 4: TopKLD at several K in one grid must give one row per K, not their average; options
    # every run shares (the QAT steps here) stay out of the labels.
    grid = synthetic.SyntheticGrid(
        families={"f": {"d1": 1000, "d2": 2000}},
        methods={"qat+topkld": 1.0},
        precisions=["W16A16", "W3A16"],
        seeds=[0, 1],
    )
    for k in (128, 32):
        for rec in synthetic.records(grid):
            run = rec["run"]
            if run["method"] == "qat":
                run["cell_hash"] += f"-k{k}"
                run["config"] = {"quantizer_options": {"steps": 100}, "loss_options": {"k": k, "temperature": 1.0}}
                rec["metrics"] = {"fid": rec["metrics"]["fid"] + k}
            bitscale_store.record(**rec)
    (t,) = _tables(bitscale_store)
    # ... in numeric order of K, as the paper's Table 4
    assert list(t.frame.index) == [("W16A16", "fp16"), ("W3A16", "qat+topkld(k=32)"), ("W3A16", "qat+topkld(k=128)")]
    assert t.frame.loc[("W3A16", "qat+topkld(k=128)"), "d1"] - t.frame.loc[
        ("W3A16", "qat+topkld(k=32)"), "d1"
    ] == pytest.approx(96)


def test_names_from_plugins_are_escaped_in_every_format(bitscale_store):
    grid = synthetic.SyntheticGrid(
        families={"fam_1|x": {"d1": 1000, "d2": 2000}},
        methods={"<b>q&a_%|$</b>": 1.0},
        precisions=["W16A16", "W4A16"],
        seeds=[0],
    )
    synthetic.fill(bitscale_store, grid)
    tables = _tables(bitscale_store)
    latex = render(tables, "latex")
    assert r"q\&a\_\%" in latex and r"\$" in latex and "<b>q&a" not in latex
    md = render(tables, "github")
    assert "&lt;b>q&amp;a_%\\|$&lt;/b>" in md and "<b>" not in md
    html = render(tables, "html")
    assert "<b>q&a" not in html and "&lt;b&gt;q&amp;a_%|$&lt;/b&gt;" in html


def test_empty_store_says_what_to_do(bitscale_store):
    assert "Run `bitscale run` first" in render(_tables(bitscale_store), "github")


def test_cli_renders_each_format_and_the_analysis_sections(store, tmp_path, capsys):
    from bitscale.cli import main

    db = store.url.removeprefix("sqlite:///")
    assert main(["leaderboard", "--store", db, "--format", "latex", "--deltas"]) == 0
    assert "\\begin{tabular}" in capsys.readouterr().out
    assert (
        main(
            [
                "leaderboard",
                "--store",
                db,
                "--deltas",
                "rtn",
                "--budget",
                "model_bits=1.6e6",
                "--budget",
                "compute_bits=2e7",
                "--pareto",
                "mt",
                "--fits",
                "--bootstrap",
                "50",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for heading in (
        "delta vs rtn",
        "Best (size, precision) per method within model_bits <= 1.6e+06",
        "within compute_bits <= 2e+07",
        "Optimal precision at the budget",
        "Pareto front: FID vs mt",
        "Power-law fits",
        "Bivariate fits",
        "Shift vs the W16A16 curve",
    ):
        assert heading in out
    csv = tmp_path / "t.csv"
    assert main(["leaderboard", "--store", db, "--format", "csv", "--out", str(csv)]) == 0
    assert csv.read_text().startswith("family,source,table,precision,method,size,mean,std")
    assert main(["leaderboard", "--store", db, "--budget", "flops=3"]) == 2
    assert main(["leaderboard", "--store", str(tmp_path / "none.db")]) == 2
