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
from typing import Any

import torch
import torch.nn.functional as F

from bitscale.harness.threads import single_thread
from bitscale.plugins.models.dit.diffusion import Diffusion
from bitscale.plugins.models.dit.dit import DiT, DiTConfig
from bitscale.plugins.models.dit.vae import build_vae
from bitscale.zoo.training import (
    LossLog,
    TrainResult,
    adamw_with_label_table,
    optimizer_step,
    tail_mean,
    warmup_linear_decay,
)

#: Diffusion losses are noisy: the final loss averages up to this many last steps.
_TAIL = 50


@single_thread()
def train_vae(
    config: dict[str, Any],
    images: torch.Tensor,
    steps: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    kl_weight: float = 1e-4,
    desc: str = "vae",
) -> tuple[torch.nn.Module, TrainResult]:
    """Train an ``AutoencoderKL`` on ``images`` in [-1, 1]; returns it in eval mode."""
    torch.manual_seed(seed)
    vae = build_vae(config)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = warmup_linear_decay(opt, steps)
    vae.train()
    log = LossLog(steps, desc)
    for _ in log:
        x = images[torch.randint(len(images), (batch_size,), generator=gen)]
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        log.add(optimizer_step(opt, F.mse_loss(rec, x) + kl_weight * dist.kl().mean() / z[0].numel(), sched))
    return vae.eval(), log.result(tail_mean(log.losses, 5, most=_TAIL))


@single_thread()
def train_dit(
    cfg: DiTConfig,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    steps: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    ema_decay: float = 0.995,
    label_lr_mult: float = 1.0,
    snr_gamma: float | None = None,
    desc: str = "dit",
) -> tuple[DiT, TrainResult]:
    """Train a DiT on scaled posterior samples ``scale * (mean + std * n)``; returns the EMA model (eval)."""
    torch.manual_seed(seed)
    model = DiT(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = Diffusion()
    gen = torch.Generator().manual_seed(seed + 1)
    opt = adamw_with_label_table(
        model, model.y_embedder.embedding_table.weight, lr, label_lr_mult, betas=(0.9, 0.999), weight_decay=0.0
    )
    sched = warmup_linear_decay(opt, steps)
    model.train()
    log = LossLog(steps, desc)
    for step in log:
        idx = torch.randint(len(labels), (batch_size,), generator=gen)
        x0 = scale * (latent_mean[idx] + latent_std[idx] * torch.randn(latent_mean[idx].shape, generator=gen))
        y = labels[idx].clone()
        y[torch.rand(batch_size, generator=gen) < cfg.class_dropout_prob] = cfg.num_classes
        t = torch.randint(diffusion.num_timesteps, (batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        x_t = diffusion.q_sample(x0, t, noise)
        loss, _ = diffusion.training_loss(model(x_t, t, y), x0, x_t, t, noise, snr_gamma)
        log.add(optimizer_step(opt, loss, sched))
        # EMA with a warm-up so early random weights fade out quickly in short runs.
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
    return ema.eval(), log.result(tail_mean(log.losses, 5, most=_TAIL))
