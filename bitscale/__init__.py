"""bitscale: a benchmark harness for quantized vision generative models.

The public API for plugin authors is what ``__all__`` lists: import it from here
(``from bitscale import Quantizer, QuantReport, hookimpl``), never from ``bitscale.harness`` or
``bitscale.quant``, whose modules may move. The names are resolved on first use (PEP 562), so
``import bitscale`` (and ``bitscale --help``) stays free of torch; ``docs/plugins.md`` documents each.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> "module:attribute" (the module is imported when the name is first used)
_PUBLIC: dict[str, str] = {
    # hooks
    "hookimpl": "bitscale.harness.hookspecs:hookimpl",
    # contracts
    "PluginOptions": "bitscale.harness.contracts:PluginOptions",
    "Quantizer": "bitscale.harness.contracts:Quantizer",
    "QuantJob": "bitscale.harness.contracts:QuantJob",
    "QuantReport": "bitscale.harness.contracts:QuantReport",
    "ModelFamily": "bitscale.harness.contracts:ModelFamily",
    "TrainableFamily": "bitscale.harness.contracts:TrainableFamily",
    "TrainingUnit": "bitscale.harness.training_unit:TrainingUnit",
    "GenerativeModel": "bitscale.harness.contracts:GenerativeModel",
    "GenerationPhases": "bitscale.harness.phases:GenerationPhases",
    "DistillLoss": "bitscale.harness.contracts:DistillLoss",
    # bit settings
    "Precision": "bitscale.precision:Precision",
    "NumberFormat": "bitscale.precision:NumberFormat",
    # quantization building blocks
    "QuantSpec": "bitscale.quant.formats:QuantSpec",
    "QuantLinear": "bitscale.quant.linear:QuantLinear",
    "ActQuantizer": "bitscale.quant.activation:ActQuantizer",
    "effective_weight_bits": "bitscale.quant.formats:effective_weight_bits",
    "set_submodule": "bitscale.quant.swap:set_submodule",
    "Rotation": "bitscale.quant.hadamard:Rotation",
    "TransformLinear": "bitscale.quant.transform:TransformLinear",
    "LowRankLinear": "bitscale.quant.lowrank:LowRankLinear",
    "lowrank_quantize": "bitscale.quant.lowrank:lowrank_quantize",
    "lowrank_bits": "bitscale.quant.lowrank:lowrank_bits",
    # the built-in quantizers' glue: options, specs from a Precision, reports over QuantLinears
    "QuantOptions": "bitscale.harness.quant_recipe:QuantOptions",
    "weight_spec": "bitscale.harness.quant_recipe:weight_spec",
    "act_quantizer": "bitscale.harness.quant_recipe:act_quantizer",
    "make_report": "bitscale.harness.quant_recipe:make_report",
    # errors a plugin may raise for bad input (one line, exit code 2)
    "BitscaleError": "bitscale.harness.errors:BitscaleError",
}

__all__ = [
    "__version__",
    "hookimpl",
    "PluginOptions",
    "Quantizer",
    "QuantJob",
    "QuantReport",
    "ModelFamily",
    "TrainableFamily",
    "TrainingUnit",
    "GenerativeModel",
    "GenerationPhases",
    "DistillLoss",
    "Precision",
    "NumberFormat",
    "QuantSpec",
    "QuantLinear",
    "ActQuantizer",
    "effective_weight_bits",
    "set_submodule",
    "Rotation",
    "TransformLinear",
    "LowRankLinear",
    "lowrank_quantize",
    "lowrank_bits",
    "QuantOptions",
    "weight_spec",
    "act_quantizer",
    "make_report",
    "BitscaleError",
]


def _version() -> str:
    # importlib.metadata costs ~0.1 s: read on first use of ``__version__`` only
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bitscale")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'bitscale' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(import_module(module), attr)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | {"__version__"})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time ``__getattr__`` resolves these
    from bitscale.harness.contracts import (
        DistillLoss,
        GenerativeModel,
        ModelFamily,
        PluginOptions,
        Quantizer,
        QuantJob,
        QuantReport,
        TrainableFamily,
    )
    from bitscale.harness.errors import BitscaleError
    from bitscale.harness.hookspecs import hookimpl
    from bitscale.harness.phases import GenerationPhases
    from bitscale.harness.quant_recipe import QuantOptions, act_quantizer, make_report, weight_spec
    from bitscale.harness.training_unit import TrainingUnit
    from bitscale.precision import NumberFormat, Precision
    from bitscale.quant.activation import ActQuantizer
    from bitscale.quant.formats import QuantSpec, effective_weight_bits
    from bitscale.quant.hadamard import Rotation
    from bitscale.quant.linear import QuantLinear
    from bitscale.quant.lowrank import LowRankLinear, lowrank_bits, lowrank_quantize
    from bitscale.quant.swap import set_submodule
    from bitscale.quant.transform import TransformLinear
