"""MAR's official sampler (``MAR.sample_tokens``): masked autoregression in a random order.

Every image starts fully masked. Iteration ``k`` of ``num_iter`` runs encoder and decoder on the
known tokens, then keeps ``floor(L * cos(pi/2 * (k+1) / num_iter))`` positions masked (at least
one fewer than before, at least one until the last iteration) and samples the rest with the
diffusion head, in the row's random order (MaskGIT/MAGE's cosine schedule). CFG runs the
batch twice, with the learned ``fake_latent`` as the null class, at a scale that grows linearly
with the share of generated tokens: ``1 + (cfg - 1) * (L - mask_len) / L`` (Muse), computed in
float32 as officially.

The one departure: the official code draws the orders with NumPy's global generator
(``np.random.shuffle`` per row) and the noise with torch's global generator; here both come
from the cell's ``torch.Generator`` (orders first: ``argsort`` of uniform draws). With the same
orders given, the noise stream is the official one (the parity script checks that).
"""

from __future__ import annotations

import math

import torch

from bitscale.plugins.models.mar.diffusion import HeadDiffusion
from bitscale.plugins.models.mar.mar import MAR


def random_orders(batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """One random permutation of the positions per row ``(batch, seq_len)``, on CPU."""
    return torch.argsort(torch.rand(batch, seq_len, generator=generator, device=generator.device), dim=1).cpu()


def next_mask_len(step: int, num_iter: int, seq_len: int, remaining: int) -> int:
    """How many positions stay masked after iteration ``step``: cosine schedule, at least one
    fewer than ``remaining`` and at least one (the last iteration predicts all that remain)."""
    planned = math.floor(seq_len * math.cos(math.pi / 2.0 * (step + 1) / num_iter))
    return max(1, min(remaining - 1, planned))


@torch.no_grad()
def sample_tokens(
    mar: MAR,
    labels: torch.Tensor,
    generator: torch.Generator,
    num_iter: int = 64,
    cfg: float = 1.0,
    cfg_schedule: str = "linear",
    temperature: float = 1.0,
    sampling_steps: int = 100,
    orders: torch.Tensor | None = None,
    clip_x0: float | None = None,
) -> torch.Tensor:
    """Latents ``(B, C, H, W)`` (scaled, as the autoencoder's latents times its scale) for ``labels``;
    ``clip_x0`` bounds the head's predicted x0 (``HeadDiffusion.sample``; None, the official sampler, does not)."""
    if cfg_schedule not in ("linear", "constant"):
        raise ValueError(f"unknown cfg_schedule {cfg_schedule!r}; use linear or constant")
    dev, b, seq = labels.device, len(labels), mar.seq_len
    process = HeadDiffusion(sampling_steps)
    if orders is None:
        orders = random_orders(b, seq, generator)
    orders = orders.to(dev)
    mask = torch.ones(b, seq, device=dev)
    tokens = torch.zeros(b, seq, mar.config.token_dim, device=dev)
    cond = mar.class_embedding(labels)
    guided = cfg != 1.0
    if guided:
        cond = torch.cat([cond, mar.fake_latent.expand(b, -1).to(cond.dtype)])
    for step in range(num_iter):
        twice = (lambda v: torch.cat([v, v])) if guided else (lambda v: v)
        z = mar.forward_mae_decoder(mar.forward_mae_encoder(twice(tokens), twice(mask), cond), twice(mask))
        mask_len = next_mask_len(step, num_iter, seq, int(mask[0].sum()))
        mask_next = torch.zeros(b, seq, device=dev).scatter(1, orders[:, :mask_len], 1.0)
        to_pred = mask.bool() if step >= num_iter - 1 else mask.bool() ^ mask_next.bool()
        mask = mask_next
        if cfg_schedule == "linear":  # float32 tensor arithmetic, as officially
            scale = float(1 + (cfg - 1) * (seq - torch.tensor([float(mask_len)])) / seq)
        else:
            scale = cfg
        new = process.sample(mar.diffloss.net, z[twice(to_pred)], generator, temperature, scale, clip_x0)
        tokens = tokens.clone()
        tokens[to_pred] = new.to(tokens.dtype)
    return mar.unpatchify(tokens)
