"""Mean squared error between student and teacher outputs: the regression loss.

It compares raw outputs elementwise, so it serves diffusion-style models (predicted noise) and
can also be applied to language-style logits (the paper's "MSE" row in Table 5). On logits it
is not shift-invariant: two logit vectors that give the same distribution but differ by a
constant still cost something.

Entries where either output is not finite (``-inf`` for masked vocabulary entries) are left
out of the mean, with zero gradient; the mean is over the remaining entries.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from bitscale import hookimpl
from bitscale.harness.contracts import DistillLoss, PluginOptions
from bitscale.plugins.losses._divergence import check_pair


class MSEOptions(PluginOptions):
    """MSE has no options."""


class MSE(DistillLoss):
    """Mean over elements of ``(student - teacher)^2``, computed in float32."""

    name: ClassVar[str] = "mse"
    kind: ClassVar = "regression"
    Options: ClassVar[type[PluginOptions]] = MSEOptions
    description: ClassVar[str] = "mean squared error on outputs (diffusion noise, or logits)"

    def __call__(self, student: Tensor, teacher: Tensor) -> Tensor:
        check_pair(student, teacher)
        s, t = student.float(), teacher.detach().float()
        valid = torch.isfinite(s) & torch.isfinite(t)
        if bool(valid.all()):
            return (s - t).pow(2).mean()
        # Zero the masked operands (not just the result), or their NaN derivative leaks into s.grad.
        zero = torch.zeros_like(s)
        diff = torch.where(valid, s, zero) - torch.where(valid, t, zero)
        return diff.pow(2).sum() / valid.sum().clamp(min=1)


@hookimpl
def register_losses(register):
    """Register MSE."""
    register(MSE)
