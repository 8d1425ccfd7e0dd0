"""OmniQuant (Shao et al., 2023): learnable weight clipping and equivalent transformation.

- ``plugin``: the ``omniquant`` quantizer (options, input groups in memory-sized chunks, the hook).
- ``kernel``: the optimisation of one group of layers sharing an input (LWC + LET, Eq. 9-11).

The package is the plugin (it re-exports the hook), so its plugin name stays
``bitscale.plugins.quantizers.omniquant``.
"""

from bitscale.plugins.quantizers.omniquant.plugin import OmniQuant, OmniQuantOptions, register_quantizers

__all__ = ["OmniQuant", "OmniQuantOptions", "register_quantizers"]
