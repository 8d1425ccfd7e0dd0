"""PTQ4ARVG (official code: BienLuky/PTQ4ARVG): the quantizer and its three parts, usable on their own.

- ``plugin``: the ``ptq4arvg`` quantizer (shift + smoothing folded into producers, the hook).
- ``gps``: gain-projected scaling, per-channel smoothing factors from the quantization loss.
- ``stwq``: static token-wise activation quantization (one scale per group of positions).
- ``dgc``: distribution-guided calibration (the samples farthest from their set).

The package is the plugin (it re-exports the hook), so its plugin name stays
``bitscale.plugins.quantizers.ptq4arvg``.
"""

from bitscale.plugins.quantizers.ptq4arvg.plugin import PTQ4ARVG, PTQ4ARVGOptions, register_quantizers, shift_and_scale

__all__ = ["PTQ4ARVG", "PTQ4ARVGOptions", "register_quantizers", "shift_and_scale"]
