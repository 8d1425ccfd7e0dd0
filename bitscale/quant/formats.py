"""The one shared numeric-format module: fake quantization to int and fp ExMy, and bit accounting.

Every quantizer in bitscale goes through these functions, so that "W4" means the same grid
everywhere. All of it is vectorized (no Python loop over channels or groups) and differentiable
through a straight-through estimator (STE), so QAT methods and OmniQuant can train scales.

Integer grids
  asymmetric (default, the paper's Eq. 4-6, min-max):
      s = (u - l) / (2^b - 1),  z = clip(round(-l / s), 0, 2^b - 1),
      q = clip(round(x / s) + z, 0, 2^b - 1),  x_hat = (q - z) * s
    with l = min(X, 0), u = max(X, 0): zero is always inside the range so that exact zeros
    (padding, ReLU outputs) stay exact and the zero-point never clips (as GPTQ's reference does).
  symmetric (full range, all 2^b codes; the default symmetric grid, that of llm-compressor /
  compressed-tensors, and of GPTQ's reference code and gptqmodel except in groups without a
  negative value, where those halve the range):
      s = max|X| / ((2^b - 1) / 2),  q = clip(round(x / s), -2^(b-1), 2^(b-1) - 1)
    +-max|X| fall halfway between two codes (2^(b-1) - 1/2 steps): +max|X| rounds to the top
    code, -max|X| (ties to even) to -2^(b-1), each half a step off; no zero-point is stored.
    Rounding divides by s (as the references do; multiplying by 1/s can move that tie).
  symmetric, restricted (``restricted=True``; 2^b - 1 codes mirrored around zero, as
  SmoothQuant's reference code quantizes activations):
      s = max|X| / (2^(b-1) - 1),  q = clip(round(x / s), -(2^(b-1) - 1), 2^(b-1) - 1)
    Both symmetric grids are s = max|X| / ((qmax - qmin) / 2) over their own code range.

Floating-point ExMy grids (always symmetric: the sign bit is in the format)
  s = max|X| / fp_max(format), x_hat = round_fp(x / s) * s, where round_fp rounds to the
  nearest representable value (ties to even) and saturates at +-fp_max. Semantics follow the
  OCP specs: fp8_e4m3 is E4M3FN (max 448; the all-ones code is NaN), fp8_e5m2 is IEEE-like
  (max 57344; the top exponent is inf/NaN), and fp6/fp4 are MX element formats with no special
  values (every code is a number: fp6_e3m2 max 28, fp6_e2m3 max 7.5, fp4_e2m1 max 6).

Block-scaled ("microscaling") formats (``fmt.kind == "mx"``; ``fmt.block`` gives the layout)
  Consecutive blocks of ``size`` values along the last (input-channel) dimension share a scale:
  OCP MX v1.0 (MXFP8 E4M3/E5M2, MXFP6 E3M2/E2M3, MXFP4 E2M1, MXINT8; 32 values per block):
      X = 2^(floor(log2(max|block|)) - emax_elem)   (an E8M0 power of two, exponent clamped to +-127)
      x_hat = X * round_elem(x / X)                 (saturating at the element's max, as the spec's
                                                     "clamp to max normal" conversion)
    with emax_elem the exponent of the element's largest normal (E4M3 8, E5M2 15, E3M2 4,
    E2M3 2, E2M1 2, MXINT8 0: 2's complement with 6 fraction bits, values k/64 in [-2, 127/64]).
  NVFP4 (E2M1 values, 16 per block, an FP8 E4M3 block scale and an fp32 scale per tensor):
      S = max|W| / (448 * 6),  s_b = e4m3(clamp(max|block| / 6 / S, 2^-6, 448)),
      x_hat = s_b S round_e2m1(x / (s_b S))
    (NVIDIA's two-level recipe; torchao's ``nvfp4_quantize`` gives the same codes). Activations take S per token row instead of per tensor, so a
    token's result never depends on the rest of the batch.
  Storage: element bits per value + 8 bits per block scale (+ 32 per tensor for NVFP4); the
  block layout is part of the format, so options like ``group_size`` do not apply.

Granularity
  weights (2-D ``(out, in)``): ``"tensor"``, ``"channel"`` (one scale per output row) or
  ``"group"`` (``group_size`` consecutive input columns per row; a ragged last group is
  zero-padded, which leaves min-max statistics unchanged because zero is always in range).
  activations (``(..., C)``): ``"token"`` (dynamic, one scale per row over C) or ``"tensor"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from bitscale.precision import FP_FORMATS, NumberFormat

Granularity = Literal["tensor", "channel", "group", "token"]

#: Bits used to store one scale (fp16), the convention for every effective-bit figure.
SCALE_BITS = 16
#: Bits used to store one codebook entry (fp16) in vector quantization.
CODEBOOK_ENTRY_BITS = 16
# Smallest scale: keeps all-zero groups finite (0 / tiny = 0) without touching real data.
_MIN_SCALE = 1e-12

# Largest magnitude of each fp format (see the module docstring for the semantics).
_FP_MAX_OVERRIDES = {"fp8_e4m3": 448.0, "fp8_e5m2": 57344.0}
#: Formats torch has a dtype for (OCP FP8: e4m3 "fn" without infinities, e5m2 IEEE-like).
_NATIVE_FP8 = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is fake-quantized: number format, granularity, symmetry.

    ``symmetric=None`` picks the default for the format: asymmetric min-max for int (the
    paper's Eq. 4-6), symmetric for fp (the only option: the sign lives in the format).
    Symmetric int uses all ``2^b`` codes unless ``restricted`` (codes ``±(2^(b-1)-1)``).
    """

    fmt: NumberFormat
    granularity: Granularity = "channel"
    group_size: int | None = None
    symmetric: bool | None = None
    restricted: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.fmt, str):
            object.__setattr__(self, "fmt", NumberFormat.parse(self.fmt))
        if self.fmt.kind == "full":
            raise ValueError("QuantSpec needs a quantized format (int2..int8 or fp ExMy), not fp16")
        if self.fmt.kind == "mx":
            self._check_block()
        if self.symmetric is None:
            object.__setattr__(self, "symmetric", self.fmt.kind in ("fp", "mx"))
        if self.fmt.kind in ("fp", "mx") and not self.symmetric:
            raise ValueError(f"{self.fmt} is a sign-magnitude format: asymmetric (zero-point) fp is not defined")
        if self.restricted and not (self.fmt.kind == "int" and self.symmetric):
            raise ValueError(
                f"the restricted range applies to symmetric int only, not {self.fmt} "
                f"{'symmetric' if self.symmetric else 'asymmetric'}"
            )
        if self.granularity not in ("tensor", "channel", "group", "token"):
            raise ValueError(f"unknown granularity {self.granularity!r}")
        if self.granularity == "group":
            if self.group_size is None or self.group_size <= 0:
                raise ValueError("granularity 'group' needs a positive group_size")
        elif self.group_size is not None:
            raise ValueError(f"group_size is only meaningful with granularity 'group', not {self.granularity!r}")

    def _check_block(self) -> None:
        size = self.fmt.block.size
        ok = self.granularity == "token" or (self.granularity == "group" and self.group_size == size)
        if not ok:
            raise ValueError(
                f"{self.fmt} shares one scale per {size} values along the input channels: use "
                f"granularity 'group' with group_size {size} (weights) or 'token' (activations), "
                f"not {self.granularity!r}" + (f" {self.group_size}" if self.group_size else "")
            )

    @classmethod
    def block(cls, fmt: NumberFormat | str, activation: bool = False) -> QuantSpec:
        """The spec of a block-scaled format: its own blocks (weights) or dynamic per token (activations)."""
        f = NumberFormat.parse(fmt) if isinstance(fmt, str) else fmt
        if f.block is None:
            raise ValueError(f"{f} is not a block-scaled format")
        return cls(f, "token", symmetric=True) if activation else cls(f, "group", f.block.size, symmetric=True)

    @property
    def kind(self) -> str:
        """``"int"``, ``"fp"`` or ``"mx"`` (block-scaled)."""
        return self.fmt.kind

    @property
    def bits(self) -> int:
        return self.fmt.bits

    @property
    def has_zero_point(self) -> bool:
        return self.kind == "int" and not bool(self.symmetric)

    def __str__(self) -> str:
        sym = ("sym-restricted" if self.restricted else "sym") if self.symmetric else "asym"
        g = f"g{self.group_size}" if self.granularity == "group" else self.granularity
        return f"{self.fmt}:{g}:{sym}"


# --------------------------------------------------------------------------- primitives


def round_ste(x: Tensor) -> Tensor:
    """Round to nearest (ties to even) with an identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def int_range(bits: int, symmetric: bool, restricted: bool = False) -> tuple[int, int]:
    """Integer code range ``(qmin, qmax)``.

    Asymmetric ``[0, 2^b-1]``; symmetric ``[-2^(b-1), 2^(b-1)-1]`` (all ``2^b`` codes), or with
    ``restricted`` ``[-(2^(b-1)-1), 2^(b-1)-1]`` (one code fewer, mirrored around zero).
    """
    if not symmetric:
        return 0, 2**bits - 1
    m = 2 ** (bits - 1) - 1
    return (-m if restricted else -m - 1), m


def spec_int_range(spec: QuantSpec) -> tuple[int, int]:
    """``int_range`` of an int ``QuantSpec``."""
    return int_range(spec.bits, bool(spec.symmetric), spec.restricted)


def fp_max(fmt: NumberFormat | str) -> float:
    """Largest finite magnitude of an fp ExMy format."""
    name = str(fmt)
    if name in _FP_MAX_OVERRIDES:
        return _FP_MAX_OVERRIDES[name]
    e, m = FP_FORMATS[name]
    bias = 2 ** (e - 1) - 1
    # MX element formats: the all-ones exponent is an ordinary binade.
    return 2.0 ** ((2**e - 1) - bias) * (2 - 2.0**-m)


def fp_representable(fmt: NumberFormat | str) -> Tensor:
    """Every non-negative finite value of an fp format, sorted (for tests and documentation)."""
    name = str(fmt)
    e, m = FP_FORMATS[name]
    bias = 2 ** (e - 1) - 1
    vals = {0.0}
    for ex in range(2**e):
        for man in range(2**m):
            v = (man / 2**m) * 2.0 ** (1 - bias) if ex == 0 else (1 + man / 2**m) * 2.0 ** (ex - bias)
            if v <= fp_max(name):
                vals.add(v)
    return torch.tensor(sorted(vals), dtype=torch.float32)


def round_to_fp(x: Tensor, fmt: NumberFormat | str, ste: bool = True) -> Tensor:
    """Round ``x`` (already divided by its scale) to the nearest value of ``fmt``; saturate at +-max.

    Rounding is to nearest, ties to even, including subnormals. Works by finding each value's
    binade with ``frexp`` (exact) and rounding on that binade's step ``2^(exp - m)``.
    """
    name = str(fmt)
    top = fp_max(name)
    xf = x.float()
    if name in _NATIVE_FP8:
        # torch's own fp8 casts round the same way (round-to-nearest-even, subnormals; tested equal)
        # in one fused kernel, but overflow to NaN/inf: saturate first.
        q = xf.clamp(-top, top).to(_NATIVE_FP8[name]).float().to(x.dtype)
    else:
        q = _round_to_fp_binade(xf, name, top).to(x.dtype)
    if ste:
        return x + (q - x).detach()
    return q


def _round_to_fp_binade(xf: Tensor, name: str, top: float) -> Tensor:
    """``round_to_fp`` for any ExMy format, in float32, from each value's binade (see there)."""
    e, m = FP_FORMATS[name]
    bias = 2 ** (e - 1) - 1
    a = xf.abs().clamp(max=top)  # saturate first: also maps inf to max
    _, exp2 = torch.frexp(a)  # a = f * 2^exp2 with f in [0.5, 1)
    binade = (exp2 - 1).clamp(min=1 - bias)  # subnormals share the lowest normal binade's step
    step = torch.exp2((binade - m).float())
    q = (torch.round(a / step) * step).clamp(max=top)
    return torch.copysign(q, xf)


# --------------------------------------------------------------------------- qparams


def choose_qparams(xmin: Tensor, xmax: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor | None]:
    """Scale (and zero-point for asymmetric int) from per-group ``xmin``/``xmax``; differentiable."""
    if spec.kind == "mx":
        amax = torch.maximum(xmin.abs(), xmax.abs())
        return block_scales(amax.detach(), spec.fmt, amax.detach().amax()), None
    if spec.kind == "fp":
        amax = torch.maximum(xmin.abs(), xmax.abs())
        return (amax / fp_max(spec.fmt)).clamp(min=_MIN_SCALE), None
    qmin, qmax = spec_int_range(spec)
    if spec.symmetric:
        # max|X| maps to half the code span: (2^b - 1)/2 for the full grid, 2^(b-1) - 1 restricted
        amax = torch.maximum(xmin.abs(), xmax.abs())
        return (amax / ((qmax - qmin) / 2)).clamp(min=_MIN_SCALE), None
    lo = xmin.clamp(max=0)
    hi = xmax.clamp(min=0)
    scale = ((hi - lo) / qmax).clamp(min=_MIN_SCALE)
    zero = round_ste(-lo / scale).clamp(qmin, qmax)
    return scale, zero


def fake_quant(x: Tensor, scale: Tensor, zero: Tensor | None, spec: QuantSpec) -> Tensor:
    """Quantize-dequantize ``x`` with broadcastable ``scale``/``zero``; STE gradient to x and scale."""
    if spec.kind == "mx":
        return round_block_element(x / scale, spec.fmt) * scale
    if spec.kind == "fp":
        return round_to_fp(x / scale, spec.fmt) * scale
    qmin, qmax = spec_int_range(spec)
    if zero is None:
        return round_ste(x / scale).clamp(qmin, qmax) * scale
    return (round_ste(x / scale) + zero).clamp(qmin, qmax).sub(zero) * scale


def quantize_codes(x: Tensor, scale: Tensor, zero: Tensor | None, spec: QuantSpec) -> Tensor:
    """Integer codes (int format only), e.g. for packing or to check the grid in tests."""
    if spec.kind != "int":
        raise ValueError("integer codes exist only for int formats")
    qmin, qmax = spec_int_range(spec)
    q = torch.round(x / scale) + (zero if zero is not None else 0)
    return q.clamp(qmin, qmax).to(torch.int32)


# --------------------------------------------------------------------------- weights


def _group_view(w: Tensor, spec: QuantSpec) -> Tensor:
    """``(out, in)`` -> ``(rows, groups, len)`` so that each quantization group is a last-dim row."""
    if w.dim() != 2:
        raise ValueError(f"weights must be 2-D (out, in), got shape {tuple(w.shape)}")
    out, inp = w.shape
    if spec.granularity == "tensor":
        return w.reshape(1, 1, -1)
    if spec.granularity == "channel" or (spec.granularity == "group" and spec.group_size >= inp):
        return w.reshape(out, 1, inp)
    if spec.granularity == "group":
        gs = spec.group_size
        pad = (-inp) % gs
        if pad:  # zero padding leaves min(X, 0) / max(X, 0) / max|X| unchanged
            w = torch.nn.functional.pad(w, (0, pad))
        return w.reshape(out, -1, gs)
    raise ValueError(f"granularity {spec.granularity!r} does not apply to weights")


def weight_minmax(w: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Per-group min and max of a weight, shaped ``(rows, groups)`` like ``weight_qparams``."""
    g = _group_view(w.float(), spec)
    return g.amin(dim=-1), g.amax(dim=-1)


def weight_qparams(w: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor | None]:
    """Min-max scale/zero of a weight, shaped ``(rows, groups)`` (``(1, 1)`` for per-tensor)."""
    g = _group_view(w.float(), spec)
    if spec.kind == "mx":
        return block_scales(g.abs().amax(dim=-1), spec.fmt, g.abs().amax()), None
    scale, zero = choose_qparams(g.amin(dim=-1), g.amax(dim=-1), spec)
    return scale, zero


def fake_quant_weight(w: Tensor, spec: QuantSpec, scale: Tensor | None = None, zero: Tensor | None = None) -> Tensor:
    """Fake-quantize a ``(out, in)`` weight; min-max qparams unless ``scale``/``zero`` are given."""
    g = _group_view(w, spec)
    if scale is None and spec.kind == "mx":
        ga = g.detach().float().abs()
        scale, zero = block_scales(ga.amax(dim=-1), spec.fmt, ga.amax()), None
    elif scale is None:
        gf = g.float()
        scale, zero = choose_qparams(gf.amin(dim=-1), gf.amax(dim=-1), spec)
    z = zero.unsqueeze(-1) if zero is not None else None
    q = fake_quant(g.float(), scale.unsqueeze(-1), z, spec)
    q = q.reshape(q.shape[0], -1)[:, : w.shape[1]] if spec.granularity != "tensor" else q
    return q.reshape(w.shape).to(w.dtype)


# --------------------------------------------------------------------------- activations


def activation_minmax(x: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Min and max over each quantization group of an activation ``(..., C)`` (keepdim)."""
    if spec.granularity == "token":
        return x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    if spec.granularity == "tensor":
        return x.amin(), x.amax()
    raise ValueError(f"granularity {spec.granularity!r} does not apply to activations (use token or tensor)")


def fake_quant_activation(
    x: Tensor, spec: QuantSpec, scale: Tensor | None = None, zero: Tensor | None = None
) -> Tensor:
    """Fake-quantize an activation: dynamic (qparams from ``x``) unless static ``scale``/``zero`` given.

    Computed in float32 whatever the input dtype (a bf16 division would shift the grid).
    """
    xf = x.float()
    if spec.kind == "mx":
        if scale is not None:
            raise ValueError(f"{spec.fmt} activations are quantized dynamically per block (no static scale)")
        return fake_quant_block(xf, spec.fmt, per_row_tensor_scale=True).to(x.dtype)
    if scale is None:
        scale, zero = choose_qparams(*activation_minmax(xf, spec), spec)
    return fake_quant(xf, scale, zero, spec).to(x.dtype)


# --------------------------------------------------------------------------- bit accounting


def num_groups(shape: tuple[int, int], spec: QuantSpec) -> int:
    """How many (scale, zero) pairs a weight of ``shape`` stores under ``spec``."""
    out, inp = shape
    if spec.granularity == "tensor":
        return 1
    if spec.granularity == "channel":
        return out
    if spec.granularity == "group":
        return out * math.ceil(inp / spec.group_size)
    raise ValueError(f"granularity {spec.granularity!r} does not apply to weights")


def weight_storage_bits(shape: tuple[int, int], spec: QuantSpec, scale_bits: int = SCALE_BITS) -> int:
    """Exact bits to store a ``shape`` weight: codes + fp16 scales + b-bit zero-points (asym int).

    Block-scaled formats: element bits + 8 per block scale (E8M0 / E4M3) + NVFP4's fp32 tensor scale.
    """
    blk = spec.fmt.block
    if blk is not None:
        return shape[0] * shape[1] * spec.bits + num_groups(shape, spec) * blk.scale_bits + blk.tensor_scale_bits
    return shape[0] * shape[1] * spec.bits + num_groups(shape, spec) * _group_overhead(
        spec.bits, spec.has_zero_point, scale_bits
    )


def _group_overhead(bits: int, zero_point: bool, scale_bits: int) -> int:
    # The one rule (docs/quantizers.md "Effective bits"): a 16-bit scale per group, plus a b-bit
    # zero-point per group for asymmetric integer grids.
    return scale_bits + (bits if zero_point else 0)


def effective_weight_bits(
    shape: tuple[int, int],
    bits: int,
    group_size: int | None = None,
    *,
    zero_point: bool = False,
    scale_bits: int = SCALE_BITS,
) -> float:
    """Bits per weight of a ``(out, in)`` weight stored as ``bits``-bit codes with one scale per group.

    ``group_size`` ``None`` (or 0) means one scale per output channel; groups run along input
    channels (the last group may be shorter). Each group stores a ``scale_bits`` scale (fp16 by
    default) and, with ``zero_point`` (asymmetric integer grids), a ``bits``-bit zero-point. This is
    the accounting every built-in scalar quantizer reports (``QuantReport.effective_weight_bits``);
    block-scaled MX/NV formats count their 8-bit block scales instead (``weight_storage_bits``).
    """
    out, inp = shape
    if out <= 0 or inp <= 0:
        raise ValueError(f"a weight shape needs positive sizes, got {shape}")
    if group_size is not None and group_size < 0:
        raise ValueError(f"group_size must be positive (or None/0 for per channel), got {group_size}")
    groups = out * (math.ceil(inp / group_size) if group_size else 1)
    return (out * inp * bits + groups * _group_overhead(bits, zero_point, scale_bits)) / (out * inp)


def vq_storage_bits(
    shape: tuple[int, int],
    dim: int,
    codebook_size: int,
    num_codebooks: int,
    entry_bits: int = CODEBOOK_ENTRY_BITS,
    scale_count: int = 0,
    scale_bits: int = SCALE_BITS,
) -> int:
    """Exact bits of a vector-quantized weight: indices, codebooks, and optional per-group scales.

    Each ``dim``-vector of weights stores one ``ceil(log2(codebook_size))``-bit index; each of the
    ``num_codebooks`` codebooks stores ``codebook_size * dim`` entries of ``entry_bits``.
    """
    numel = shape[0] * shape[1]
    index_bits = math.ceil(math.log2(codebook_size)) if codebook_size > 1 else 0
    vectors = math.ceil(numel / dim)
    return vectors * index_bits + num_codebooks * codebook_size * dim * entry_bits + scale_count * scale_bits


# --------------------------------------------------------------------------- block-scaled (MX, NVFP4)

#: Exponent of the largest normal of each MX element format (``emax_elem`` in the OCP MX spec).
_ELEMENT_EMAX = {"fp8_e4m3": 8, "fp8_e5m2": 15, "fp6_e3m2": 4, "fp6_e2m3": 2, "fp4_e2m1": 2, "int8": 0}
_E8M0_MIN, _E8M0_MAX = -127, 127
_NVFP4_TENSOR_DIVISOR = 448.0 * 6.0  # e4m3 max * e2m1 max
_E4M3_SMALLEST_NORMAL = 2.0**-6


def round_block_element(x: Tensor, fmt: NumberFormat, ste: bool = True) -> Tensor:
    """Round ``x`` (already divided by its block scale) to the element grid of ``fmt``, saturating."""
    elem = fmt.block.element
    if elem == "int8":  # MXINT8: 2's complement, 6 fraction bits
        q = (torch.round(x.float() * 64).clamp(-128, 127) / 64).to(x.dtype)
        return x + (q - x).detach() if ste else q
    return round_to_fp(x, elem, ste=ste)


def block_scales(block_amax: Tensor, fmt: NumberFormat, tensor_amax: Tensor) -> Tensor:
    """The scale of each block from its ``max|x|`` (``tensor_amax`` is NVFP4's second level; broadcast)."""
    blk = fmt.block
    amax = block_amax.float()
    if blk.scale == "e8m0":
        _, exp2 = torch.frexp(amax)  # amax = f 2^exp2, f in [0.5, 1): floor(log2 amax) = exp2 - 1
        e = torch.where(amax > 0, exp2 - 1 - _ELEMENT_EMAX[blk.element], torch.full_like(exp2, _E8M0_MIN))
        return torch.exp2(e.clamp(_E8M0_MIN, _E8M0_MAX).float())
    # NVFP4: fp32 tensor scale, then each block's scale rounded to FP8 E4M3, kept within
    # [smallest normal 2^-6, 448] (as NVIDIA's recipe and torchao: a block scale is never 0)
    ts = (tensor_amax.float() / _NVFP4_TENSOR_DIVISOR).clamp(min=_MIN_SCALE)
    sb = round_to_fp((amax / fp_max(blk.element) / ts).clamp(min=_E4M3_SMALLEST_NORMAL), "fp8_e4m3", ste=False)
    return sb * ts


def fake_quant_block(x: Tensor, fmt: NumberFormat, per_row_tensor_scale: bool = False) -> Tensor:
    """Fake-quantize ``x`` ``(..., C)`` in blocks along the last dim (zero-padded), STE gradient.

    NVFP4's tensor scale is over all of ``x``, or per row (token) with ``per_row_tensor_scale``.
    """
    size = fmt.block.size
    c = x.shape[-1]
    pad = (-c) % size
    xf = x.float()
    g = torch.nn.functional.pad(xf, (0, pad)) if pad else xf
    g = g.reshape(*x.shape[:-1], -1, size)
    amax = g.detach().abs().amax(dim=-1, keepdim=True)
    tensor_amax = amax.amax(dim=-2, keepdim=True) if per_row_tensor_scale else amax.amax()
    scale = block_scales(amax, fmt, tensor_amax)
    q = (round_block_element(g / scale, fmt) * scale).reshape(*x.shape[:-1], -1)[..., :c]
    return q.to(x.dtype)
