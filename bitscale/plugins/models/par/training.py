"""Deterministic training of a tiny PAR GPT (one thread, seeded).

The official ``train_c2i.py`` loss at CPU scale: the codes are put in PAR's region order and the
GPT is trained with next-token cross-entropy through its group mask (output ``p`` predicts PAR
token ``p``), 10% label dropout to the null class. Optimiser and schedule are llamagen-tiny's
(AdamW betas (0.9, 0.95), weight decay 0.05, linear warm-up/decay, 10x learning rate on the
class table), so the two families differ only in the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bitscale.harness.threads import single_thread
from bitscale.plugins.models.par.gpt import PARGPT, PARConfig
from bitscale.plugins.models.par.order import to_par_order
from bitscale.zoo.training import (
    LossLog,
    TrainResult,
    adamw_with_label_table,
    optimizer_step,
    tail_mean,
    warmup_linear_decay,
)

_TAIL = 20


@single_thread()
def train_par(
    cfg: PARConfig,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    label_lr_mult: float = 1.0,
    desc: str = "par",
) -> tuple[PARGPT, TrainResult]:
    """Train a PAR GPT on raster token sequences ``(N, block_size)``; returns it in eval mode."""
    torch.manual_seed(seed)
    model = PARGPT(cfg)
    tokens = to_par_order(tokens, cfg.grid, cfg.ar_token_num)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = adamw_with_label_table(
        model, model.cls_embedding.embedding_table.weight, lr, label_lr_mult, betas=(0.9, 0.95), weight_decay=0.05
    )
    sched = warmup_linear_decay(opt, steps)
    model.train()
    log = LossLog(steps, desc)
    for _ in log:
        idx = torch.randint(len(tokens), (batch_size,), generator=gen)
        x, y = tokens[idx], labels[idx].clone()
        y[torch.rand(batch_size, generator=gen) < cfg.class_dropout_prob] = cfg.num_classes
        logits = model(x[:, :-1], y)
        log.add(optimizer_step(opt, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1)), sched))
    return model.eval(), log.result(tail_mean(log.losses, 5, most=_TAIL))
