"""RTN: min-max round-to-nearest (the paper's Eq. 4-6), the baseline every method is compared to."""

from __future__ import annotations

import torch

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
from bitscale.quant.swap import set_submodule


class RTNOptions(QuantOptions):
    """RTN options: only granularity and symmetry (see ``QuantOptions`` for the defaults).

    Defaults: weights per output channel, asymmetric min-max; activations dynamic per token,
    asymmetric min-max.
    """


class RTN(ScalarQuantizer[RTNOptions]):
    """Round every weight (and activation) to the nearest point of a min-max grid; no calibration
    except for static per-tensor activation ranges."""

    name = "rtn"
    description = "min-max round-to-nearest (paper Eq. 4-6); per-channel/group weights, per-token activations"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        wspec = weight_spec(job.precision.weights, opts)
        with torch.no_grad():
            for name, lin in job.model.quant_layers().items():
                q = QuantLinear.from_linear(lin, weight_spec=wspec, act_quantizer=act_quantizer(job.precision, opts))
                set_submodule(job.model.module, name, q)
        calibrate_static_activations(job.model, job.calibration)
        return make_report(job.model, notes=f"w={wspec}" if wspec else "weights fp16")


@hookimpl
def register_quantizers(register):
    """Register RTN."""
    register(RTN)
