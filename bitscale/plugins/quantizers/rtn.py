"""RTN: min-max round-to-nearest (the paper's Eq. 4-6), the baseline every method is compared to."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch

from bitscale import hookimpl
from bitscale.harness.contracts import DistillLoss, GenerativeModel, PluginOptions, Quantizer, QuantReport
from bitscale.precision import Precision
from bitscale.quant.linear import QuantLinear
from bitscale.plugins.quantizers.recipe import (
    INT_FP_MX,
    block_format_reason,
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


class RTN(Quantizer):
    """Round every weight (and activation) to the nearest point of a min-max grid; no calibration
    except for static per-tensor activation ranges."""

    name: ClassVar[str] = "rtn"
    weight_kinds: ClassVar[frozenset[str]] = INT_FP_MX
    activation_kinds: ClassVar[frozenset[str]] = INT_FP_MX
    Options: ClassVar[type[PluginOptions]] = RTNOptions
    description: ClassVar[str] = "min-max round-to-nearest (paper Eq. 4-6); per-channel/group weights, per-token activations"

    def unsupported_reason(self, precision: Precision) -> str | None:
        return super().unsupported_reason(precision) or block_format_reason(precision, self.options)

    def quantize(
        self,
        model: GenerativeModel,
        precision: Precision,
        calibration: list[Any],
        loss: DistillLoss | None = None,
        generator: torch.Generator | None = None,
    ) -> QuantReport:
        started = time.perf_counter()
        opts: RTNOptions = self.options  # type: ignore[assignment]
        wspec = weight_spec(precision.weights, opts)
        with torch.no_grad():
            for name, lin in model.quant_layers().items():
                q = QuantLinear.from_linear(lin, weight_spec=wspec, act_quantizer=act_quantizer(precision, opts))
                set_submodule(model.module, name, q)
        calibrate_static_activations(model, calibration)
        return make_report(model, started, notes=f"w={wspec}" if wspec else "weights fp16")


@hookimpl
def register_quantizers(register):
    """Register RTN."""
    register(RTN)
