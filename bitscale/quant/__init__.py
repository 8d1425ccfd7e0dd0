"""Shared quantization machinery: numeric formats, ``QuantLinear``, calibration hooks, swapping.

Quantizer plugins (built-in or third-party) build on these pieces:

- ``bitscale.quant.formats``: int/fp fake quantization and exact effective-bit accounting.
- ``bitscale.quant.linear``: ``QuantLinear`` (drop-in ``nn.Linear``) and ``WeightQuantizer``.
- ``bitscale.quant.activation``: ``ActQuantizer`` (dynamic per-token / static per-tensor).
- ``bitscale.quant.capture``: forward hooks for Hessians, channel statistics, input groups.
- ``bitscale.quant.hadamard``: ``Rotation`` (randomized Hadamard, dense orthogonal) for input rotations.
- ``bitscale.quant.transform``: ``TransformLinear`` (shift / smoothing / rotation, fused or online).
- ``bitscale.quant.lowrank``: ``LowRankLinear`` (quantized residual + 16-bit low-rank branch).
- ``bitscale.quant.swap``: ``set_submodule`` to replace a named layer.
- ``bitscale.quant.model``: ``QuantModel``, what the numerics need of a model (no harness contract).

The quant library imports nothing of the harness; the built-in plugins' shared glue (options, specs
from a ``Precision``, ``QuantReport`` building) is ``bitscale.plugins.quantizers.recipe``.
"""

from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec, fake_quant_activation, fake_quant_weight
from bitscale.quant.hadamard import Rotation
from bitscale.quant.linear import QuantLinear, WeightQuantizer
from bitscale.quant.lowrank import LowRankLinear, lowrank_bits, lowrank_quantize
from bitscale.quant.swap import set_submodule
from bitscale.quant.transform import TransformLinear

__all__ = [
    "ActQuantizer",
    "LowRankLinear",
    "QuantLinear",
    "QuantSpec",
    "Rotation",
    "TransformLinear",
    "WeightQuantizer",
    "fake_quant_activation",
    "fake_quant_weight",
    "lowrank_bits",
    "lowrank_quantize",
    "set_submodule",
]
