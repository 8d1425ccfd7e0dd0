"""DiT's sampling loop as explicit steps (``bitscale analyze``'s view of ``DiTModel.sample``).

Step ``s`` is the sampler's step ``i = N - 1 - s`` (from pure noise towards the data).
**extract** runs the (guided) DiT on the current latent ``x_i``: for DDIM the predicted noise
``eps`` (the only channels DDIM uses), for DDPM the whole output (``eps`` and the variance
channels). **reconstruct** applies the sampler's update to get the next latent ``x_{i-1}``
(DDPM draws its noise from the generator here). **advance** makes that latent the state. The
representation space is the latent space: continuous.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from bitscale.harness.phases import GenerationPhases
from bitscale.plugins.models.dit.diffusion import Diffusion, ModelFn


class DiTSteps(GenerationPhases):
    """One DiT generation from the noise drawn here (as ``DiTModel.sample_latents`` draws it)."""

    space: Literal["discrete", "continuous"] = "continuous"

    def __init__(
        self,
        model_fn: ModelFn,
        noise: torch.Tensor,
        sampler: dict[str, Any],
        generator: torch.Generator,
        decode: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.model_fn, self.x, self.generator, self._decode = model_fn, noise, generator, decode
        self.process = Diffusion(int(sampler["steps"]))
        self.kind = sampler.get("sampler", "ddpm")
        self.eta = float(sampler.get("eta", 0.0))
        self.num_steps = self.process.num_timesteps

    def _i(self, step: int) -> int:
        return self.num_steps - 1 - step

    def step_label(self, step: int) -> str:
        return f"t={int(self.process.timestep_map[self._i(step)])}"

    def extract(self, step: int) -> torch.Tensor:
        x = self.x
        t = torch.full((x.shape[0],), self._i(step), dtype=torch.long, device=x.device)
        out = self.model_fn(x, self.process.timestep_map.to(x.device)[t])
        return out[:, : x.shape[1]] if self.kind == "ddim" else out

    def reconstruct(self, step: int, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "ddim":
            # DDIM reads only eps; the variance channels it ignores are filled with zeros.
            out = torch.cat([features, torch.zeros_like(features)], dim=1)
            return self.process.ddim_step(out, self.x, self._i(step), self.generator, self.eta)
        return self.process.p_step(features, self.x, self._i(step), self.generator)

    def advance(self, step: int, reconstruction: torch.Tensor) -> None:
        self.x = reconstruction

    def output(self) -> torch.Tensor:
        return self.x

    def images(self) -> torch.Tensor:
        return self._decode(self.x)
