"""SmoothQuant (Xiao et al., 2023): move activation outliers into the weights, then quantize both.

For each group of layers reading the same input, per input channel j:
    s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)
and X -> X / s, W -> W * s, which leaves X W^T unchanged. The division of X is migrated into
the norm layer that produced X when there is one (its weight and bias are divided by s:
free at inference). Otherwise it stays inside the ``QuantLinear`` as an exact, unquantized
per-channel division before the activation quantizer. The full-precision output is checked
on a calibration batch after smoothing; if a norm turns out to feed something else too (so
migrating changed the function), every migration is undone and the divisions stay in-layer.
Weights are then rounded with RTN and activations quantized (per token by default).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from bitscale import hookimpl
from bitscale.harness.contracts import DistillLoss, GenerativeModel, PluginOptions, Quantizer, QuantReport
from bitscale.precision import Precision
from bitscale.quant.capture import input_channel_absmax, trace_input_groups
from bitscale.quant.linear import QuantLinear
from bitscale.plugins.quantizers.recipe import (
    INT_AND_FP,
    QuantOptions,
    act_quantizer,
    calibrate_static_activations,
    make_report,
    weight_spec,
)
from bitscale.quant.swap import set_submodule


class SmoothQuantOptions(QuantOptions):
    """SmoothQuant options. Default migration strength 0.5 (the paper's value for most models)."""

    alpha: float = Field(default=0.5, ge=0, le=1, description="Migration strength: 0 = none, 1 = all onto weights.")
    fold_into_norm: bool = Field(
        default=True, description="Migrate the scale into a preceding norm layer when the layer input is its output."
    )
    fp_check_rtol: float = Field(
        default=1e-3, gt=0, description="Relative tolerance of the full-precision check after smoothing."
    )


def smoothing_factors(act_absmax: Tensor, weights: list[Tensor], alpha: float) -> Tensor:
    """Per-input-channel ``s = a^alpha / w^(1-alpha)`` for layers sharing one input (float32)."""
    w_absmax = torch.stack([w.detach().abs().amax(dim=0).float() for w in weights]).amax(dim=0)
    a = act_absmax.float().to(w_absmax.device)
    s = a.clamp(min=1e-5).pow(alpha) / w_absmax.clamp(min=1e-5).pow(1 - alpha)
    # channels that never fire, or whose weights are all zero, are left alone
    s = torch.where((a > 0) & (w_absmax > 0), s, torch.ones_like(s))
    return s.clamp(min=1e-5, max=1e5)


def _relative_change(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def smooth_model(
    model: GenerativeModel, calibration: list[Any], alpha: float, fold_into_norm: bool = True, rtol: float = 1e-3
) -> dict[str, Any]:
    """Replace every quant layer by an unquantized, smoothed ``QuantLinear``; return what was done.

    The full-precision function is unchanged (checked on the first calibration batch).
    """
    layers = model.quant_layers()
    groups = trace_input_groups(model, layers, calibration[0])
    amax = input_channel_absmax(model, layers, calibration)
    with torch.no_grad():
        reference = model.forward_batch(calibration[0]).float()
    folded: list[tuple[torch.nn.Module, Tensor, list[str]]] = []
    with torch.no_grad():
        for g in groups:
            s = smoothing_factors(amax[g.members[0]], [layers[n].weight for n in g.members], alpha)
            norm = model.module.get_submodule(g.producer) if (fold_into_norm and g.producer) else None
            for n in g.members:
                lin = layers[n]
                if norm is not None:
                    q = QuantLinear.from_linear(lin, weight=lin.weight * s.to(lin.weight.dtype))
                else:
                    q = QuantLinear.from_linear(lin, smooth=s)
                set_submodule(model.module, n, q)
            if norm is not None:
                norm.weight.div_(s.to(norm.weight.dtype))
                if getattr(norm, "bias", None) is not None:
                    norm.bias.div_(s.to(norm.bias.dtype))
                folded.append((norm, s, g.members))
        change = _relative_change(model.forward_batch(calibration[0]).float(), reference)
        undone = False
        if folded and change > rtol:
            # A norm output also feeds something else: keep the divisions inside the layers.
            for norm, s, members in folded:
                norm.weight.mul_(s.to(norm.weight.dtype))
                if getattr(norm, "bias", None) is not None:
                    norm.bias.mul_(s.to(norm.bias.dtype))
                for n in members:
                    model.module.get_submodule(n).smooth = s.to(layers[n].weight.dtype).clone()
            change = _relative_change(model.forward_batch(calibration[0]).float(), reference)
            undone = True
    if change > rtol:
        raise RuntimeError(f"smoothing changed the full-precision output by {change:.2e} (> {rtol})")
    return {"groups": len(groups), "folded": 0 if undone else len(folded), "fp_change": change}


class SmoothQuant(Quantizer):
    """SmoothQuant: per-channel difficulty migration from activations to weights, then RTN."""

    name: ClassVar[str] = "smoothquant"
    weight_kinds: ClassVar[frozenset[str]] = INT_AND_FP
    activation_kinds: ClassVar[frozenset[str]] = INT_AND_FP
    needs_activation_quant: ClassVar[bool] = True
    Options: ClassVar[type[PluginOptions]] = SmoothQuantOptions
    description: ClassVar[str] = "SmoothQuant (alpha-migration of activation outliers into weights) + RTN"

    def quantize(
        self,
        model: GenerativeModel,
        precision: Precision,
        calibration: list[Any],
        loss: DistillLoss | None = None,
        generator: torch.Generator | None = None,
    ) -> QuantReport:
        started = time.perf_counter()
        opts: SmoothQuantOptions = self.options  # type: ignore[assignment]
        if not calibration:
            raise ValueError("SmoothQuant needs calibration batches for activation statistics")
        done = smooth_model(model, calibration, opts.alpha, opts.fold_into_norm, opts.fp_check_rtol)
        spec = weight_spec(precision.weights, opts)
        for q in model.quant_layers().values():
            assert isinstance(q, QuantLinear)
            if spec is not None:
                q.quantize_weight_(spec)
            q.act_quantizer = act_quantizer(precision, opts)
        calibrate_static_activations(model, calibration)
        notes = f"alpha={opts.alpha}, {done['folded']}/{done['groups']} input groups folded into norms"
        return make_report(model, started, notes=notes, **{k: float(v) for k, v in done.items()})


@hookimpl
def register_quantizers(register):
    """Register SmoothQuant."""
    register(SmoothQuant)
