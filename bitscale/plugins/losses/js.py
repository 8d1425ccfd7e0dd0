"""(Generalized) Jensen-Shannon divergence between teacher and student token distributions.

Per token, with the mixture ``M = beta P_T + (1 - beta) P_S``::

    JSD_beta(P_T, P_S) = beta KL(P_T || M) + (1 - beta) KL(P_S || M)

``beta = 0.5`` (default) is the symmetric JS divergence of the paper's Table 5; it is bounded by
``log 2`` per token, which makes it robust but gives weak gradients far from the teacher.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from bitscale import hookimpl
from bitscale.harness.contracts import DistillLoss, PluginOptions
from bitscale.plugins.losses._divergence import LogitLossOptions, check_pair, kl_terms, log_probs, token_mean


class JSOptions(LogitLossOptions):
    """JS options: the mixture weight of the teacher."""

    beta: float = Field(default=0.5, gt=0, lt=1, description="Teacher weight in the mixture M (0.5 = symmetric JS).")


def log_mixture(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """``log(w a + (1 - w) b)`` from log-probabilities; ``-inf`` (with zero gradient) where both are 0.

    A plain ``logsumexp`` has a NaN derivative where every input is ``-inf`` (masked classes),
    and that NaN would reach the logits even though the term itself is masked out.
    """
    x = log_a + math.log(weight_a)
    y = log_b + math.log(1.0 - weight_a)
    top = torch.maximum(x, y)
    some = torch.isfinite(top)
    safe_top = torch.where(some, top, torch.zeros_like(top))
    total = torch.exp(x - safe_top) + torch.exp(y - safe_top)
    out = safe_top + torch.log(torch.where(some, total, torch.ones_like(total)))
    return torch.where(some, out, torch.full_like(out, float("-inf")))


class JensenShannon(DistillLoss):
    """Generalized Jensen-Shannon divergence on token logits (symmetric at beta = 0.5)."""

    name: ClassVar[str] = "js"
    kind: ClassVar = "logits"
    Options: ClassVar[type[PluginOptions]] = JSOptions
    description: ClassVar[str] = "Jensen-Shannon divergence between teacher and student token distributions"

    def __call__(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_pair(student, teacher)
        temp, beta = self.options.temperature, self.options.beta
        lp_t = log_probs(teacher.detach(), temp)
        lp_s = log_probs(student, temp)
        lm = log_mixture(lp_t, lp_s, beta)
        return token_mean(beta * kl_terms(lp_t, lm) + (1.0 - beta) * kl_terms(lp_s, lm))


@hookimpl
def register_losses(register):
    """Register the JS divergence."""
    register(JensenShannon)
