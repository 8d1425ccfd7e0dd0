"""MAR's per-token diffusion (``DiffLoss``): cosine schedule, learned-range variance, temperature.

The process is DiT's (``dit/diffusion.py``: respacing, learned-range variance, the MSE + VLB loss)
with IDDPM's cosine betas; what the official ``DiffLoss`` adds and this module reproduces:
- training on 1000 steps, sampling on ``num_sampling_steps`` respaced ones (100 by default);
- x0 and ``q_sample`` coefficients precomputed in float64 and cast per step, as the ADM code does
  (DiT's process computes them in float32 from ``alphas_cumprod``; for MAR this matters: the
  parity test holds sampled latents to the official ones);
- sampling noise drawn at *every* step, the last one included (it is multiplied by zero there),
  and scaled by ``temperature``;
- optionally (``clip_x0``, not official) the predicted x0 clamped to a range before the posterior:
  at the first sampling step (t = 999, where the cosine schedule's capped last beta leaves
  ``alpha_bar`` = 2.4e-9) x0 is the noise-prediction error times ``sqrt(1/alpha_bar - 1)`` = 2e4,
  so a head that is not exact to 1e-4 there throws the token out of the data's range for good.
  The released heads are (the official sampler does not clip); a CPU-trained tiny head is not;
- CFG inside the head (``forward_with_cfg``): the batch is [cond; uncond] rows of ``z`` with the
  same ``x``; the guided noise replaces both halves, the variance comes from each half. Only the
  conditional half is kept, so this module runs the head on ``[x; x]`` and keeps the first half
  of every draw: the same numbers, random draws included (the uncond half's noise is drawn and
  thrown away, keeping the random stream aligned with the official one).
"""

from __future__ import annotations

import torch
from torch import nn

from bitscale.plugins.models.dit.diffusion import Diffusion

#: The official ``num_sampling_steps`` default (FID settings of every released model).
SAMPLING_STEPS = 100


class HeadDiffusion(Diffusion):
    """A cosine-schedule process over rows ``(N, C)``; ``steps=None``: the 1000-step training process."""

    def __init__(self, steps: int | None = None) -> None:
        super().__init__(steps, schedule="cosine")
        a = self.alphas_cumprod
        self.sqrt_alphas_cumprod, self.sqrt_one_minus = a.sqrt(), (1 - a).sqrt()
        self.sqrt_recip, self.sqrt_recipm1 = (1 / a).sqrt(), (1 / a - 1).sqrt()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus, t, x0) * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self._at(self.sqrt_recip, t, x_t) * x_t - self._at(self.sqrt_recipm1, t, x_t) * eps

    def head_loss(
        self, net: nn.Module, target: torch.Tensor, z: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Official ``DiffLoss.forward`` on the rows given (the masked tokens): mean of MSE + VLB."""
        t = torch.randint(self.num_timesteps, (target.shape[0],), generator=generator, device=generator.device)
        noise = torch.randn(target.shape, generator=generator, device=generator.device)
        t, noise = t.to(target.device), noise.to(target.device)
        x_t = self.q_sample(target, t, noise)
        out = net(x_t, self.timestep_map.to(t.device)[t], z)
        out, target, x_t, noise = (v[:, :, None, None] for v in (out, target, x_t, noise))  # (N, C) as maps
        loss, _ = self.training_loss(out, target, x_t, t, noise)
        return loss

    @torch.no_grad()
    def sample(
        self,
        net: nn.Module,
        z: torch.Tensor,
        generator: torch.Generator,
        temperature: float = 1.0,
        cfg: float = 1.0,
        clip_x0: float | None = None,
    ) -> torch.Tensor:
        """Token latents ``(N, C)`` for conditions ``z``: ``(N, D)``, or ``(2N, D)`` = [cond; uncond] when ``cfg != 1``;
        ``clip_x0``: clamp the predicted x0 to ``[-clip_x0, clip_x0]`` at every step (None: official)."""
        guided = cfg != 1.0
        n, c = (z.shape[0] // 2 if guided else z.shape[0]), net.in_channels
        draw = 2 * n if guided else n
        x = torch.randn((n, c), generator=generator, device=generator.device).to(z.device)
        for i in range(self.num_timesteps - 1, -1, -1):
            t = torch.full((n,), i, dtype=torch.long, device=z.device)
            t_model = self.timestep_map.to(z.device)[t]
            if guided:
                out = net(torch.cat([x, x]), torch.cat([t_model, t_model]), z)
                cond, uncond = out[:, :c].split(n)
                out = torch.cat([uncond + cfg * (cond - uncond), out[:n, c:]], dim=1)
            else:
                out = net(x, t_model, z)
            p = self.p_mean_variance(out, x, t, clip_x0)
            noise = torch.randn((draw, c), generator=generator, device=generator.device)[:n].to(z.device)
            x = p["mean"] + float(i != 0) * torch.exp(0.5 * p["log_variance"]) * noise * temperature
        return x
