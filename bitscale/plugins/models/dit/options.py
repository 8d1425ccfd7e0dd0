"""Sampler options shared by ``dit`` and ``dit-tiny``, and the sampler settings they give."""

from __future__ import annotations

from typing import Any, Literal

from bitscale.harness.contracts import PluginOptions
from bitscale.plugins.models.options import sampler_from


class DiTSamplerOptions(PluginOptions):
    """Overrides of the family's sampler defaults (``None`` keeps the default)."""

    sampler: Literal["ddpm", "ddim"] | None = None
    sampling_steps: int | None = None
    cfg: float | None = None


def sampler_settings(opts: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Sampler defaults with the user's overrides (``sampling_steps`` sets ``steps``: the option ``steps`` of
    ``dit-tiny`` is the number of training steps, not sampling steps)."""
    out = sampler_from(opts, {k: v for k, v in defaults.items() if k != "steps"}) | {"steps": defaults["steps"]}
    if getattr(opts, "sampling_steps", None) is not None:
        out["steps"] = opts.sampling_steps
    return out
