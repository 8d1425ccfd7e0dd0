"""Power-of-two weight quantization, as a bitscale plugin (entry point group ``bitscale``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from bitscale import hookimpl
from bitscale.harness.contracts import PluginOptions, QuantReport, Quantizer


class Pow2Options(PluginOptions):
    scale_bits: int = Field(default=16, description="bits stored per output channel for its scale")


class Pow2Quantizer(Quantizer):
    """Weights become sign x scale x 2^-k per output channel (logarithmic quantization)."""

    name: ClassVar = "pow2"
    weight_kinds: ClassVar = frozenset({"int"})
    Options: ClassVar = Pow2Options
    description: ClassVar = "power-of-two (log2) weights, per-channel scale"

    def quantize(self, model, precision, calibration, loss=None, generator=None) -> QuantReport:
        levels = 2 ** (precision.w_bits - 1) - 1  # magnitudes 2^0 .. 2^-(levels-1), plus zero
        total, count = 0.0, 0
        with torch.no_grad():
            for layer in model.quant_layers().values():
                w = layer.weight
                scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
                k = torch.round(-torch.log2((w.abs() / scale).clamp_min(1e-30))).clamp(0, levels - 1)
                q = torch.sign(w) * scale * torch.pow(2.0, -k)
                # Magnitudes below half the smallest level round to zero.
                q = torch.where(w.abs() < scale * 2.0 ** -(levels - 1) / 2, torch.zeros_like(q), q)
                w.copy_(q)
                total += w.numel() * precision.w_bits + w.shape[0] * self.options.scale_bits
                count += w.numel()
        return QuantReport(effective_weight_bits=total / count, layers=len(model.quant_layers()),
                           notes=f"pow2 with {levels} magnitudes per channel")


@hookimpl
def register_quantizers(register):
    register(Pow2Quantizer)
