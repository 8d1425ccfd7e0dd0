"""Every bad input gets a one-line error naming file, field and reason; exit 2; the store is untouched."""

import os
import subprocess
import sys
import textwrap

import pytest

from bitscale.cli import main

GOOD = """
name: t
models: [{family: var-tiny, sizes: [d2]}]
quantizers: [rtn]
precisions: [W16A16, W4A16]
"""


def _run(tmp_path, capsys, yaml_text, name="exp.yaml"):
    path = tmp_path / name
    if yaml_text is not None:
        path.write_text(textwrap.dedent(yaml_text))
    store = tmp_path / "store.db"
    code = main(["run", str(path), "--store", str(store), "--no-progress"])
    err = capsys.readouterr().err
    return code, err, store


@pytest.mark.parametrize(
    "yaml_text,needle",
    [
        (GOOD.replace("[rtn]", "[rnt]"), "exp.yaml: quantizers[0].name: unknown quantizer 'rnt'; did you mean 'rtn'?"),
        (
            GOOD.replace("var-tiny", "var-tinyy"),
            "exp.yaml: models[0].family: unknown model 'var-tinyy'; did you mean 'var-tiny'",
        ),
        (GOOD.replace("W4A16]", "W4A16, 4bit]"), "exp.yaml: precisions: item 2: cannot parse precision '4bit'"),
        (GOOD.replace("W4A16]", "W0A8]"), "exp.yaml: precisions: item 1: 'W0A8': weights has 0 bits"),
        (GOOD.replace("W4A16]", "W4A33]"), "exp.yaml: precisions: item 1: 'W4A33': activations has 33 bits"),
        (GOOD + "budget: {model_bits: -5}\n", "exp.yaml: budget.model_bits: Input should be greater than 0"),
        (
            GOOD + "budget: {model_bits: 10}\n",
            "exp.yaml: budget: no cell fits model_bits <= 10; the smallest is var-tiny/d2 W4A16 rtn",
        ),
        (GOOD + "budgit: {}\n", "exp.yaml: budgit: Extra inputs are not permitted"),
        (GOOD.replace("[d2]", "[d99]"), "exp.yaml: models[0].sizes[0]: var-tiny has no size 'd99'"),
        (
            GOOD.replace("[rtn]", "[{name: rtn, options: {group_sise: 4}}]"),
            "exp.yaml: quantizers[0].options: group_sise: Extra inputs are not permitted",
        ),
        ("models: [var-tiny\nprecisions: [W4A8", "exp.yaml: malformed YAML: line"),
        ("- just\n- a list\n", "exp.yaml: the top level must be a mapping"),
        (None, "exp.yaml: experiment file not found"),
    ],
)
def test_bad_input_one_line_exit_2_store_untouched(tmp_path, capsys, yaml_text, needle):
    code, err, store = _run(tmp_path, capsys, yaml_text)
    assert code == 2
    assert needle in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("bitscale: warning")]
    assert len(lines) == 1 and lines[0].startswith("bitscale: error: ")
    assert not store.exists()  # planning fails before the store is opened


def test_unsupported_cells_are_explained(tmp_path, capsys):
    # RTN supports every integer setting, so use a weight-only quantizer asked for W8A8.
    text = GOOD.replace("[rtn]", "[fixture-wonly]").replace("W4A16]", "W8A8]")
    import types

    from bitscale import hookimpl
    from bitscale.harness.contracts import Quantizer
    from bitscale.harness.plugin_loader import load_plugins, set_plugins

    class WOnly(Quantizer):
        name = "fixture-wonly"

        def apply(self, job):
            raise AssertionError("never scheduled")

    mod = types.ModuleType("m")
    mod.register_quantizers = hookimpl(lambda register: register(WOnly))
    set_plugins(load_plugins([("m", mod)], entrypoints=False))
    path = tmp_path / "e.yaml"
    path.write_text(text.replace("[W16A16, W8A8]", "[W8A8]"))
    code = main(["run", str(path), "--store", str(tmp_path / "s.db"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "no runnable cell" in err and "fixture-wonly is weight-only" in err


def test_console_script_exit_code(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bitscale", "run", str(tmp_path / "missing.yaml"), "--store", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        env={**os.environ, "BITSCALE_NO_ENTRYPOINTS": "1"},
        timeout=300,
    )
    assert out.returncode == 2 and "experiment file not found" in out.stderr


@pytest.mark.parametrize("value, needle", [("0", "must be at least 1"), ("two", "expected a whole number")])
def test_bad_thread_count_is_a_usage_error(tmp_path, capsys, value, needle):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--threads", value, "--store", str(tmp_path / "s.db")])
    assert exc.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()
