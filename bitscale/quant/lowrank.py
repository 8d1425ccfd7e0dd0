"""``LowRankLinear``: a quantized residual plus a 16-bit low-rank branch (SVDQuant, LoRC-style).

    x' = transform(x)                         (shift / smoothing / rotation, see ``TransformLinear``)
    y  = linear(Qa(x'), Q(W' - U V), b') + (x' V^T) U^T

``U`` (``out x r``) and ``V`` (``r x in``) are kept in 16 bits and see the *unquantized*
transformed input, so the branch absorbs what quantization of the residual would lose most:
the top singular directions of the (smoothed) weight. Storage: the residual's codes and scales
plus ``16 r (in + out)`` bits for the branch (``lowrank_bits``), counted in ``storage_bits`` and
therefore in the effective bits of every report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bitscale.quant.linear import QuantLinear
from bitscale.quant.transform import TransformLinear

#: Bits per stored low-rank factor entry (fp16/bf16).
LOWRANK_ENTRY_BITS = 16


def lowrank_bits(out_features: int, in_features: int, rank: int, entry_bits: int = LOWRANK_ENTRY_BITS) -> int:
    """Exact bits of a rank-``rank`` branch ``U (out x r)``, ``V (r x in)``."""
    return entry_bits * rank * (out_features + in_features)


def truncated_svd(w: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``U, V`` with ``U V`` the best rank-``rank`` approximation of ``w`` (singular values split evenly)."""
    if rank <= 0:
        return w.new_zeros(w.shape[0], 0), w.new_zeros(0, w.shape[1])
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    return (u[:, :r] * root).to(w.dtype), (root.unsqueeze(1) * vh[:r]).to(w.dtype)


@dataclass
class LowRankSplit:
    """``weight ≈ up @ down + residual`` where ``residual`` is already rounded."""

    up: Tensor
    down: Tensor
    residual: Tensor
    #: ``||W - U V - Q(R)||_F / ||W||_F`` after each iteration (the first is plain SVD then RTN).
    errors: list[float]


def lowrank_quantize(w: Tensor, rank: int, quantize: Callable[[Tensor], Tensor], iters: int = 1) -> LowRankSplit:
    """Split ``w`` into a rank-``rank`` branch and a rounded residual; optionally alternate.

    Iteration 1: ``U V = SVD_r(W)``, ``R = Q(W - U V)``. Each further iteration refits the branch
    to what the rounding left, ``U V = SVD_r(W - Q(W - U V))``, and keeps the best split seen
    (by weight error), so more iterations never make it worse.
    """
    wf = w.detach().float()
    norm = float(wf.norm()) or 1.0
    up, down = truncated_svd(wf, rank)
    best: LowRankSplit | None = None
    errors: list[float] = []
    for _ in range(max(1, iters)):
        res = quantize(wf - up @ down)
        err = float((wf - up @ down - res).norm()) / norm
        errors.append(err)
        if best is None or err < min(errors[:-1]):
            best = LowRankSplit(up, down, res, [])
        up, down = truncated_svd(wf - res, rank)
    assert best is not None
    best.errors = errors
    return best


class LowRankLinear(TransformLinear):
    """``TransformLinear`` plus a 16-bit low-rank branch on the transformed input (module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, rank: int = 0, **kwargs) -> None:
        super().__init__(in_features, out_features, bias, **kwargs)
        dev, dtype = kwargs.get("device"), kwargs.get("dtype")
        self.rank = rank
        self.register_buffer("up", torch.zeros(out_features, rank, device=dev, dtype=dtype))
        self.register_buffer("down", torch.zeros(rank, in_features, device=dev, dtype=dtype))

    @classmethod
    def from_transform(
        cls, layer: QuantLinear, split: LowRankSplit, weight_bits: int, label: str = ""
    ) -> LowRankLinear:
        """Turn a ``TransformLinear`` (weight already fused) into ``residual + branch`` from ``split``."""
        rank = split.up.shape[1]
        new = cls(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            rank=rank,
            rotation=getattr(layer, "rotation", None),
            act_quantizer=layer.act_quantizer,
            storage_bits=weight_bits,
            weight_label=label,
            device=torch.device("meta"),
            dtype=layer.weight.dtype,
        )
        new.weight, new.bias = layer.weight, layer.bias  # adopt storage, as QuantLinear.from_linear does
        dtype, dev = layer.weight.dtype, layer.weight.device
        with torch.no_grad():
            new.weight.copy_(split.residual.to(dtype))
        new.up = split.up.to(device=dev, dtype=dtype).clone()
        new.down = split.down.to(device=dev, dtype=dtype).clone()
        new.shift = None if layer.shift is None else layer.shift.clone()
        new.smooth = None if layer.smooth is None else layer.smooth.clone()
        return new

    def dense_weight(self) -> Tensor:
        """Residual plus branch, ``W' ≈ Q(R) + U V`` (for tests and analysis)."""
        return self.effective_weight() + self.up @ self.down

    @property
    def storage_bits(self) -> int:
        return super().storage_bits + lowrank_bits(self.out_features, self.in_features, self.rank)

    def forward(self, x: Tensor) -> Tensor:
        xt = self.transform_input(x)
        xq = self.act_quantizer(xt) if self.act_quantizer is not None else xt
        y = F.linear(xq, self.effective_weight(), self.bias)
        if self.rank:
            y = y + F.linear(F.linear(xt, self.down), self.up)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rank={self.rank}"
