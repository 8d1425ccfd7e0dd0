"""GPTVQ (van Baalen et al., 2024): Hessian-aware vector quantization, the quantizer and its numerics.

- ``plugin``: the ``gptvq`` quantizer (options, per-layer vector length, the hook).
- ``kernel``: GPTVQ for one weight matrix (codebooks, Eq. 14 assignment, error feedback).
- ``kmeans``: the batched, importance-weighted k-means that initialises the codebooks.

The package is the plugin (it re-exports the hook), so its plugin name stays
``bitscale.plugins.quantizers.gptvq``.
"""

from bitscale.plugins.quantizers.gptvq.plugin import GPTVQ, GPTVQOptions, register_quantizers

__all__ = ["GPTVQ", "GPTVQOptions", "register_quantizers"]
