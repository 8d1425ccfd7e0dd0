"""Training the tiny VAR zoo on the offline digits: first the VQ-VAE, then each transformer.

Upstream never released its tokenizer training code; the recipe here is ours and aims at
"small, deterministic, a minute or two on two CPU cores": reconstruction MSE plus the
quantizer's commitment/codebook loss, with dead-code restarts (unused codebook entries are
moved onto recently quantized vectors) because a tiny codebook trained for a few hundred steps
otherwise collapses onto a handful of entries. The transformer is trained exactly as upstream's
trainer does: cross-entropy on all L tokens with uniform weights, label dropout ``cond_drop_rate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bitscale.plugins.models.var.transformer import VAR, VARConfig
from bitscale.plugins.models.var.vqvae import VQVAE, VQVAEConfig
from bitscale.zoo.training import LossLog, TrainResult, optimizer_step, tail_mean

#: The final loss is the mean of the last 1/_TAIL_FRACTION of the steps.
_TAIL_FRACTION = 10


@dataclass(frozen=True)
class Tokens:
    """A data set tokenized by the VQ-VAE: what the transformer trains and calibrates on."""

    labels: torch.Tensor  # (N,) int64
    x_BLCv: torch.Tensor  # (N, L - first_l, Cvae) teacher-forcing input
    target: torch.Tensor  # (N, L) int64 token ids, all scales concatenated

    def __len__(self) -> int:
        return len(self.labels)


def _lr_at(step: int, steps: int, peak: float, warmup: float = 0.05) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    w = max(1, int(steps * warmup))
    if step < w:
        return peak * (step + 1) / w
    t = (step - w) / max(1, steps - w)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator):
    """Index batches from reshuffled epochs (drop-last), ``steps`` of them."""
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def train_vqvae(
    config: VQVAEConfig,
    images: torch.Tensor,
    steps: int,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 2e-3,
    restart_every: int = 20,
    desc: str = "vqvae",
) -> tuple[VQVAE, TrainResult]:
    """Train a VQ-VAE on ``images`` (``N, 3, H, W`` in [-1, 1]) deterministically from ``seed``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = VQVAE(config).train()
    V = config.vocab_size
    vae.quantize.embedding.weight.data.uniform_(-1 / V, 1 / V)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    hits = torch.zeros(V)
    log = LossLog(steps, desc, batches=_batches(len(images), batch_size, steps, gen))
    for step, idx in enumerate(log):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        x = images[idx]
        rec, vq = vae(x)
        log.add(optimizer_step(opt, F.mse_loss(rec, x) + vq.loss))
        hits += torch.bincount(torch.cat([i.flatten() for i in vq.idx]), minlength=V).float()
        # Restarts stop for the last quarter so the codebook can settle.
        if (step + 1) % restart_every == 0 and step < steps * 3 // 4:
            _restart_dead_codes(vae, hits, torch.cat(vq.z), gen)
            hits.zero_()
    return vae.eval(), log.result(tail_mean(log.losses, _TAIL_FRACTION))


@torch.no_grad()
def _restart_dead_codes(vae: VQVAE, hits: torch.Tensor, z: torch.Tensor, gen: torch.Generator) -> None:
    """Move codebook entries that were not used since the last restart onto random quantized vectors."""
    dead = (hits == 0).nonzero().flatten()
    if len(dead) == 0:
        return
    pick = torch.randint(len(z), (len(dead),), generator=gen)
    noise = torch.randn(len(dead), z.shape[1], generator=gen) * 0.01
    vae.quantize.embedding.weight.data[dead] = z[pick] + noise


@torch.no_grad()
def tokenize(vae: VQVAE, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> Tokens:
    """Encode ``images`` into teacher-forcing inputs and target token ids."""
    xs, ts = [], []
    for i in range(0, len(images), batch_size):
        idx = vae.img_to_idx(images[i : i + batch_size])
        xs.append(vae.quantize.idx_to_var_input(idx))
        ts.append(torch.cat(idx, dim=1))
    return Tokens(labels.clone(), torch.cat(xs), torch.cat(ts))


def train_var(
    config: VARConfig,
    tokens: Tokens,
    steps: int,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    desc: str = "var",
) -> tuple[VAR, TrainResult]:
    """Train a VAR transformer on ``tokens`` deterministically from ``seed``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    var = VAR(config).train()
    decay = [p for n, p in var.named_parameters() if p.ndim >= 2 and "pos_" not in n and "emb" not in n]
    rest = [p for n, p in var.named_parameters() if not (p.ndim >= 2 and "pos_" not in n and "emb" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    log = LossLog(steps, desc, batches=_batches(len(tokens), batch_size, steps, gen))
    for step, idx in enumerate(log):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        logits = var(tokens.labels[idx], tokens.x_BLCv[idx])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.target[idx].flatten())
        log.add(optimizer_step(opt, loss, clip=(var.parameters(), 2.0)))
    return var.eval(), log.result(tail_mean(log.losses, _TAIL_FRACTION))
