"""QuaRot: the rotations alone leave the full-precision output unchanged; W4A4 beats RTN on outliers."""

import copy
import functools

import pytest
import torch

from bitscale.harness.plugin_loader import load_plugins
from bitscale.plugins.quantizers.quarot import QuaRot, rotate_model
from bitscale.precision import Precision
from bitscale.quant.formats import QuantSpec, weight_storage_bits
from bitscale.quant.transform import TransformLinear
from bitscale.testing.toy import ToyModel

PLUGINS = load_plugins(entrypoints=False)
TINY = sorted(e.name for e in PLUGINS.models if e.obj.trainable)


@functools.cache
def _pristine(family):
    fam = PLUGINS.models.get(family)
    return fam.build(fam.sizes[0], fam.Options(), torch.device("cpu"))


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", TINY)
def test_rotation_alone_keeps_fp_output_on_tiny_families(family):
    model = copy.deepcopy(_pristine(family))
    batches = model.calibration_batches(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = [model.forward_batch(b).float() for b in batches]
    done = rotate_model(model, batches, torch.Generator().manual_seed(0))
    assert all(isinstance(m, TransformLinear) and m.rotation is not None for m in model.quant_layers().values())
    with torch.no_grad():
        for b, r in zip(batches, ref):
            assert _rel(model.forward_batch(b).float(), r) < 1e-4
    assert done["fp_change"] < 1e-4


def test_norms_fold_into_toy_model():
    model = ToyModel()
    batches = model.calibration_batches(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.forward_batch(batches[1]).float()
    done = rotate_model(model, batches, torch.Generator().manual_seed(0))
    assert done["norms_folded"] >= 2  # each block's two LayerNorms feed one input group each
    with torch.no_grad():
        assert _rel(model.forward_batch(batches[1]).float(), ref) < 1e-4


@pytest.mark.parametrize("weights", ["rtn", "gptq"])
def test_quarot_runs_and_reports_rotation_bits(weights):
    model = ToyModel()
    batches = model.calibration_batches(2, torch.Generator().manual_seed(0))
    rep = QuaRot(QuaRot.Options(weights=weights)).quantize(
        model, Precision.parse("W4A4"), batches, generator=torch.Generator().manual_seed(0)
    )
    m_spec = QuantSpec("int4", "channel")
    layers = model.quant_layers().values()
    expected = sum(weight_storage_bits(tuple(m.weight.shape), m_spec) + m.in_features for m in layers)  # + sign bits
    assert rep.effective_weight_bits == pytest.approx(expected / sum(m.weight.numel() for m in layers))
    assert rep.extra["fp_change"] < 1e-4


def test_w4a4_on_an_outlier_layer_quarot_gptq_and_svdquant_beat_rtn_and_smoothquant():
    """The benchmark's synthetic layer (seed 0); bench_second_wave.py reports 3 seeds."""
    from bitscale.testing.toy import LinearModel

    errs = {}
    for label, name, opts in (
        ("rtn", "rtn", {}),
        ("sq", "smoothquant", {}),
        ("quarot", "quarot", {}),
        ("svd", "svdquant", {}),
    ):
        m, ref = LinearModel(256, 128, outlier_channels=4), LinearModel(256, 128, outlier_channels=4)
        cal = m.calibration_batches(8, torch.Generator().manual_seed(0))
        cls = PLUGINS.quantizers.get(name)
        cls(cls.Options(**opts)).quantize(m, Precision.parse("W4A4"), cal, generator=torch.Generator().manual_seed(0))
        test = m.calibration_batches(4, torch.Generator().manual_seed(1000))
        with torch.no_grad():
            errs[label] = sum(_rel(m.forward_batch(b), ref.forward_batch(b)) ** 2 for b in test)
    assert errs["quarot"] < errs["sq"] < errs["rtn"], errs
    assert errs["svd"] < errs["sq"], errs
