"""Block-scaled formats (OCP MX, NVFP4): hand-computed blocks, bit accounting, grammar, torchao cross-check."""

import pytest
import torch

from bitscale.precision import NumberFormat, Precision
from bitscale.quant.formats import (
    QuantSpec,
    fake_quant_activation,
    fake_quant_block,
    fake_quant_weight,
    weight_storage_bits,
)
from bitscale.testing.toy import LinearModel


def _block(values, size=32):
    x = torch.zeros(1, size)
    x[0, : len(values)] = torch.tensor(values)
    return x


def test_mxfp4_block_by_hand():
    # max 13 -> floor(log2 13) = 3, E2M1 emax 2 -> shared scale 2^1; x/2 = .25 .5 1.5 3.5 -6.5
    # -> E2M1 (ties to even, saturating at 6): 0 .5 1.5 4 -6 -> times 2
    q = fake_quant_block(_block([0.5, 1.0, 3.0, 7.0, -13.0]), NumberFormat("mxfp4_e2m1"))
    assert q[0, :5].tolist() == [0.0, 1.0, 3.0, 8.0, -12.0]
    assert q[0, 5:].abs().sum() == 0


def test_mxfp8_and_mxint8_blocks_by_hand():
    # E4M3: max 1.5 -> scale 2^(0-8); 1.5 * 256 = 384 is on the grid, 0.3 * 256 = 76.8 -> 80 (step 8 in [64, 128))
    q = fake_quant_block(_block([1.5, 0.3]), NumberFormat("mxfp8_e4m3"))
    assert q[0, :2].tolist() == [1.5, 80 / 256]
    # MXINT8: scale 2^(0-0) = 1, values k/64: 0.3 -> 19/64, 1.5 -> 96/64
    q = fake_quant_block(_block([1.5, 0.3, -1.99]), NumberFormat("mxint8"))
    assert q[0, :3].tolist() == [1.5, 19 / 64, -127 / 64]


def test_nvfp4_two_level_scales_by_hand():
    # tensor max 12 -> S = 12 / 2688; block 1 max 12 -> e4m3(12/6/S) = 448 -> scale 2; block 2 max 3 ->
    # e4m3(112) = 112 -> scale 0.5
    x = torch.zeros(1, 32)
    x[0, :3] = torch.tensor([12.0, 5.0, -1.1])
    x[0, 16:18] = torch.tensor([3.0, 0.8])
    q = fake_quant_block(x, NumberFormat("nvfp4"))
    assert q[0, :3].tolist() == pytest.approx([12.0, 4.0, -1.0])  # 5/2 = 2.5 -> 2 (even); 0.55 -> 0.5
    assert q[0, 16:18].tolist() == pytest.approx([3.0, 0.75])  # 0.8/0.5 = 1.6 -> 1.5


def test_block_bit_accounting():
    shape = (64, 128)
    assert weight_storage_bits(shape, QuantSpec.block("mxfp4")) == 64 * 128 * 4 + 64 * 4 * 8  # 4.25 bits
    assert weight_storage_bits(shape, QuantSpec.block("mxfp6")) == 64 * 128 * 6 + 64 * 4 * 8
    assert weight_storage_bits(shape, QuantSpec.block("mxint8")) == 64 * 128 * 8 + 64 * 4 * 8
    assert weight_storage_bits(shape, QuantSpec.block("nvfp4")) == 64 * 128 * 4 + 64 * 8 * 8 + 32  # 4.5 + 32/numel
    with pytest.raises(ValueError, match="group_size 32"):
        QuantSpec("mxfp4", "group", 64)


def test_precision_grammar():
    p = Precision.parse("w=mxfp4,a=mxfp8")
    assert (p.weights.name, p.activations.name, p.label) == ("mxfp4_e2m1", "mxfp8_e4m3", "W4A8:mx")
    assert Precision.parse("W4A8:mx") == p
    assert Precision.parse("w=nvfp4,a=nvfp4").label == "w=nvfp4,a=nvfp4"
    assert Precision.parse("w=mxint8").label == "w=mxint8,a=fp16"
    assert NumberFormat.parse("mxfp6").kind == "mx" and NumberFormat.parse("mxfp6").bits == 6
    with pytest.raises(ValueError, match="MX widths"):
        Precision.parse("W3A8:mx")


def test_weights_and_activations_use_blocks_along_input_channels():
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fake_quant_weight(w, QuantSpec.block("mxfp4")), fake_quant_block(w, NumberFormat("mxfp4_e2m1")))
    a = torch.randn(2, 3, 64)
    assert torch.equal(
        fake_quant_activation(a, QuantSpec.block("mxfp8", activation=True)),
        fake_quant_block(a, NumberFormat("mxfp8_e4m3")),
    )


@pytest.mark.parametrize("name", ["rtn", "gptq", "smoothquant", "quarot", "svdquant"])
def test_quantizers_run_block_formats_with_exact_bits(name):
    from bitscale.harness.plugin_loader import load_plugins

    cls = load_plugins(entrypoints=False).quantizers.get(name)
    m = LinearModel(128, 64)
    cal = m.calibration_batches(2, torch.Generator().manual_seed(0))
    rep = cls().quantize(m, Precision.parse("w=mxfp4,a=mxfp8"), cal, generator=torch.Generator().manual_seed(0))
    if name in ("rtn", "gptq"):
        assert rep.effective_weight_bits == pytest.approx(4.25)
    assert rep.effective_weight_bits >= 4.25


def test_quantizers_without_block_support_refuse_clearly():
    from bitscale.plugins.quantizers.omniquant import OmniQuant

    assert "not mxfp4_e2m1" in OmniQuant().unsupported_reason(Precision.parse("w=mxfp4"))


def test_against_torchao_reference_casts():
    mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    consts = pytest.importorskip("torchao.prototype.mx_formats.constants")
    nv = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
    x = torch.randn(8, 128, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 128)
    for name, elem in [
        ("mxfp8_e4m3", torch.float8_e4m3fn),
        ("mxfp8_e5m2", torch.float8_e5m2),
        ("mxfp6_e3m2", consts.DTYPE_FP6_E3M2),
        ("mxfp6_e2m3", consts.DTYPE_FP6_E2M3),
        ("mxfp4_e2m1", torch.float4_e2m1fn_x2),
    ]:
        scale, data = mx.to_mx(x, elem, 32)
        ref = mx.to_dtype(data, scale, elem, 32, torch.float32)
        assert torch.equal(fake_quant_block(x, NumberFormat(name)), ref), name
    x = x / 100
    pts = nv.per_tensor_amax_to_scale(x.abs().amax())
    scale, data = nv.nvfp4_quantize(x, 16, pts)
    ref = nv.f4_unpacked_to_f32(nv.unpack_uint4(data)).reshape(8, -1, 16) * scale.float().reshape(8, -1, 1) * pts
    # same codes and block scales; the dequantized product may differ in the last float bit
    assert torch.allclose(fake_quant_block(x, NumberFormat("nvfp4")), ref.reshape(8, 128), rtol=1e-6, atol=0)


def test_static_activations_with_block_formats_are_refused_at_planning():
    from bitscale.plugins.quantizers.rtn import RTN

    reason = RTN(RTN.Options(act_granularity="tensor")).unsupported_reason(Precision.parse("w=mxfp4,a=mxfp8"))
    assert "act_granularity: token" in reason
    assert RTN(RTN.Options(act_granularity="tensor")).unsupported_reason(Precision.parse("w=mxfp4")) is None
