"""Deterministic training of the tiny DiT zoo: the KL autoencoder, then a DiT on its latents.

Training runs on one thread (see ``single_thread``) and every random number (initialisation,
batches, posterior samples, timesteps, noise, label dropout) comes from a fixed seed. The DiT
recipe is the official one (uniform timesteps over the 1000-step process, loss = noise MSE + the
variational bound on the learned variance, 10% label dropout, AdamW without weight decay, an EMA
of the weights that is what gets saved and sampled) with two options that the tiny zoo turns on
because a few thousand CPU steps are not enough otherwise: ``snr_gamma`` (min-SNR weighting of
the noise MSE, Hang et al. 2023, which shifts effort to the noisy steps that set the global
shape) and ``label_lr_mult`` (a larger learning rate for the label table: the timestep embedding
dominates ``c = t + y`` early on, and without it samples ignored their class). The autoencoder
uses pixel MSE plus a small KL term (no perceptual or GAN loss: 16x16 digits do not need them).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bitscale.plugins.models.dit.diffusion import Diffusion
from bitscale.plugins.models.dit.dit import DiT, DiTConfig
from bitscale.plugins.models.dit.vae import build_vae
from bitscale.plugins.models.llamagen.zoo_helpers import single_thread


@dataclass(frozen=True)
class TrainResult:
    """What a training run reports into the artifact manifest."""

    steps: int
    initial_loss: float
    final_loss: float
    seconds: float  # wall clock
    cpu_seconds: float  # process CPU time: comparable across machines that are busy with other work


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then linear decay to zero."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps))


def _final(losses: list[float]) -> float:
    tail = losses[-max(1, min(50, len(losses) // 5)) :]  # diffusion losses are noisy: average the tail
    return float(sum(tail) / len(tail))


@single_thread()
def train_vae(config: dict[str, Any], images: torch.Tensor, steps: int, seed: int, batch_size: int = 64,
              lr: float = 2e-3, kl_weight: float = 1e-4, desc: str = "vae") -> tuple[torch.nn.Module, TrainResult]:
    """Train an ``AutoencoderKL`` on ``images`` in [-1, 1]; returns it in eval mode."""
    torch.manual_seed(seed)
    vae = build_vae(config)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = _schedule(opt, steps, warmup=max(1, steps // 20))
    losses: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    vae.train()
    bar = tqdm(range(steps), desc=desc, leave=False)
    for _ in bar:
        x = images[torch.randint(len(images), (batch_size,), generator=gen)]
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + kl_weight * dist.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return vae.eval(), TrainResult(steps, losses[0], _final(losses), time.perf_counter() - start,
                                     time.process_time() - cpu_start)


@single_thread()
def train_dit(cfg: DiTConfig, latent_mean: torch.Tensor, latent_std: torch.Tensor, labels: torch.Tensor,
              scale: float, steps: int, seed: int, batch_size: int = 128, lr: float = 1e-3,
              ema_decay: float = 0.995, label_lr_mult: float = 1.0, snr_gamma: float | None = None,
              desc: str = "dit") -> tuple[DiT, TrainResult]:
    """Train a DiT on scaled posterior samples ``scale * (mean + std * n)``; returns the EMA model (eval)."""
    torch.manual_seed(seed)
    model = DiT(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = Diffusion()
    gen = torch.Generator().manual_seed(seed + 1)
    labels_table = model.y_embedder.embedding_table.weight
    params = [p for p in model.parameters() if p.requires_grad and p is not labels_table]  # pos_embed is fixed
    opt = torch.optim.AdamW([{"params": params}, {"params": [labels_table], "lr": lr * label_lr_mult}],
                            lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    sched = _schedule(opt, steps, warmup=max(1, steps // 20))
    losses: list[float] = []
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(steps), desc=desc, leave=False)
    for step in bar:
        idx = torch.randint(len(labels), (batch_size,), generator=gen)
        x0 = scale * (latent_mean[idx] + latent_std[idx] * torch.randn(latent_mean[idx].shape, generator=gen))
        y = labels[idx].clone()
        y[torch.rand(batch_size, generator=gen) < cfg.class_dropout_prob] = cfg.num_classes
        t = torch.randint(diffusion.num_timesteps, (batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x_t = diffusion.q_sample(x0, t, noise)
        loss, _ = diffusion.training_loss(model(x_t, t, y), x0, x_t, t, noise, snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        # EMA with a warm-up so early random weights fade out quickly in short runs.
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return ema.eval(), TrainResult(steps, losses[0], _final(losses), time.perf_counter() - start,
                                     time.process_time() - cpu_start)
