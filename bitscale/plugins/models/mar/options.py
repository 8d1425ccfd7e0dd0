"""Sampler options shared by ``mar`` and ``mar-tiny``, and the sampler settings they give."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bitscale.harness.contracts import PluginOptions
from bitscale.plugins.models.options import sampler_from


class MARSamplerOptions(PluginOptions):
    """Overrides of the family's sampler defaults (``None`` keeps the default)."""

    num_iter: int | None = Field(None, ge=1)
    sampling_steps: int | None = Field(None, ge=1, le=1000)
    cfg: float | None = None
    cfg_schedule: Literal["linear", "constant"] | None = None
    temperature: float | None = Field(None, gt=0)
    #: Clamp the diffusion head's predicted x0 to [-clip_x0, clip_x0] (scaled latents); not official.
    clip_x0: float | None = Field(None, gt=0)


def sampler_settings(opts: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Sampler defaults with the user's overrides."""
    return sampler_from(opts, defaults)
