"""Numerically careful building blocks shared by the logit losses.

Every logit loss works on ``(..., V)`` logits: it takes log-probabilities with ``log_softmax`` in
float32 (so bf16/fp16 models do not lose the tail of the distribution), sums per-class terms over
``V`` and averages over every other position (tokens, batch).

Two edge cases are handled on purpose:

- **Probability exactly zero** (a ``-inf`` logit, or underflow from logits like ``+-1e4``): the
  term ``p log(p / q)`` is defined as 0, and the masking is done so that the *gradient* is 0
  too (a plain ``0 * -inf`` would put NaN into the backward pass even where it is masked).
- **Denominator exactly zero** (``q = 0`` where ``p > 0``): the true divergence is infinite. We
  floor ``log q`` at ``LOG_FLOOR`` instead, so the loss stays finite (and large) and one
  pathological token cannot turn a whole training run into NaN.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from bitscale.harness.contracts import PluginOptions

#: Stand-in for ``log 0`` in a denominator: far below any log-probability of a finite float32 logit
#: spread seen in practice, yet finite so that ``p * (log p - LOG_FLOOR)`` stays finite.
LOG_FLOOR = -1.0e6


class LogitLossOptions(PluginOptions):
    """Options every logit loss shares."""

    temperature: float = Field(
        default=1.0, gt=0, description="Softmax temperature applied to both student and teacher logits."
    )


def log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``log_softmax(logits / T)`` over the last dimension, in float32."""
    x = logits.float()
    if temperature != 1.0:
        x = x / temperature
    return torch.log_softmax(x, dim=-1)


def check_pair(student: Tensor, teacher: Tensor) -> None:
    """Raise a clear error when student and teacher outputs cannot be compared."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher outputs differ in shape: {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )
    if student.dim() < 1 or student.shape[-1] < 1:
        raise ValueError(f"logits need a class dimension, got shape {tuple(student.shape)}")


def kl_terms(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Elementwise ``p log(p / q)`` for log-probabilities; 0 where ``p == 0``, finite where ``q == 0``."""
    p = log_p.exp()
    present = p > 0
    # Replace the masked operands *before* the product: the where() on the result alone would still
    # back-propagate 0 * (-inf) = NaN into the unused branch.
    safe_log_p = torch.where(present, log_p, torch.zeros_like(log_p))
    safe_log_q = torch.where(torch.isfinite(log_q), log_q, torch.full_like(log_q, LOG_FLOOR))
    safe_log_q = torch.where(present, safe_log_q, torch.zeros_like(safe_log_q))
    return torch.where(present, p * (safe_log_p - safe_log_q), torch.zeros_like(p))


def token_mean(per_class: Tensor) -> Tensor:
    """Sum over classes (last dim), mean over every other position: a scalar."""
    return per_class.sum(dim=-1).mean()
