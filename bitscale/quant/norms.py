"""Fold an affine norm's weight and bias into the linears that read its output (QuaRot, SpinQuant).

For ``y = norm(x) * g + beta`` read by linears ``W_j``: ``W_j (n g + beta) + b_j =
(W_j diag(g)) n + (b_j + W_j beta)``, so ``g``/``beta`` can move into every reader and the norm
keeps ``g = 1, beta = 0``. This is exact only if the norm's output feeds nothing else, which a
forward hook cannot see: callers check the full-precision output afterwards and ``undo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bitscale.quant.capture import InputGroup


@dataclass
class NormFolds:
    """What ``fold_norms`` changed, so that it can be undone exactly."""

    saved: list[tuple[nn.Module, Tensor, Tensor | None, list[tuple[nn.Linear, Tensor, Tensor | None, bool]]]] = field(
        default_factory=list
    )

    def __len__(self) -> int:
        return len(self.saved)

    @torch.no_grad()
    def undo(self) -> None:
        for norm, w, b, lins in self.saved:
            norm.weight.copy_(w)
            if b is not None:
                norm.bias.copy_(b)
            for lin, lw, lb, had_bias in lins:
                lin.weight.copy_(lw)
                if had_bias:
                    lin.bias.copy_(lb)
                else:
                    lin.bias = None
        self.saved.clear()


@torch.no_grad()
def fold_norms(root: nn.Module, groups: list[InputGroup], layers: dict[str, nn.Linear]) -> NormFolds:
    """Fold each producing norm into its group's linears; a norm producing several groups is skipped."""
    producers = [g.producer for g in groups if g.producer]
    folds = NormFolds()
    for g in groups:
        if not g.producer or producers.count(g.producer) > 1:
            continue
        norm = root.get_submodule(g.producer)
        gamma = norm.weight.detach().clone()
        beta = None if getattr(norm, "bias", None) is None else norm.bias.detach().clone()
        saved_lins = []
        for name in g.members:
            lin = layers[name]
            saved_lins.append(
                (
                    lin,
                    lin.weight.detach().clone(),
                    None if lin.bias is None else lin.bias.detach().clone(),
                    lin.bias is not None,
                )
            )
            w = lin.weight.double()
            if beta is not None:
                corr = (w @ beta.double()).to(lin.weight.dtype)
                if lin.bias is None:
                    lin.bias = nn.Parameter(corr)
                else:
                    lin.bias.add_(corr)
            lin.weight.copy_((w * gamma.double()).to(lin.weight.dtype))
        norm.weight.fill_(1.0)
        if beta is not None:
            norm.bias.zero_()
        folds.saved.append((norm, gamma, beta, saved_lins))
    return folds
