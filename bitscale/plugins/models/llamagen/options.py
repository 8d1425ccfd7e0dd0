"""Sampler options shared by ``llamagen`` and ``llamagen-tiny``."""

from __future__ import annotations

from bitscale.harness.contracts import PluginOptions


class LlamaGenSamplerOptions(PluginOptions):
    """Overrides of the family's sampler defaults (``None`` keeps the default; see ``sampler_from``)."""

    cfg: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
