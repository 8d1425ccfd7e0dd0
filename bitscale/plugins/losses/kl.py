"""Forward and reverse Kullback-Leibler divergence between teacher and student token distributions.

With ``P_T`` the full-precision teacher and ``P_S`` the quantized student, per token:

- ``forward-kl``: ``KL(P_T || P_S) = sum_y P_T(y) log(P_T(y) / P_S(y))`` — mode-covering: the
  student is pushed to put mass wherever the teacher does (the classic Hinton KD loss).
- ``reverse-kl``: ``KL(P_S || P_T) = sum_y P_S(y) log(P_S(y) / P_T(y))`` — mode-seeking: the
  student is pushed to put mass only where the teacher is confident.

Both are averaged over tokens (every position but the class dimension).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from bitscale import hookimpl
from bitscale.harness.contracts import DistillLoss, PluginOptions
from bitscale.plugins.losses._divergence import LogitLossOptions, check_pair, kl_terms, log_probs, token_mean


class ForwardKL(DistillLoss):
    """``KL(teacher || student)`` on token logits (mode-covering)."""

    name: ClassVar[str] = "forward-kl"
    kind: ClassVar = "logits"
    Options: ClassVar[type[PluginOptions]] = LogitLossOptions
    description: ClassVar[str] = "forward KL(teacher || student) on token logits: mode-covering"

    def __call__(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_pair(student, teacher)
        t = self.options.temperature
        return token_mean(kl_terms(log_probs(teacher.detach(), t), log_probs(student, t)))


class ReverseKL(DistillLoss):
    """``KL(student || teacher)`` on token logits (mode-seeking)."""

    name: ClassVar[str] = "reverse-kl"
    kind: ClassVar = "logits"
    Options: ClassVar[type[PluginOptions]] = LogitLossOptions
    description: ClassVar[str] = "reverse KL(student || teacher) on token logits: mode-seeking"

    def __call__(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_pair(student, teacher)
        t = self.options.temperature
        return token_mean(kl_terms(log_probs(student, t), log_probs(teacher.detach(), t)))


@hookimpl
def register_losses(register):
    """Register forward and reverse KL."""
    register(ForwardKL)
    register(ReverseKL)
