"""What every PTQ quantizer shares: options for granularity, specs from a ``Precision``, reports.

A quantizer plugin subclasses ``QuantOptions`` for its own options, turns the requested
``Precision`` into ``QuantSpec``s with ``weight_spec``/``act_quantizer``, installs
``QuantLinear``s, calibrates static activation ranges with ``calibrate_static_activations``,
and returns ``make_report``'s ``QuantReport``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator
from torch import nn

from bitscale.harness.contracts import GenerativeModel, OptionsT, PluginOptions, Quantizer, QuantReport
from bitscale.precision import NumberFormat, Precision
from bitscale.quant.activation import ActQuantizer
from bitscale.quant.capture import run_calibration
from bitscale.quant.formats import QuantSpec
from bitscale.quant.linear import QuantLinear

#: Formats every built-in scalar quantizer accepts.
INT_AND_FP: frozenset[str] = frozenset({"int", "fp"})
#: ... plus the block-scaled formats (MX, NVFP4), for quantizers whose rounding goes through
#: ``fake_quant_weight`` / ``weight_qparams`` (which apply the format's own block scales).
INT_FP_MX: frozenset[str] = frozenset({"int", "fp", "mx"})
_BOOL = TypeAdapter(bool)


class ScalarQuantizer(Quantizer[OptionsT]):
    """A quantizer whose weights and activations may take every scalar format of the recipe: int, fp and the
    block-scaled MX/NVFP4 (``weight_spec``/``activation_spec`` build them). Subclasses narrow what they need
    (``needs_weight_quant``, ``needs_activation_quant``) like any ``Quantizer``."""

    weight_kinds = activation_kinds = INT_FP_MX


class ActOptions(PluginOptions):
    """Activation-quantizer options shared by every built-in quantizer (RTN on activations)."""

    act_granularity: Literal["token", "tensor"] = Field(
        default="token", description="'token': dynamic per-token scales; 'tensor': one static calibrated scale."
    )
    act_symmetric: bool = Field(
        default=False,
        description="Symmetric int activations (no zero-point), on the restricted grid ±(2^(b-1)-1) "
        "(as SmoothQuant's reference code).",
    )


class QuantOptions(ActOptions):
    """Granularity options common to the built-in scalar quantizers (defaults follow the paper)."""

    group_size: int | None = Field(
        default=None, gt=0, description="Weight group size along input channels; None = one scale per output channel."
    )
    # One field rather than a second option for the grid: configurations that never name it keep
    # their option dump, hence their cell hashes.
    weight_symmetric: bool | Literal["restricted"] = Field(
        default=False,
        description="Symmetric int weights (no zero-point): true = all 2^b codes [-2^(b-1), 2^(b-1)-1] "
        "(GPTQ / llm-compressor's grid); 'restricted' = codes ±(2^(b-1)-1). fp formats are always symmetric.",
    )

    @field_validator("weight_symmetric", mode="before")
    @classmethod
    def _symmetric_choice(cls, value: Any) -> Any:
        # one message naming the three choices instead of pydantic's two (bool, literal) failures
        if value == "restricted":
            return value
        try:
            return _BOOL.validate_python(value)
        except ValidationError:
            raise ValueError(
                f"expected true (all 2^b codes), false (asymmetric) or 'restricted' (codes ±(2^(b-1)-1)), got {value!r}"
            ) from None


def weight_spec(fmt: NumberFormat, options: QuantOptions) -> QuantSpec | None:
    """The weight ``QuantSpec`` for ``fmt`` (``None`` when weights stay in full precision)."""
    if fmt.kind == "full":
        return None
    if fmt.kind == "mx":  # the block layout is part of the format: group_size does not apply
        return QuantSpec.block(fmt)
    gran = "group" if options.group_size else "channel"
    if fmt.kind == "fp":
        return QuantSpec(fmt, gran, options.group_size, symmetric=True)
    sym = options.weight_symmetric
    return QuantSpec(fmt, gran, options.group_size, symmetric=bool(sym), restricted=sym == "restricted")


def quantized_weight_spec(fmt: NumberFormat, options: QuantOptions) -> QuantSpec:
    """``weight_spec`` for a method that declares ``needs_weight_quant`` (its ``unsupported_reason`` rules out W16)."""
    spec = weight_spec(fmt, options)
    if spec is None:
        raise ValueError(f"{fmt} weights: nothing to quantize for a method that needs quantized weights")
    return spec


def activation_spec(fmt: NumberFormat, options: ActOptions) -> QuantSpec | None:
    """The activation ``QuantSpec`` for ``fmt`` (``None`` for A16)."""
    if fmt.kind == "full":
        return None
    if fmt.kind == "mx":
        if options.act_granularity != "token":
            raise ValueError(f"{fmt} activations are scaled per block at run time: use act_granularity 'token'")
        return QuantSpec.block(fmt, activation=True)
    if fmt.kind == "fp":
        return QuantSpec(fmt, options.act_granularity, symmetric=True)
    # Activations keep the restricted symmetric grid: the references disagree here (SmoothQuant's
    # code uses ±127 at 8 bits, compressed-tensors all 256 codes), and it is what bitscale used.
    sym = options.act_symmetric
    return QuantSpec(fmt, options.act_granularity, symmetric=sym, restricted=sym)


def act_quantizer(precision: Precision, options: ActOptions) -> ActQuantizer | None:
    """A fresh ``ActQuantizer`` for one layer, or ``None`` for weight-only precisions."""
    spec = activation_spec(precision.activations, options)
    return None if spec is None else ActQuantizer(spec)


def calibrate_static_activations(model: GenerativeModel, calibration: Iterable[Any]) -> int:
    """Observe and freeze every static ``ActQuantizer`` in ``model.module``; return how many.

    Runs after the weights are quantized, so the ranges are those the quantized model sees.
    """
    static = [m for m in model.module.modules() if isinstance(m, ActQuantizer) and m.static]
    if not static:
        return 0
    for m in static:
        m.observe()
    run_calibration(model, calibration)
    for m in static:
        m.freeze()
    return len(static)


def quant_linears(module: nn.Module) -> dict[str, QuantLinear]:
    """Every ``QuantLinear`` in ``module`` by name."""
    return {n: m for n, m in module.named_modules() if isinstance(m, QuantLinear)}


def make_report(model: GenerativeModel, notes: str = "", **extra: float) -> QuantReport:
    """``QuantReport`` over the installed ``QuantLinear``s.

    ``effective_weight_bits`` is exact storage bits (codes + scales + zero-points + codebooks)
    per quantized weight. ``extra`` adds ``quantized_params`` and ``model_effective_bits``: bits
    per parameter of the whole module, counting every parameter that is not a quantized weight
    (embeddings, heads, norms, biases) at 16 bits.
    """
    layers = quant_linears(model.module)
    if not layers:
        raise RuntimeError("no QuantLinear was installed: model.quant_layers() returned nothing?")
    numel = sum(m.weight.numel() for m in layers.values())
    bits = sum(m.storage_bits for m in layers.values())
    total_params = model.num_params()
    model_bits = bits + 16 * (total_params - numel)
    return QuantReport(
        effective_weight_bits=bits / numel,
        layers=len(layers),
        notes=notes,
        extra={
            "quantized_params": float(numel),
            "model_effective_bits": model_bits / total_params,
            **{k: float(v) for k, v in extra.items()},
        },
    )
