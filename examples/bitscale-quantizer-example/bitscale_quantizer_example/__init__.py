"""Power-of-two weight quantization, as a bitscale plugin (entry point group ``bitscale``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from bitscale import PluginOptions, Quantizer, QuantJob, QuantReport, effective_weight_bits, hookimpl


class Pow2Options(PluginOptions):
    scale_bits: int = Field(default=16, gt=0, description="bits stored per output channel for its scale")


class Pow2Quantizer(Quantizer[Pow2Options]):
    """Weights become sign x scale x 2^-k per output channel (logarithmic quantization)."""

    name: ClassVar[str] = "pow2"
    weight_kinds: ClassVar[frozenset[str]] = frozenset({"int"})
    # 1 sign bit + at least 1 bit of exponent: 2 bits and up
    weight_bits: ClassVar[frozenset[int] | None] = frozenset({2, 3, 4, 5, 6, 7, 8})
    needs_weight_quant: ClassVar[bool] = True
    description: ClassVar[str] = "power-of-two (log2) weights, per-channel scale"

    def apply(self, job: QuantJob) -> QuantReport:
        bits = job.precision.w_bits
        levels = 2 ** (bits - 1) - 1  # magnitudes 2^0 .. 2^-(levels-1), plus zero
        stored, count = 0.0, 0
        layers = job.model.quant_layers()
        with torch.no_grad():
            for layer in layers.values():
                w = layer.weight
                scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
                k = torch.round(-torch.log2((w.abs() / scale).clamp_min(1e-30))).clamp(0, levels - 1)
                q = torch.sign(w) * scale * torch.pow(2.0, -k)
                # Magnitudes below half the smallest level round to zero.
                q = torch.where(w.abs() < scale * 2.0 ** -(levels - 1) / 2, torch.zeros_like(q), q)
                w.copy_(q)
                # codes + one scale per output channel, no zero-point: bitscale's accounting rule
                per_weight = effective_weight_bits(tuple(w.shape), bits, scale_bits=self.options.scale_bits)
                stored += per_weight * w.numel()
                count += w.numel()
        return QuantReport(
            effective_weight_bits=stored / count, layers=len(layers), notes=f"pow2 with {levels} magnitudes per channel"
        )


@hookimpl
def register_quantizers(register):
    register(Pow2Quantizer)
