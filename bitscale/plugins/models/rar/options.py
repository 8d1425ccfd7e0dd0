"""Sampler options shared by ``rar`` and ``rar-tiny``."""

from __future__ import annotations

from bitscale.harness.contracts import PluginOptions


class RARSamplerOptions(PluginOptions):
    """Overrides of the family's sampler defaults (``None`` keeps the default; see ``sampler_from``)."""

    guidance: float | None = None
    guidance_pow: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
