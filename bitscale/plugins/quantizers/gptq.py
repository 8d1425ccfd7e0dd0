"""GPTQ: second-order weight rounding (paper Appendix A.2, Eq. 12-13); activations, if any, RTN."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from bitscale import QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import (
    QuantOptions,
    ScalarQuantizer,
    act_quantizer,
    calibrate_static_activations,
    make_report,
    quantized_weight_spec,
)
from bitscale.quant.gptq import gptq_quantize
from bitscale.quant.linear import QuantLinear
from bitscale.quant.sequential import model_bytes, quantize_sequentially


class GPTQOptions(QuantOptions):
    """GPTQ options. Defaults follow the reference code: block 128, damping 1%, no act-order.

    Granularity options (``group_size``, symmetry, activation mode) are those of RTN; weights
    default to per-output-channel asymmetric min-max grids.
    """

    block_size: int = Field(default=128, gt=0, description="Columns per lazy-update block.")
    damp: float = Field(default=0.01, gt=0, description="Diagonal damping, a fraction of mean(diag(H)).")
    act_order: bool = Field(
        default=False, description="Quantize columns in order of decreasing Hessian diagonal (implies static groups)."
    )
    static_groups: bool = Field(
        default=False, description="Fix group scales from the original weights instead of at each group start."
    )
    hessian_memory_fraction: float = Field(
        default=0.25,
        gt=0,
        description="Hessians held at once, as a fraction of the model's size (more = fewer calibration passes).",
    )


class GPTQ(ScalarQuantizer[GPTQOptions]):
    """GPTQ weight quantization, layer by layer from streamed calibration Hessians."""

    name = "gptq"
    needs_weight_quant = True
    description = "GPTQ (Hessian-based error-compensating rounding); activations RTN per token"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        spec = quantized_weight_spec(job.precision.weights, opts)
        stats = {"fallbacks": 0, "max_damp": opts.damp}

        def layer_fn(name: str, lin: nn.Linear, h: Tensor) -> nn.Module:
            res = gptq_quantize(lin.weight, h, spec, opts.block_size, opts.damp, opts.act_order, opts.static_groups)
            stats["fallbacks"] += int(res.fell_back_to_rtn)
            stats["max_damp"] = max(stats["max_damp"], res.damp)
            return QuantLinear.from_linear(
                lin, weight=res.weight, weight_spec=spec, act_quantizer=act_quantizer(job.precision, opts)
            )

        budget = int(opts.hessian_memory_fraction * model_bytes(job.model))
        passes = quantize_sequentially(job.model, job.calibration, layer_fn, budget)
        calibrate_static_activations(job.model, job.calibration)
        notes = f"w={spec}, {passes} calibration pass(es)"
        if stats["fallbacks"]:
            notes += f"; {stats['fallbacks']} layer(s) fell back to RTN (singular Hessian)"
        return make_report(job.model, notes=notes, calibration_passes=passes, **stats)


@hookimpl
def register_quantizers(register):
    """Register GPTQ."""
    register(GPTQ)
