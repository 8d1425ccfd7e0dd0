"""Deterministic training of a tiny RAR generator on tokenizer codes (one thread, seeded).

The official recipe (``configs/training/generator/rar.yaml``, ``utils/train_utils.py``) at CPU
scale: next-token cross-entropy on a permuted sequence, each sample permuted at random with
probability ``r``, where ``r`` is 1 for the first half of training, falls linearly to 0 by 3/4 and
stays 0 (officially 1 until step 125k, 0 from 187.5k of 250k): the model learns bidirectional
context first and ends as a raster-order model, the order it samples in. 10% label dropout to
the null class (for guidance), AdamW with betas (0.9, 0.96) and weight decay 0.03 as officially,
gradient clipping at 1.0; a larger learning rate and a short linear warm-up/decay fit the CPU
budget. Every random number (init, batches, dropout, orders) comes from the seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bitscale.harness.threads import single_thread
from bitscale.plugins.models.rar.gpt import RAR, RARConfig
from bitscale.zoo.training import LossLog, TrainResult, optimizer_step, tail_mean, warmup_linear_decay

_TAIL = 20


def random_ratio(step: int, steps: int, start: float = 0.5, end: float = 0.75) -> float:
    """Probability that a sample is trained in a random order at ``step`` (official annealing)."""
    if step < start * steps:
        return 1.0
    if step > end * steps:
        return 0.0
    return 1.0 - (step - start * steps) / ((end - start) * steps)


def draw_orders(batch: int, length: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """``(batch, length)`` token orders: a random permutation with probability ``ratio``, else raster."""
    shuffled = torch.rand(batch, generator=gen) < ratio
    perms = torch.rand(batch, length, generator=gen).argsort(dim=1)
    raster = torch.arange(length).expand(batch, -1)
    return torch.where(shuffled[:, None], perms, raster)


@single_thread()
def train_rar(
    cfg: RARConfig,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    desc: str = "rar",
) -> tuple[RAR, TrainResult]:
    """Train a RAR generator on raster token sequences ``(N, image_seq_len)``; returns it in eval mode."""
    torch.manual_seed(seed)
    model = RAR(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.96), weight_decay=0.03)
    sched = warmup_linear_decay(opt, steps)
    model.train()
    log = LossLog(steps, desc)
    for step in log:
        idx = torch.randint(len(tokens), (batch_size,), generator=gen)
        x, y = tokens[idx], labels[idx].clone()
        y[torch.rand(batch_size, generator=gen) < cfg.class_dropout_prob] = cfg.num_classes
        orders = draw_orders(batch_size, x.shape[1], random_ratio(step, steps), gen)
        x = x.gather(1, orders)
        logits = model(x[:, :-1], y, orders)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1))
        log.add(optimizer_step(opt, loss, sched, clip=(model.parameters(), 1.0)))
    return model.eval(), log.result(tail_mean(log.losses, 5, most=_TAIL))
