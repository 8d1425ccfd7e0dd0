"""Deterministic training of the tiny LlamaGen zoo: the VQ tokenizer, then a GPT on its tokens.

Both loops run on one thread (see ``single_thread``) and draw every random number
(initialisation, batches, label dropout) from a fixed seed, so the same code and data give the
same weights. Losses follow the official
recipes, simplified where the tiny digits do not need more: the tokenizer uses pixel MSE plus
the codebook/commitment loss (no perceptual or GAN loss); the GPT uses next-token cross-entropy
with 10% label dropout to the null class (for classifier-free guidance) and AdamW with
betas (0.9, 0.95) and weight decay 0.05. ``label_lr_mult`` gives the class table a larger
learning rate: in a few hundred steps the tiny GPTs otherwise learn digit shapes long before
they learn to follow the label (measured: final loss 1.79 -> 1.60 for d3w64, 1.53 -> 1.44 for d4w128).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bitscale.plugins.models.llamagen.gpt import GPT, GPTConfig
from bitscale.plugins.models.llamagen.vq import VQConfig, VQModel
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
    """Linear warm-up then linear decay to zero: short runs end at a low-noise point."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps)
    )


def _final(losses: list[float]) -> float:
    # Mean of the last steps: one batch's loss is too noisy to compare runs with.
    tail = losses[-max(1, min(20, len(losses) // 5)) :]
    return float(sum(tail) / len(tail))


@single_thread()
def train_tokenizer(cfg: VQConfig, images: torch.Tensor, steps: int, seed: int, batch_size: int = 64,
                    lr: float = 2e-3, desc: str = "tokenizer") -> tuple[VQModel, TrainResult]:
    """Train a VQ tokenizer on ``images`` in [-1, 1]; returns it in eval mode."""
    torch.manual_seed(seed)
    model = VQModel(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = _schedule(opt, steps, warmup=max(1, steps // 20))
    losses: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(steps), desc=desc, leave=False)
    for _ in bar:
        x = images[torch.randint(len(images), (batch_size,), generator=gen)]
        rec, vq_loss = model(x)
        loss = F.mse_loss(rec, x) + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return model.eval(), TrainResult(steps, losses[0], _final(losses), time.perf_counter() - start,
                                     time.process_time() - cpu_start)


@single_thread()
def train_gpt(cfg: GPTConfig, tokens: torch.Tensor, labels: torch.Tensor, steps: int, seed: int,
              batch_size: int = 128, lr: float = 3e-3, label_lr_mult: float = 1.0,
              desc: str = "gpt") -> tuple[GPT, TrainResult]:
    """Train a GPT on token sequences ``(N, block_size)`` with class ``labels``; returns it in eval mode."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    table = model.cls_embedding.embedding_table.weight
    rest = [p for p in model.parameters() if p is not table]
    opt = torch.optim.AdamW([{"params": rest}, {"params": [table], "lr": lr * label_lr_mult}],
                            lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    sched = _schedule(opt, steps, warmup=max(1, steps // 20))
    losses: list[float] = []
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(steps), desc=desc, leave=False)
    for _ in bar:
        idx = torch.randint(len(tokens), (batch_size,), generator=gen)
        x, y = tokens[idx], labels[idx].clone()
        drop = torch.rand(batch_size, generator=gen) < cfg.class_dropout_prob
        y[drop] = cfg.num_classes  # the null class: trains the unconditional half of CFG
        logits = model(x[:, :-1], y)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return model.eval(), TrainResult(steps, losses[0], _final(losses), time.perf_counter() - start,
                                     time.process_time() - cpu_start)
