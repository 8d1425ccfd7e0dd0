"""``bitscale plot``: PNG and SVG files per family (scaling, method comparison, Pareto), odd names survive."""

import xml.etree.ElementTree as ET

import pytest

from bitscale.cli import main
from bitscale.testing import synthetic

NAME = "q$x<&"  # a dollar sign would start matplotlib mathtext; < and & must stay valid SVG
GRID = synthetic.SyntheticGrid(
    families={"toyvar": {"d1": 100_000, "d2": 200_000, "d4": 400_000}},
    methods={"rtn": 1.0, NAME: 0.8},
    precisions=["W16A16", "W4A16", "W8A8"],
    seeds=[0, 1],
)


@pytest.fixture
def store_path(tmp_path):
    from bitscale.harness.store import ResultStore

    path = tmp_path / "s.db"
    synthetic.fill(ResultStore(f"sqlite:///{path}"), GRID)
    return path


def test_writes_png_and_svg_for_every_kind(store_path, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--store", str(store_path), "--out", str(out), "--jobs", "1", "--bootstrap", "50"]) == 0
    files = sorted(p.name for p in out.iterdir())
    stems = {f.rsplit(".", 1)[0] for f in files}
    assert {"scaling-toyvar-mt", "scaling-toyvar-ct", "pareto-toyvar"} <= stems
    methods = [s for s in stems if s.startswith("methods-toyvar-")]
    assert len(methods) == 1  # one comparison at a fixed precision by default
    assert all(f"{s}.png" in files and f"{s}.svg" in files for s in stems)
    for f in out.glob("*.png"):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for axis, words in (("mt", "total model bits"), ("ct", "total compute bits")):
        root = ET.fromstring((out / f"scaling-toyvar-{axis}.svg").read_text())  # well-formed
        assert root.tag.endswith("svg")
        text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
        # one panel per method, one line per precision, W16A16 as the reference
        assert words in text and "rtn" in text and NAME in text and "W4A16" in text and "W16A16" in text
    cmp_svg = ET.fromstring((out / f"{methods[0]}.svg").read_text())
    assert NAME in " ".join(t.text or "" for t in cmp_svg.iter() if t.tag.endswith("text"))
    assert f"wrote {len(files)} files" in capsys.readouterr().out


def test_all_precisions_kinds_and_formats_can_be_chosen(store_path, tmp_path):
    out = tmp_path / "p"
    assert (
        main(
            [
                "plot",
                "--store",
                str(store_path),
                "--out",
                str(out),
                "--jobs",
                "1",
                "--precision",
                "all",
                "--kind",
                "methods",
                "--image-format",
                "svg",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["methods-toyvar-W4A16.svg", "methods-toyvar-W8A8.svg"]


def test_empty_store_writes_nothing(tmp_path, capsys):
    from bitscale.harness.store import ResultStore

    ResultStore(f"sqlite:///{tmp_path / 'e.db'}")
    assert main(["plot", "--store", str(tmp_path / "e.db"), "--out", str(tmp_path / "o")]) == 0
    assert "no plots" in capsys.readouterr().out
