"""The shared numeric-format module: grids, saturation, agreement with torch/torchao, bit accounting."""

from __future__ import annotations

import math

import pytest
import torch

from bitscale.precision import FP_FORMATS, NumberFormat
from bitscale.quant.formats import (
    QuantSpec,
    _round_to_fp_binade,
    choose_qparams,
    fake_quant_activation,
    fake_quant_weight,
    fp_max,
    fp_representable,
    quantize_codes,
    round_to_fp,
    vq_storage_bits,
    weight_qparams,
    weight_storage_bits,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only contend on a shared 2-core machine (10x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _x(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    parts = [
        torch.randn(20000, generator=g) * 4,
        torch.randn(2000, generator=g) * 1e-3,  # subnormal territory
        torch.tensor([0.0, -0.0, 1e9, -1e9, float("inf"), -float("inf"), 6.0, 5.0, 0.25, 0.125, 448.0, 464.0]),
    ]
    return torch.cat(parts)


# --------------------------------------------------------------------------- fp


@pytest.mark.parametrize("name", list(FP_FORMATS))
def test_fp_rounds_to_representable_values_and_saturates(name: str) -> None:
    x = _x()
    q = round_to_fp(x, name, ste=False)
    assert torch.isin(q.abs(), fp_representable(name)).all()
    assert q.abs().max().item() == fp_max(name)  # +-inf and 1e9 saturate, never overflow
    assert torch.equal(torch.sign(q[q != 0]), torch.sign(x[q != 0]))
    # nearest: no representable value is strictly closer than the chosen one
    rep = fp_representable(name)
    xs = x[x.abs() <= fp_max(name)].abs()
    nearest = (xs[:, None] - rep[None]).abs().min(dim=1).values
    assert torch.allclose((q[x.abs() <= fp_max(name)].abs() - xs).abs(), nearest)


@pytest.mark.parametrize(
    "name,maximum",
    [("fp8_e4m3", 448.0), ("fp8_e5m2", 57344.0), ("fp6_e3m2", 28.0), ("fp6_e2m3", 7.5), ("fp4_e2m1", 6.0)],
)
def test_fp_max_follows_ocp_semantics(name: str, maximum: float) -> None:
    assert fp_max(name) == maximum


def test_fp4_grid_is_the_e2m1_grid() -> None:
    assert fp_representable("fp4_e2m1").tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


@pytest.mark.parametrize("name", ["fp6_e3m2", "fp6_e2m3", "fp4_e2m1"])
def test_fp_matches_torchao_floatx(name: str) -> None:
    cfp = pytest.importorskip("torchao.prototype.custom_fp_utils")
    e, m = FP_FORMATS[name]
    x = _x()
    x = x[torch.isfinite(x)]
    ref = cfp._floatx_unpacked_to_f32(cfp._f32_to_floatx_unpacked(x.float(), e, m), e, m)
    assert torch.equal(round_to_fp(x, name, ste=False), ref)


@pytest.mark.parametrize("name,dtype", [("fp8_e4m3", torch.float8_e4m3fn), ("fp8_e5m2", torch.float8_e5m2)])
def test_fp8_matches_torch_native_cast_within_range(name: str, dtype: torch.dtype) -> None:
    # round_to_fp uses torch's fp8 cast for these formats; the generic binade rounding every other
    # format uses must agree with it exactly (subnormals, ties, saturation, infinities included)
    x = _x()
    native = round_to_fp(x, name, ste=False)
    assert torch.equal(_round_to_fp_binade(x.float(), name, fp_max(name)), native)
    finite = x[torch.isfinite(x)].clamp(-fp_max(name), fp_max(name))
    assert torch.equal(round_to_fp(finite, name, ste=False), finite.to(dtype).float())
    assert native.abs().max() == fp_max(name)  # _x() holds values beyond the max and infinities


def test_fp_ties_round_to_even() -> None:
    # e2m1 between 2 and 3 has step 1: 2.5 -> 2 (even mantissa), 3.5 -> 4; 5 (between 4 and 6) -> 4
    q = round_to_fp(torch.tensor([2.5, 3.5, 5.0, 0.25, 0.75]), "fp4_e2m1", ste=False)
    assert q.tolist() == [2.0, 4.0, 4.0, 0.0, 1.0]


def test_fp_weight_fake_quant_scales_to_the_max() -> None:
    w = torch.randn(8, 32)
    spec = QuantSpec(NumberFormat("fp4_e2m1"), "channel")
    q = fake_quant_weight(w, spec)
    scale = w.abs().amax(dim=1, keepdim=True) / 6.0
    assert torch.isin((q / scale).abs().round(decimals=5), fp_representable("fp4_e2m1")).all()
    assert torch.allclose(q.abs().amax(dim=1), w.abs().amax(dim=1))  # the max is exactly representable


def test_fp_rejects_asymmetric() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        QuantSpec(NumberFormat("fp8_e4m3"), symmetric=False)


# --------------------------------------------------------------------------- int


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_int_asymmetric_matches_paper_eq_4_6(bits: int) -> None:
    w = torch.randn(16, 64) + 0.3
    spec = QuantSpec(NumberFormat(f"int{bits}"), "channel")
    scale, zero = (p[:, 0] for p in weight_qparams(w, spec))  # (rows, groups) -> (rows,)
    lo, hi = w.amin(1).clamp(max=0), w.amax(1).clamp(min=0)
    assert torch.allclose(scale, (hi - lo) / (2**bits - 1))
    assert torch.equal(zero, torch.round(-lo / scale).clamp(0, 2**bits - 1))
    codes = quantize_codes(w, scale[:, None], zero[:, None], spec)
    assert codes.min() >= 0 and codes.max() <= 2**bits - 1
    q = fake_quant_weight(w, spec)
    assert torch.allclose(q, (codes - zero[:, None]) * scale[:, None], atol=1e-6)
    # the error of round-to-nearest is at most half a step (no clipping with min-max)
    assert ((q - w).abs() <= scale[:, None] / 2 + 1e-6).all()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_int_symmetric_uses_all_codes(bits: int) -> None:
    """Full-range symmetric int: 2^b levels, codes [-2^(b-1), 2^(b-1)-1], s = max|w| / ((2^b-1)/2).

    max|w| lands exactly between two codes (2^(b-1) - 1/2 steps). Rows here have power-of-two
    scales, so that tie is exact: -max|w| takes the even code -2^(b-1), as in the references.
    """
    half_span = (2**bits - 1) / 2
    amax = torch.tensor([[0.25], [1.0], [8.0]]) * half_span
    w = torch.linspace(-1, 1, 4001) * amax
    spec = QuantSpec(NumberFormat(f"int{bits}"), "channel", symmetric=True)
    scale, zero = weight_qparams(w, spec)
    assert zero is None and not spec.has_zero_point
    scale = scale[:, 0]
    assert torch.equal(scale, amax[:, 0] / half_span)
    codes = quantize_codes(w, scale[:, None], None, spec)
    assert codes.min() == -(2 ** (bits - 1)) and codes.max() == 2 ** (bits - 1) - 1
    q = fake_quant_weight(w, spec)
    assert all(len(torch.unique(q[r])) == 2**bits for r in range(3))  # e.g. 8 levels at 3 bits
    # nothing is clipped by more than half a step (+max|w| is half a step above the top code)
    assert ((q - w).abs() <= scale[:, None] / 2 * (1 + 1e-5)).all()


def test_int3_symmetric_known_values() -> None:
    """Hand-computed: max|w| = 3.5 gives s = 3.5 / 3.5 = 1 (full) and 3.5 / 3 (restricted)."""
    w = torch.tensor([[-3.5, -1.6, 0.7, 2.625, 3.5]])
    full = fake_quant_weight(w, QuantSpec("int3", "channel", symmetric=True))
    # -3.5 ties to the even code -4; 3.5 rounds to 4 and clips to the top code 3
    assert torch.equal(full, torch.tensor([[-4.0, -2.0, 1.0, 3.0, 3.0]]))
    restricted = fake_quant_weight(w, QuantSpec("int3", "channel", symmetric=True, restricted=True))
    s = 3.5 / 3
    assert torch.allclose(restricted, torch.tensor([[-3.0, -1.0, 1.0, 2.0, 3.0]]) * s)


def test_int_symmetric_equals_the_gptq_reference_quantizer() -> None:
    """The grid of GPTQ's reference code (and gptqmodel), written out from its definition:
    unsigned codes with the fixed zero-point 2^(b-1) and scale 2 max|w| / (2^b - 1)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 128, generator=g) * torch.rand(32, 1, generator=g)
    for bits in (2, 3, 4, 8):
        maxq = 2**bits - 1
        amax = w.abs().amax(1, keepdim=True)
        s = 2 * amax / maxq
        ref = s * (torch.clamp(torch.round(w / s) + (maxq + 1) / 2, 0, maxq) - (maxq + 1) / 2)
        ours = fake_quant_weight(w, QuantSpec(f"int{bits}", "channel", symmetric=True))
        assert torch.allclose(ours, ref, atol=1e-6), bits


def test_int_symmetric_restricted_range() -> None:
    w = torch.randn(4, 32)
    spec = QuantSpec(NumberFormat("int4"), "channel", symmetric=True, restricted=True)
    scale, zero = weight_qparams(w, spec)
    assert zero is None
    scale = scale[:, 0]
    assert torch.allclose(scale, w.abs().amax(1) / 7)
    q = fake_quant_weight(w, spec)
    assert (q / scale[:, None]).round().abs().max() == 7
    assert len(torch.unique(q[0])) <= 15


@pytest.mark.parametrize(
    "symmetric,restricted,qrange",
    [
        (True, False, (-8, 7)),
        (True, True, (-7, 7)),
        (False, False, (0, 15)),
    ],
)
def test_int_grid_agrees_with_torchao_affine(symmetric: bool, restricted: bool, qrange: tuple[int, int]) -> None:
    """Our (scale, zero) through torchao's quantize/dequantize must give our fake-quant.

    torchao is only trusted here for rounding/clamping with given qparams; its asymmetric
    fake-quantizer has been seen to be wrong in 0.18, so qparams are checked against the paper.
    """
    qp = pytest.importorskip("torchao.quantization.quant_primitives")
    w = torch.randn(8, 64) * 0.5 + 0.1
    spec = QuantSpec(NumberFormat("int4"), "group", 16, symmetric=symmetric, restricted=restricted)
    scale, zero = weight_qparams(w, spec)
    qmin, qmax = qrange
    z = torch.zeros_like(scale) if zero is None else zero
    codes = qp.quantize_affine(w, (1, 16), scale, z.to(torch.int32), torch.int32, qmin, qmax)
    deq = qp.dequantize_affine(codes, (1, 16), scale, z.to(torch.int32), torch.int32, qmin, qmax)
    ours = fake_quant_weight(w, spec)
    # torchao multiplies by 1/scale, we divide (as GPTQ's code and compressed-tensors do): they may
    # round the one tie of the full symmetric grid, -max|w| at -7.5 steps, to different codes
    tie = (w / scale.repeat_interleave(16, 1)).abs().sub((qmax - qmin) / 2).abs() < 1e-4
    tie &= symmetric and not restricted
    assert torch.allclose(deq[~tie], ours[~tie], atol=1e-6)
    assert tie.sum() <= scale.numel() and torch.allclose(deq[tie], ours[tie], atol=1.01 * float(scale.max()))


def test_group_quantization_matches_per_group_loop_and_handles_ragged_groups() -> None:
    w = torch.randn(6, 40)
    spec = QuantSpec(NumberFormat("int3"), "group", 16)
    q = fake_quant_weight(w, spec)
    for lo in range(0, 40, 16):
        chunk = w[:, lo : lo + 16]
        ref = fake_quant_weight(chunk, QuantSpec(NumberFormat("int3"), "channel"))
        assert torch.allclose(q[:, lo : lo + 16], ref, atol=1e-6)


def test_per_tensor_weight() -> None:
    w = torch.randn(5, 7)
    q = fake_quant_weight(w, QuantSpec(NumberFormat("int8"), "tensor"))
    assert q.shape == w.shape and (q - w).abs().max() < (w.max() - w.min().clamp(max=0)) / 255


def test_activation_per_token_dynamic_and_static() -> None:
    x = torch.randn(2, 5, 16)
    x[0, 0] *= 100  # one loud token must not hurt the others per-token
    spec = QuantSpec(NumberFormat("int8"), "token")
    q = fake_quant_activation(x, spec)
    err = (q - x).abs()
    assert err[1].max() < 0.05 and err[0, 0].max() > err[1].max()
    tspec = QuantSpec(NumberFormat("int8"), "tensor")
    s, z = choose_qparams(x.amin(), x.amax(), tspec)
    assert torch.equal(fake_quant_activation(x, tspec, s, z), fake_quant_activation(x, tspec))


def test_ste_gradients_flow_to_input_and_scale() -> None:
    w = torch.randn(4, 8, requires_grad=True)
    spec = QuantSpec(NumberFormat("int3"), "channel")
    fake_quant_weight(w, spec).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    x = torch.randn(3, 8, requires_grad=True)
    s = torch.tensor(0.1, requires_grad=True)
    fake_quant_activation(x, QuantSpec(NumberFormat("fp8_e4m3"), "tensor"), s).pow(2).sum().backward()
    assert s.grad is not None and x.grad is not None


def test_bf16_weights_keep_dtype() -> None:
    w = torch.randn(4, 32, dtype=torch.bfloat16)
    assert fake_quant_weight(w, QuantSpec(NumberFormat("int4"), "channel")).dtype == torch.bfloat16


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="group_size"):
        QuantSpec(NumberFormat("int4"), "group")
    with pytest.raises(ValueError, match="fp16"):
        QuantSpec(NumberFormat("fp16"))
    assert QuantSpec("int4").symmetric is False and QuantSpec("fp4_e2m1").symmetric is True
    assert QuantSpec("int4", symmetric=True).restricted is False
    assert str(QuantSpec("int4", symmetric=True)) == "int4:channel:sym"
    assert str(QuantSpec("int4", symmetric=True, restricted=True)) == "int4:channel:sym-restricted"
    with pytest.raises(ValueError, match="restricted range applies to symmetric int"):
        QuantSpec("int4", restricted=True)  # asymmetric int
    with pytest.raises(ValueError, match="restricted range applies to symmetric int"):
        QuantSpec("fp4_e2m1", restricted=True)


# --------------------------------------------------------------------------- bits


def test_effective_bits_are_exact() -> None:
    shape = (4096, 4096)
    # int4 per channel, asymmetric: 4 bits + (16-bit scale + 4-bit zero) per 4096 weights
    assert weight_storage_bits(shape, QuantSpec("int4", "channel")) == 4096 * 4096 * 4 + 4096 * 20
    # int4 group 128 asymmetric: 4 + 20/128 = 4.15625 bits per weight
    g = QuantSpec("int4", "group", 128)
    assert weight_storage_bits(shape, g) / (4096 * 4096) == 4 + 20 / 128
    # symmetric and fp formats store no zero-point
    assert weight_storage_bits(shape, QuantSpec("int4", "group", 128, symmetric=True)) / 4096**2 == 4 + 16 / 128
    assert (
        weight_storage_bits(shape, QuantSpec("int4", "group", 128, symmetric=True, restricted=True)) / 4096**2
        == 4 + 16 / 128
    )
    assert weight_storage_bits(shape, QuantSpec("fp4_e2m1", "group", 32)) / 4096**2 == 4 + 0.5
    # ragged groups round up
    assert weight_storage_bits((2, 130), QuantSpec("int3", "group", 128, symmetric=True)) == 2 * 130 * 3 + 4 * 16


def test_vq_bits_count_codebooks() -> None:
    # 2-D VQ with 256 centroids: 8-bit index per 2 weights = 4 bits/weight, plus codebooks
    shape = (1024, 1024)
    bits = vq_storage_bits(shape, dim=2, codebook_size=256, num_codebooks=16)
    assert bits == 1024 * 1024 // 2 * 8 + 16 * 256 * 2 * 16
    assert math.isclose(bits / 1024**2, 4 + 16 * 256 * 2 * 16 / 1024**2)
