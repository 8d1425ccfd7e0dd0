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
original column order (what llm-compressor does), and each column looks its group up by its
original index.

The loop works on ``W^T`` so that the column being quantized, its error and its result are
contiguous rows; the in-block error feedback is one rank-1 ``addmm_`` per column and the
lazy update of the later columns one ``addmm_`` per block (no temporaries).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from bitscale.quant.formats import QuantSpec, fake_quant, fake_quant_weight, weight_qparams


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
    cols = w.shape[1]
    dead = torch.diagonal(h) == 0  # inputs that were always zero: weight is irrelevant, zero it
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    grouped = spec.granularity == "group" and spec.group_size < cols
    # block-scaled formats fix their block scales from the original weight (as static groups)
    static = not grouped or act_order or static_groups or spec.kind == "mx"
    perm = None
    if act_order:
        perm = torch.argsort(torch.diagonal(h), descending=True)
    scale_t = zero_t = None
    if static:
        # One row of parameters per group (or one for the channel / tensor), each row
        # contiguous over the output rows; column j (in quantization order) uses row pidx[j].
        scale, zero = weight_qparams(w, spec)
        scale_t = scale.t().contiguous()
        zero_t = zero.t().contiguous() if zero is not None else None
        order = perm if perm is not None else torch.arange(cols)
        pidx = (order // spec.group_size).tolist() if grouped else [0] * cols
    # Work on W^T, so that a column of W (what each step reads and writes) is a contiguous row.
    wt = w.t().contiguous() if perm is None else w.t()[perm]
    del w
    if perm is not None:
        h = h[perm.unsqueeze(1), perm]

    hinv, used_damp = inverse_hessian_cholesky(h, damp)
    del h
    if hinv is None:
        return GPTQResult(fake_quant_weight(weight.detach(), spec), float("nan"), used_damp, True)

    if grouped and not static:
        # Blocks hold whole groups, so a group's parameters see all updates made before it.
        gs = spec.group_size
        block_size = gs * max(1, block_size // gs)
    qt = torch.empty_like(wt)
    loss = torch.zeros((), dtype=torch.float64, device=wt.device)
    s = z = None
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = wt[i1:i2].clone()
        err1 = torch.empty_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if static:
                s = scale_t[pidx[j]]
                z = zero_t[pidx[j]] if zero_t is not None else None
            elif j % spec.group_size == 0:
                s, z = weight_qparams(w1[i : i + spec.group_size].t(), _as_channel(spec))
                s = s[:, 0]
                z = z[:, 0] if z is not None else None
            q = fake_quant(w1[i], s, z, spec)
            e = (w1[i] - q) / hinv1[i, i]
            qt[j] = q
            err1[i] = e
            # propagate to the rest of the block now (one rank-1 update); to later blocks lazily
            w1[i + 1 :].addmm_(hinv1[i, i + 1 :].unsqueeze(1), e.unsqueeze(0), alpha=-1)
        wt[i2:].addmm_(hinv[i1:i2, i2:].t(), err1, alpha=-1)
        loss += err1.double().pow(2).sum() / 2

    if perm is not None:
        qt = qt[torch.argsort(perm)]
    return GPTQResult(qt.t().contiguous().to(weight.dtype), float(loss), used_damp)


def _as_channel(spec: QuantSpec) -> QuantSpec:
    """The same grid per row (used on one group's columns at a time)."""
    return replace(spec, granularity="channel", group_size=None)
