"""RTN: min-max round-to-nearest (the paper's Eq. 4-6), the baseline every method is compared to."""

from __future__ import annotations

from typing import ClassVar

import torch

from bitscale import QuantJob, QuantReport, Quantizer, hookimpl
from bitscale.quant.linear import QuantLinear
from bitscale.harness.quant_recipe import (
    INT_FP_MX,
    QuantOptions,
    act_quantizer,
    calibrate_static_activations,
    make_report,
    weight_spec,
)
from bitscale.quant.swap import set_submodule


class RTNOptions(QuantOptions):
    """RTN options: only granularity and symmetry (see ``QuantOptions`` for the defaults).

    Defaults: weights per output channel, asymmetric min-max; activations dynamic per token,
    asymmetric min-max.
    """


class RTN(Quantizer[RTNOptions]):
    """Round every weight (and activation) to the nearest point of a min-max grid; no calibration
    except for static per-tensor activation ranges."""

    name: ClassVar[str] = "rtn"
    weight_kinds: ClassVar[frozenset[str]] = INT_FP_MX
    activation_kinds: ClassVar[frozenset[str]] = INT_FP_MX
    description: ClassVar[str] = "min-max round-to-nearest (paper Eq. 4-6); per-channel/group weights, per-token activations"

    def apply(self, job: QuantJob) -> QuantReport:
        model, precision, calibration = job.model, job.precision, job.calibration
        opts = self.options
        wspec = weight_spec(precision.weights, opts)
        with torch.no_grad():
            for name, lin in model.quant_layers().items():
                q = QuantLinear.from_linear(lin, weight_spec=wspec, act_quantizer=act_quantizer(precision, opts))
                set_submodule(model.module, name, q)
        calibrate_static_activations(model, calibration)
        return make_report(model, notes=f"w={wspec}" if wspec else "weights fp16")


@hookimpl
def register_quantizers(register):
    """Register RTN."""
    register(RTN)
