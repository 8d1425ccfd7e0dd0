"""Deterministic training of the tiny MAR zoo on the latents of dit-tiny's autoencoder.

The recipe is the official ``MAR.forward`` + ``DiffLoss``: per image a random order, per batch a
masking ratio from a truncated normal on [``mask_ratio_min``, 1] (mean 1, std 0.25); the encoder sees the
known tokens, the decoder predicts ``z`` everywhere; the diffusion head is trained on the masked
tokens only, each repeated ``diffusion_batch_mul`` (4) times with its own timestep and noise
(1000-step cosine process, noise MSE + VLB on the learned variance); 10% of the images get the
null class (``fake_latent``); AdamW (β 0.9/0.95, weight decay 0.02) with an EMA of the weights,
which is what is saved, gradients clipped to norm 3. Departures for a CPU budget of minutes: no attention/projection
dropout, a learning rate of 1e-3 with linear warm-up and decay instead of 8e-4 constant after
100 warm-up epochs, EMA 0.995 instead of 0.9999, and (as dit-tiny) a larger learning rate on the
class table so that samples follow their label early. One thread; every random number
(initialisation, batches, posteriors, orders, masking ratios, label dropout, timesteps, noise)
comes from the seed.
"""

from __future__ import annotations

import copy
import math

import torch

from bitscale.harness.threads import single_thread
from bitscale.plugins.models.mar.diffusion import HeadDiffusion
from bitscale.plugins.models.mar.mar import MAR, MARConfig
from bitscale.zoo.training import (
    LossLog,
    TrainResult,
    adamw_with_label_table,
    optimizer_step,
    tail_mean,
    warmup_linear_decay,
)

_TAIL = 50


def masked_count(seq_len: int, mask_ratio_min: float, generator: torch.Generator) -> int:
    """``ceil(seq_len * r)`` with ``r`` from the official truncated normal (loc 1, scale 0.25, on [min, 1]),
    drawn by inverting the normal CDF on a uniform number from ``generator``."""
    lo = torch.special.ndtr(torch.tensor((mask_ratio_min - 1.0) / 0.25, dtype=torch.float64))
    u = torch.rand(1, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    r = 1.0 + 0.25 * float(torch.special.ndtri(lo + (0.5 - lo) * u))
    return min(seq_len, max(1, math.ceil(seq_len * r)))


@single_thread()
def train_mar(
    cfg: MARConfig,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    steps: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    ema_decay: float = 0.995,
    label_lr_mult: float = 1.0,
    weight_decay: float = 0.02,
    desc: str = "mar",
) -> tuple[MAR, TrainResult]:
    """Train a MAR on scaled posterior samples ``scale * (mean + std * n)``; returns the EMA model (eval)."""
    torch.manual_seed(seed)
    model = MAR(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    process = HeadDiffusion()
    gen = torch.Generator().manual_seed(seed + 1)
    opt = adamw_with_label_table(
        model, model.class_emb.weight, lr, label_lr_mult, betas=(0.9, 0.95), weight_decay=weight_decay
    )
    sched = warmup_linear_decay(opt, steps)
    model.train()
    seq = cfg.seq_len
    log = LossLog(steps, desc)
    for step in log:
        idx = torch.randint(len(labels), (batch_size,), generator=gen)
        x0 = scale * (latent_mean[idx] + latent_std[idx] * torch.randn(latent_mean[idx].shape, generator=gen))
        tokens = model.patchify(x0)
        y = labels[idx].clone()
        y[torch.rand(batch_size, generator=gen) < cfg.label_drop_prob] = cfg.class_num  # the null class
        orders = torch.argsort(torch.rand(batch_size, seq, generator=gen), dim=1)
        mask = torch.zeros(batch_size, seq).scatter(1, orders[:, : masked_count(seq, cfg.mask_ratio_min, gen)], 1.0)
        z = model(tokens, mask, y)
        pick = mask.bool()
        rep = cfg.diffusion_batch_mul
        loss = process.head_loss(model.diffloss.net, tokens[pick].repeat(rep, 1), z[pick].repeat(rep, 1), gen)
        log.add(optimizer_step(opt, loss, sched, clip=(model.parameters(), 3.0)))  # official grad_clip
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
    return ema.eval(), log.result(tail_mean(log.losses, 5, most=_TAIL))
