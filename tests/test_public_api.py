"""The public API (``from bitscale import ...``): what it exports, that it is light, and the contracts' rules."""

import subprocess
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import bitscale
from bitscale import (
    PluginOptions,
    Precision,
    Quantizer,
    QuantJob,
    QuantReport,
    TrainableFamily,
    effective_weight_bits,
    hookimpl,
)
from bitscale.harness.plugin_loader import load_plugins
from bitscale.testing import ToyModel, candidate_precisions

ROOT = Path(bitscale.__file__).parent


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_every_public_name_resolves():
    assert "__version__" in bitscale.__all__ and len(set(bitscale.__all__)) == len(bitscale.__all__)
    for name in bitscale.__all__:
        assert getattr(bitscale, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        bitscale.Nope  # noqa: B018


def test_import_bitscale_and_the_cli_parser_import_no_heavy_library():
    heavy = (
        "torch",
        "sqlalchemy",
        "pandas",
        "pydantic",
        "matplotlib",
        "diffusers",
        "torchao",
        "torch_fidelity",
        "yaml",
        "pluggy",
        "importlib.metadata",
    )
    out = _fresh(
        "import sys, bitscale; from bitscale.cli import build_parser; "
        "build_parser(); print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{heavy!r} or m in {heavy!r})))"
    )
    assert out == ""
    # the pytest plugin loads in every pytest run where bitscale is installed: no torch until a fixture is used
    assert _fresh("import sys, bitscale.testing.pytest_plugin; print('torch' in sys.modules)") == "False"


def test_leaderboard_command_imports_no_torch(tmp_path):
    from bitscale.harness.store import ResultStore
    from bitscale.testing import synthetic

    store = ResultStore(f"sqlite:///{tmp_path / 's.db'}")
    synthetic.fill(store)
    store.dispose()
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bitscale.cli import main; "
            f"main(['leaderboard', '--store', '{tmp_path / 's.db'}']); "
            "sys.exit(3 if 'torch' in sys.modules else 0)",
        ],
        capture_output=True,
        text=True,
    )
    assert "|" in res.stdout  # the table was printed
    assert res.returncode == 0, "the leaderboard imported torch"


# ---------------------------------------------------------------- Quantizer: generic options, apply, widths


class HalfOptions(PluginOptions):
    factor: float = 0.5


class Half(Quantizer[HalfOptions]):
    """Scales weights by ``factor``: not a real quantizer, a probe of the base class."""

    name: ClassVar[str] = "half"
    weight_bits: ClassVar[frozenset[int] | None] = frozenset({4, 2})
    activation_kinds: ClassVar[frozenset[str]] = frozenset({"int"})
    activation_bits: ClassVar[frozenset[int] | None] = frozenset({8})
    needs_weight_quant: ClassVar[bool] = True
    seen: ClassVar[list] = []

    def apply(self, job: QuantJob) -> QuantReport:
        Half.seen.append(job)
        with torch.no_grad():
            for lin in job.model.quant_layers().values():
                lin.weight.mul_(self.options.factor)
        return QuantReport(effective_weight_bits=effective_weight_bits((8, 8), job.precision.w_bits))


def test_options_class_comes_from_the_type_argument():
    assert Half.Options is HalfOptions
    assert Half().options == HalfOptions() and Half(HalfOptions(factor=2.0)).options.factor == 2.0


def test_the_base_times_apply_and_passes_a_seeded_generator():
    Half.seen.clear()
    report = Half().quantize(ToyModel(), Precision.parse("W4A16"), [])
    assert report.seconds is not None and report.seconds >= 0
    job = Half.seen[0]
    assert isinstance(job.generator, torch.Generator) and job.calibration == [] and job.loss is None


@pytest.mark.parametrize(
    ("precision", "reason"),
    [
        ("W4A16", None),
        ("W2A8", None),
        ("W3A16", "quantizes weights only to 2/4 bits, not 3"),
        ("W4A4", "quantizes activations only to 8 bits, not 4"),
        ("W16A8", "with W16 there is nothing for it to do"),
        ("W4A8:fp", "quantizes weights only to int formats"),
    ],
)
def test_declared_widths_and_needs_weight_quant_are_the_unsupported_reasons(precision, reason):
    got = Half().unsupported_reason(Precision.parse(precision))
    assert got is None if reason is None else reason in got


def test_declared_widths_extend_the_contract_candidates():
    labels = candidate_precisions(Half)
    assert "W2A16" in labels and "W4A8" in labels and "W8A8" in labels  # declared 2 bits, 8-bit activations


def test_no_type_ignore_left_in_the_built_in_quantizers():
    for f in (ROOT / "plugins" / "quantizers").glob("*.py"):
        assert "type: ignore" not in f.read_text(), f


# ---------------------------------------------------------------- registries check what is registered


def test_registering_the_wrong_kind_names_the_plugin_and_skips_it(monkeypatch):
    mod = types.ModuleType("wrongplug")
    mod.register_quantizers = hookimpl(lambda register: register(Half()))  # an instance, not the class
    mod.register_models = hookimpl(lambda register: register(TrainableFamily))  # a class, not an instance
    ps = load_plugins([("wrongplug", mod)], entrypoints=False)
    errors = {e.error for e in ps.errors if e.name == "wrongplug"}
    assert any(
        "'wrongplug' registered" in e and "not a subclass of Quantizer (register the class, not an instance)" in e
        for e in errors
    ), errors
    assert any("not a ModelFamily instance (register an instance, not the class)" in e for e in errors), errors
    assert "half" not in ps.quantizers and "rtn" in ps.quantizers


def test_registering_the_wrong_kind_is_an_error_when_strict(monkeypatch):
    from bitscale.harness.errors import PluginError

    monkeypatch.setenv("BITSCALE_STRICT_PLUGINS", "1")
    mod = types.ModuleType("wrongplug")
    mod.register_losses = hookimpl(lambda register: register(object))
    with pytest.raises(PluginError, match="not a subclass of DistillLoss"):
        load_plugins([("wrongplug", mod)], entrypoints=False)


# ---------------------------------------------------------------- bit accounting


def test_effective_weight_bits_is_the_rule_of_quantizers_md():
    assert effective_weight_bits((10, 4096), 4, zero_point=True) == pytest.approx(4 + 20 / 4096)
    assert effective_weight_bits((10, 4096), 4, 128, zero_point=True) == pytest.approx(4 + 20 / 128)
    assert effective_weight_bits((10, 4096), 4, 128) == pytest.approx(4 + 16 / 128)
    assert effective_weight_bits((3, 10), 4, 0) == effective_weight_bits((3, 10), 4)  # 0: per channel, no /0
    assert effective_weight_bits((3, 10), 4, 4) == pytest.approx(4 + 3 * 16 / 10)  # groups of 4, 4, 2
    with pytest.raises(ValueError, match="group_size"):
        effective_weight_bits((3, 10), 4, -1)


def test_the_helper_agrees_with_what_rtn_reports():
    from bitscale.harness.plugin_loader import get_plugins

    rtn = get_plugins().quantizers.get("rtn")
    model = ToyModel()
    shapes = [tuple(m.weight.shape) for m in model.quant_layers().values()]
    report = rtn(rtn.Options(group_size=32)).quantize(model, Precision.parse("W3A16"), [])
    expected = sum(effective_weight_bits(s, 3, 32, zero_point=True) * s[0] * s[1] for s in shapes)
    assert report.effective_weight_bits == pytest.approx(expected / sum(s[0] * s[1] for s in shapes))
