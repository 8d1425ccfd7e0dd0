"""SmoothQuant's difficulty migration, shared by every quantizer that smooths (smoothquant, svdquant).

``s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)`` per input channel, shared by the layers reading
one input; ``smooth_model`` installs smoothed, unquantized ``QuantLinear``s (the division folded
into a producing norm when exact, else kept in the layer) and checks the full-precision output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bitscale.quant.capture import input_channel_absmax, trace_input_groups
from bitscale.quant.linear import QuantLinear
from bitscale.quant.model import QuantModel
from bitscale.quant.swap import set_submodule


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
    model: QuantModel, calibration: list[Any], alpha: float, fold_into_norm: bool = True, rtol: float = 1e-3
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
