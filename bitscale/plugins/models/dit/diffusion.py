"""DiT's Gaussian diffusion (ADM/IDDPM ``gaussian_diffusion`` + ``respace``), written from the equations.

What the official sampler does and this module reproduces:
- linear betas from 1e-4 to 0.02 over 1000 steps, computed in float64;
- respacing to N steps by evenly spaced section counts (``space_timesteps(1000, "250")`` gives
  0, 4, 8, ..., 999), with the betas recomputed from the kept ``alphas_cumprod`` and the model
  called with the *original* timestep indices;
- epsilon prediction with ``LEARNED_RANGE`` variance: the second half of the output channels
  interpolates log-variance between the clipped posterior variance and beta;
- ancestral sampling without clipping of x0 (``clip_denoised=False``), no noise at the last step;
- DDIM (eta 0 by default) over the same respaced steps, as ``ddim_sample_loop``.

Numbers that differ from running the official script with the same seed: the noise comes from the
``torch.Generator`` passed in (the official script uses the global RNG and draws noise for the
doubled CFG batch), so the images for a given seed differ while the distribution is the same.
Timestep embeddings use frequency shift 0 like the official DiT (diffusers' ``DiTPipeline`` uses
shift 1 and fixed variance, which is why it is not used here).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: ``model_fn(x_t, t_original) -> (B, 2C, H, W)`` output (eps, variance values).
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(num_steps: int = 1000) -> torch.Tensor:
    """The DDPM linear schedule scaled to ``num_steps`` (float64)."""
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """IDDPM's cosine schedule (MAR's diffusion head): ``alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2``
    discretised to ``num_steps`` betas, each capped at ``max_beta``; Python floats, like the original."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def space_timesteps(num_steps: int, count: int) -> list[int]:
    """``count`` evenly spaced timesteps of ``0..num_steps-1`` (first and last included), sorted."""
    if not 1 <= count <= num_steps:
        raise ValueError(f"cannot respace {num_steps} diffusion steps to {count}")
    stride = (num_steps - 1) / (count - 1) if count > 1 else 1
    # Accumulate the float stride (not i * stride) so rounding ties fall exactly as officially.
    taken, cur = set(), 0.0
    for _ in range(count):
        taken.add(round(cur))
        cur += stride
    return sorted(taken)


class Diffusion:
    """A (possibly respaced) discrete diffusion process with learned-range variance."""

    def __init__(self, steps: int | None = None, base_steps: int = 1000, schedule: str = "linear") -> None:
        base = {"linear": linear_betas, "cosine": cosine_betas}[schedule](base_steps)
        base_cumprod = torch.cumprod(1 - base, 0)
        kept = list(range(base_steps)) if steps is None else space_timesteps(base_steps, steps)
        self.timestep_map = torch.tensor(kept, dtype=torch.long)
        cum = base_cumprod[self.timestep_map]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), cum[:-1]])
        self.betas = 1 - cum / prev
        self.num_timesteps = len(kept)
        self.alphas_cumprod = cum
        self.alphas_cumprod_prev = prev
        self.posterior_variance = self.betas * (1 - prev) / (1 - cum)
        # log of the posterior variance, clipped because it is 0 at the first step
        pv = self.posterior_variance
        self.posterior_log_variance_clipped = torch.log(torch.cat([pv[1:2], pv[1:]])) if len(pv) > 1 else pv
        self.posterior_mean_coef1 = self.betas * prev.sqrt() / (1 - cum)
        self.posterior_mean_coef2 = (1 - prev) * (1 - self.betas).sqrt() / (1 - cum)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _at(arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = arr.to(t.device)[t].float()
        return out.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise ``x0`` to step ``t`` (indices of this process)."""
        a = self._at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alphas_cumprod, t, x_t)
        return (1 / a).sqrt() * x_t - (1 / a - 1).sqrt() * eps

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x0 + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, self._at(self.posterior_log_variance_clipped, t, x_t)

    def p_mean_variance(
        self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_x0: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Model output ``(B, 2C, ...)`` to the mean/log-variance of ``p(x_{t-1} | x_t)`` and x0.

        ``clip_x0`` clamps the predicted x0 to ``[-clip_x0, clip_x0]`` before the posterior (ADM's
        ``clip_denoised`` with a range); ``None``, DiT's and MAR's official setting, leaves it."""
        eps, var_values = out.split(x_t.shape[1], dim=1)
        min_log = self._at(self.posterior_log_variance_clipped, t, x_t)
        max_log = self._at(torch.log(self.betas), t, x_t)
        frac = (var_values + 1) / 2  # [-1, 1] -> [min_var, max_var] in log space
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = self.predict_x0(x_t, t, eps)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        mean, _ = self.q_posterior(x0, x_t, t)
        return {"mean": mean, "log_variance": log_var, "pred_x0": x0, "eps": eps}

    def _call(self, model_fn: ModelFn, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        return t, model_fn(x, self.timestep_map.to(x.device)[t])

    # ---------------------------------------------------------------- sampling

    @torch.no_grad()
    def p_sample_loop(
        self, model_fn: ModelFn, noise: torch.Tensor, generator: torch.Generator | None = None, progress: bool = False
    ) -> torch.Tensor:
        """Ancestral sampling from ``noise`` (x_T) down to x_0, learned-range variance, no clipping."""
        x = noise
        for i in _steps(self.num_timesteps, progress):
            x = self.p_step(self._call(model_fn, x, i)[1], x, i, generator)
        return x

    def p_step(self, out: torch.Tensor, x: torch.Tensor, i: int, generator: torch.Generator | None) -> torch.Tensor:
        """One ancestral step: the model output ``out`` at ``x`` (step ``i`` of this process) to ``x_{i-1}``."""
        t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        p = self.p_mean_variance(out, x, t)
        x = p["mean"]
        if i > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + torch.exp(0.5 * p["log_variance"]) * z
        return x

    @torch.no_grad()
    def ddim_sample_loop(
        self,
        model_fn: ModelFn,
        noise: torch.Tensor,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        progress: bool = False,
    ) -> torch.Tensor:
        """DDIM over this process's steps (deterministic for ``eta == 0``); the variance half is unused."""
        x = noise
        for i in _steps(self.num_timesteps, progress):
            x = self.ddim_step(self._call(model_fn, x, i)[1], x, i, generator, eta)
        return x

    def ddim_step(
        self, out: torch.Tensor, x: torch.Tensor, i: int, generator: torch.Generator | None, eta: float = 0.0
    ) -> torch.Tensor:
        """One DDIM step: the model output ``out`` at ``x`` (step ``i``) to ``x_{i-1}``; variance channels unused."""
        t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        p = self.p_mean_variance(out, x, t)
        a = self._at(self.alphas_cumprod, t, x)
        a_prev = self._at(self.alphas_cumprod_prev, t, x)
        sigma = eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt()
        x = p["pred_x0"] * a_prev.sqrt() + (1 - a_prev - sigma**2).sqrt() * p["eps"]
        if i > 0 and eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x

    # ---------------------------------------------------------------- training

    def training_loss(
        self,
        out: torch.Tensor,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        snr_gamma: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Official ``MSE`` loss type with learned sigma: (mse + vb, mse), means over the batch.

        The variational-bound term trains the variance channels only (the mean is detached in it),
        in bits per dimension; at ``t == 0`` it is the decoder NLL. ``snr_gamma`` weights the noise
        MSE by ``min(SNR, gamma) / SNR`` (min-SNR weighting; ``None`` is the official uniform weight).
        """
        c = x0.shape[1]
        eps = out[:, :c]
        mse = (eps - noise).pow(2).mean(dim=(1, 2, 3))
        if snr_gamma is not None:
            a = self._at(self.alphas_cumprod, t, mse)
            snr = a / (1 - a)
            mse = mse * snr.clamp(max=snr_gamma) / snr
        frozen = torch.cat([eps.detach(), out[:, c:]], dim=1)
        p = self.p_mean_variance(frozen, x_t, t)
        true_mean, true_log_var = self.q_posterior(x0, x_t, t)
        kl = _normal_kl(true_mean, true_log_var, p["mean"], p["log_variance"]).mean(dim=(1, 2, 3)) / _LN2
        nll = -_discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * p["log_variance"]).mean(dim=(1, 2, 3)) / _LN2
        vb = torch.where(t == 0, nll, kl)
        return (mse + vb).mean(), mse.mean()


_LN2 = 0.6931471805599453


def _steps(n: int, progress: bool):
    steps = range(n - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        return tqdm(steps, desc="diffusion", leave=False)
    return steps


def _normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # tanh approximation of the standard normal CDF, as in the ADM code base
    return 0.5 * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x.pow(3))))


def _discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of ``x`` in [-1, 1] under a Gaussian discretized to 256 bins (edge bins open)."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
