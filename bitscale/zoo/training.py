"""The parts every tiny-zoo training loop shares: the update step, the loss log, the schedule.

None of them draws random numbers, so a loop built from them consumes its generators exactly
as the hand-written loops before them did, and trains the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from bitscale.harness.progress import progress_bar

T = TypeVar("T")


@dataclass(frozen=True)
class TrainResult:
    """What a training run reports into the artifact manifest."""

    steps: int
    initial_loss: float
    final_loss: float
    seconds: float  # wall clock
    cpu_seconds: float  # process CPU time: comparable across machines that are busy with other work


def warmup_linear_decay(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5% of ``steps``, then linear decay to zero: short runs end at a low-noise point."""
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps))


def adamw_with_label_table(
    model: torch.nn.Module,
    table: torch.nn.Parameter,
    lr: float,
    label_lr_mult: float,
    betas: tuple[float, float],
    weight_decay: float,
) -> torch.optim.AdamW:
    """AdamW on the trainable parameters, with the class-label ``table`` at ``label_lr_mult`` times ``lr``.

    In a few hundred steps the tiny generators learn digit shapes long before they follow the
    label; a faster-learning label table closes the gap. Frozen parameters (DiT's fixed
    ``pos_embed``) are left out.
    """
    rest = [p for p in model.parameters() if p.requires_grad and p is not table]
    return torch.optim.AdamW(
        [{"params": rest}, {"params": [table], "lr": lr * label_lr_mult}], lr=lr, betas=betas, weight_decay=weight_decay
    )


def optimizer_step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip: tuple[Iterable[torch.nn.Parameter], float] | None = None,
) -> float:
    """One update from ``loss`` (gradients clipped to ``clip = (parameters, max_norm)`` first); returns its value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(*clip)
    opt.step()
    if schedule is not None:
        schedule.step()
    return loss.item()


def tail_mean(losses: list[float], fraction: int, most: int | None = None) -> float:
    """Mean of the last ``len // fraction`` losses (at least one, at most ``most``): one batch is too noisy."""
    n = len(losses) // fraction
    tail = losses[-max(1, n if most is None else min(most, n)) :]
    return float(sum(tail) / len(tail))


class LossLog(Generic[T]):
    """Iterates a run's steps behind a progress bar, and records their losses and the time taken.

    It yields the step numbers ``0 .. steps - 1``, or the items of ``batches`` when given.
    """

    def __init__(self, steps: int, desc: str, batches: Iterable[T] | None = None) -> None:
        self.losses: list[float] = []
        self._start = time.perf_counter(), time.process_time()
        self._bar = progress_bar(range(steps) if batches is None else batches, desc=desc, total=steps)

    def __iter__(self) -> Iterator[T]:
        return iter(self._bar)

    def add(self, loss: float) -> None:
        self.losses.append(loss)
        self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def result(self, final_loss: float) -> TrainResult:
        """The run's report, with ``final_loss`` as the caller averages it (see ``tail_mean``)."""
        wall, cpu = time.perf_counter() - self._start[0], time.process_time() - self._start[1]
        return TrainResult(len(self.losses), self.losses[0], final_loss, wall, cpu)


def param_count(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the module ``build()`` makes, built on the CPU with the global RNG left as it was.

    For tiny models this takes milliseconds, while building on the ``meta`` device imports
    ``torch._dynamo`` (about 2 s, paid by every planned grid) to initialise embeddings there.
    """
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in build().parameters())
