"""GPTQ for one weight matrix (Frantar et al., 2022; the paper's Eq. 12-13, Appendix A.2).

Columns are quantized one at a time; the rounding error of column q, divided by the q-th
diagonal entry of the (upper Cholesky factor of the) inverse Hessian, is propagated to the
columns not yet quantized. Updates are applied lazily in blocks of ``block_size`` columns
(the paper's Algorithm 1), so the big rank-B update is one matmul per block.

Group quantization parameters are chosen the way the reference GPTQ code does: for
per-channel (and per-tensor) grids once from the whole original weight; for groups, when the
first column of each group is reached, from the group's *current* (error-updated) weights.
With ``act_order`` (columns in order of decreasing Hessian diagonal), or with
``static_groups``, group parameters are fixed up front from the original weight in the
original column order, so groups stay contiguous and need no column-to-group index.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bitscale.quant.formats import QuantSpec, expand_group_params, fake_quant, fake_quant_weight, weight_qparams


@dataclass
class GPTQResult:
    """Quantized (dequantized-to-float) weight and what happened on the way."""

    weight: Tensor
    #: Sum over columns of ||w - q||^2 / [H^-1]_qq^2 / 2: GPTQ's own objective (Eq. 12).
    loss: float
    #: Damping actually used, relative to mean(diag(H)) (raised if Cholesky failed).
    damp: float
    #: True if the Hessian stayed singular at every damping tried and RTN was used instead.
    fell_back_to_rtn: bool = False


def inverse_hessian_cholesky(h: Tensor, damp: float, tries: int = 4) -> tuple[Tensor | None, float]:
    """Upper Cholesky factor of ``(H + damp * mean(diag H) * I)^-1``; raise damping on failure.

    Damps ``h``'s diagonal in place (callers pass a copy) and frees each intermediate as soon
    as the next exists, so the peak is about two ``(in, in)`` matrices besides ``h``.
    """
    diag = torch.diagonal(h)
    base = diag.clone()
    mean_diag = base.mean()
    for _ in range(tries):
        diag.copy_(base + damp * mean_diag)
        l, info = torch.linalg.cholesky_ex(h)
        if int(info) == 0:
            hinv = torch.cholesky_inverse(l)
            del l
            u, info = torch.linalg.cholesky_ex(hinv, upper=True)
            del hinv
            if int(info) == 0:
                return u, damp
        damp *= 10  # ill-conditioned (few calibration tokens): damp harder, as reference code advises
    return None, damp


def gptq_quantize(
    weight: Tensor,
    hessian: Tensor,
    spec: QuantSpec,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
    static_groups: bool = False,
) -> GPTQResult:
    """Quantize ``weight`` ``(out, in)`` given ``hessian`` ``(in, in)`` (= 2/N X^T X); returns float weights."""
    w = weight.detach().float().clone()
    h = hessian.detach().float().clone()
    rows, cols = w.shape
    dead = torch.diagonal(h) == 0  # inputs that were always zero: weight is irrelevant, zero it
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    grouped = spec.granularity == "group" and spec.group_size < cols
    static = not grouped or act_order or static_groups
    col_scale = col_zero = None
    if static:
        scale, zero = weight_qparams(w, spec)
        col_scale = expand_group_params(scale, spec, cols) if spec.granularity != "tensor" else scale.expand(rows, cols)
        if zero is not None:
            col_zero = expand_group_params(zero, spec, cols) if spec.granularity != "tensor" else zero.expand(rows, cols)

    perm = None
    if act_order:
        perm = torch.argsort(torch.diagonal(h), descending=True)
        w, h = w[:, perm], h[perm][:, perm]
        col_scale = col_scale[:, perm]
        col_zero = col_zero[:, perm] if col_zero is not None else None

    hinv, used_damp = inverse_hessian_cholesky(h, damp)
    del h
    if hinv is None:
        return GPTQResult(fake_quant_weight(weight.detach(), spec), float("nan"), used_damp, True)

    if grouped and not static:
        # Blocks hold whole groups, so a group's parameters see all updates made before it.
        gs = spec.group_size
        block_size = gs * max(1, block_size // gs)
    q_all = torch.zeros_like(w)
    loss = torch.zeros((), dtype=torch.float64, device=w.device)
    s_cur = z_cur = None
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if static:
                s = col_scale[:, j]
                z = col_zero[:, j] if col_zero is not None else None
            else:
                if j % spec.group_size == 0:
                    s_cur, z_cur = weight_qparams(w1[:, i : i + spec.group_size], _as_channel(spec))
                    s_cur = s_cur[:, 0]
                    z_cur = z_cur[:, 0] if z_cur is not None else None
                s, z = s_cur, z_cur
            col = w1[:, i]
            q = fake_quant(col, s, z, spec)
            d = hinv1[i, i]
            e = (col - q) / d
            # propagate to the rest of the block now; to later blocks lazily (below)
            w1[:, i:] -= e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
            q_all[:, j] = q
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
        loss += err1.double().pow(2).sum() / 2

    if perm is not None:
        q_all = q_all[:, torch.argsort(perm)]
    return GPTQResult(q_all.to(weight.dtype), float(loss), used_damp)


def _as_channel(spec: QuantSpec) -> QuantSpec:
    """The same grid per row (used on one group's columns at a time)."""
    return QuantSpec(spec.fmt, "channel", None, spec.symmetric)
