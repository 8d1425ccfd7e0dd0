"""`leaderboard --paired METHOD`: two quantized methods compared seed by seed on shared noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bitscale.leaderboard.paired import paired_rows, paired_table


def _runs(rows):
    base = {"source": "measured", "family": "toy", "size": "d1", "protocol_key": "p", "status": "ok"}
    df = pd.DataFrame([{**base, **r} for r in rows])
    return df.assign(value=df["fid"])


def _cell(method, precision, seed, fid, dfid, se, dist):
    return {
        "method_label": method,
        "precision": precision,
        "seed": seed,
        "fid": fid,
        "dfid": dfid,
        "dfid_se": se,
        "fp_distance": dist,
    }


def test_a_method_is_compared_seed_by_seed_with_a_conservative_error():
    runs = _runs(
        [
            _cell("rtn", "W3A16", 0, 12.0, 2.0, 0.3, 0.40),
            _cell("rtn", "W3A16", 1, 14.0, 3.0, 0.4, 0.42),
            _cell("qat+mse", "W3A16", 0, 10.5, 0.5, 0.3, 0.20),
            _cell("qat+mse", "W3A16", 1, 12.2, 1.2, 0.4, 0.22),
            # a precision rtn has no cell at: no difference can be formed, so no row
            _cell("qat+mse", "W4A16", 0, 10.1, 0.1, 0.2, 0.10),
        ]
    )
    rows = paired_rows(runs, against="rtn")
    assert list(rows["method"]) == ["qat+mse"] and list(rows["precision"]) == ["W3A16"]
    row = rows.iloc[0]
    assert row["dfid"] == pytest.approx(-1.65)  # mean of (0.5 - 2.0) and (1.2 - 3.0)
    assert row["fp_distance"] == pytest.approx(-0.20)
    # Seeds agree within their errors, so the pooled per-seed errors set the width: sqrt(se^2 + se_ref^2).
    se = np.sqrt(((0.3**2 + 0.3**2) + (0.4**2 + 0.4**2)) / 2 / 2)
    assert row["dfid_hi"] - row["dfid_lo"] == pytest.approx(2 * 1.959964 * se, rel=1e-4)
    assert row["vs_fp"] == "better"


def test_an_interval_containing_zero_says_it_overlaps_the_method():
    runs = _runs(
        [
            _cell("rtn", "W3A16", 0, 12.0, 2.0, 1.0, 0.40),
            _cell("qat+js", "W3A16", 0, 11.8, 1.8, 1.0, 0.39),
        ]
    )
    table = paired_table(runs, against="rtn")
    assert table.loc[0, "vs_rtn"] == "CI overlaps rtn"
    assert "dfid_vs_rtn" in table.columns and "dfp_distance_vs_rtn" in table.columns


def test_without_a_method_the_view_is_against_full_precision():
    runs = _runs([_cell("rtn", "W3A16", 0, 12.0, 2.0, 0.3, 0.40)])
    assert paired_rows(runs).iloc[0]["dfid"] == pytest.approx(2.0)
    assert paired_rows(runs, against="gptq").empty
