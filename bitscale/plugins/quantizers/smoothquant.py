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

from pydantic import Field

from bitscale import QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import (
    QuantOptions,
    ScalarQuantizer,
    act_quantizer,
    calibrate_static_activations,
    make_report,
    weight_spec,
)
from bitscale.quant.linear import QuantLinear
from bitscale.quant.smoothing import smooth_model  # also imported from here by tests


class SmoothQuantOptions(QuantOptions):
    """SmoothQuant options. Default migration strength 0.5 (the paper's value for most models)."""

    alpha: float = Field(default=0.5, ge=0, le=1, description="Migration strength: 0 = none, 1 = all onto weights.")
    fold_into_norm: bool = Field(
        default=True, description="Migrate the scale into a preceding norm layer when the layer input is its output."
    )
    fp_check_rtol: float = Field(
        default=1e-3, gt=0, description="Relative tolerance of the full-precision check after smoothing."
    )


class SmoothQuant(ScalarQuantizer[SmoothQuantOptions]):
    """SmoothQuant: per-channel difficulty migration from activations to weights, then RTN."""

    name = "smoothquant"
    needs_activation_quant = True
    needs_calibration = True
    description = "SmoothQuant (alpha-migration of activation outliers into weights) + RTN"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        done = smooth_model(job.model, job.calibration, opts.alpha, opts.fold_into_norm, opts.fp_check_rtol)
        spec = weight_spec(job.precision.weights, opts)
        for q in job.model.quant_layers().values():
            assert isinstance(q, QuantLinear)
            if spec is not None:
                q.quantize_weight_(spec)
            q.act_quantizer = act_quantizer(job.precision, opts)
        calibrate_static_activations(job.model, job.calibration)
        notes = f"alpha={opts.alpha}, {done['folded']}/{done['groups']} input groups folded into norms"
        return make_report(job.model, notes=notes, **{k: float(v) for k, v in done.items()})


@hookimpl
def register_quantizers(register):
    """Register SmoothQuant."""
    register(SmoothQuant)
