"""GPTVQ for one weight matrix (van Baalen et al., 2024; the paper's Eq. 14, Appendix A.3).

GPTQ generalised to vectors: each row's weights are cut into ``dim``-long vectors along the
input dimension, and ``dim`` columns are quantized at a time to centroids of a codebook.

- Codebooks: one per group of ``rows_per_group`` rows x ``block_size`` columns (sized so a
  group holds about ``codebook_weights`` weights), with ``2^(bits*dim)`` centroids, so the
  index costs exactly ``bits`` per weight. Each is initialised, when its block is reached, by
  k-means on the group's current (error-updated) weights, weighted by the Hessian diagonal
  (a weight's importance to the output), and stored in fp16 (counted in the effective bits).
- Assignment (Eq. 14): ``argmin_m (x - c_m)^T H_S (x - c_m)`` with ``H_S`` the inverse of the
  ``dim x dim`` block of the current inverse Hessian. With ``U`` the upper Cholesky factor of
  ``H^-1`` that block is ``U_SS^T U_SS``, so the distance is Euclidean after multiplying by
  ``U_SS^-1``.
- Error feedback: ``E = (W_S - Q_S) U_SS^-1``, then ``W_rest -= E U_S,rest`` (exact OBS update for
  a set of weights quantized together), applied lazily per block as in GPTQ.

Not implemented from the GPTVQ paper: the codebook fine-tuning after assignment, codebook
quantization to 8 bits and blockwise data normalisation (all optional refinements there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bitscale.plugins.quantizers.gptvq.kmeans import kmeans
from bitscale.quant.formats import CODEBOOK_ENTRY_BITS, vq_storage_bits
from bitscale.quant.gptq import inverse_hessian_cholesky


@dataclass
class VQResult:
    """Vector-quantized weight (as float) and its exact storage cost."""

    weight: Tensor
    storage_bits: int
    dim: int
    codebook_size: int
    num_codebooks: int
    damp: float


def codebook_count(rows: int, cols: int, dim: int, block_size: int, codebook_weights: int) -> int:
    """How many codebooks a ``(rows, cols)`` weight gets (column blocks x row groups)."""
    block = max(dim, block_size // dim * dim)
    rpg = max(1, min(rows, codebook_weights // block))
    return math.ceil(cols / block) * math.ceil(rows / rpg)


def codebook_overhead(rows: int, cols: int, bits: int, dim: int, block_size: int, codebook_weights: int) -> float:
    """Bits per weight spent on fp16 codebooks (on top of the ``bits`` of indices)."""
    n = codebook_count(rows, cols, dim, block_size, codebook_weights)
    return n * 2 ** (bits * dim) * dim * CODEBOOK_ENTRY_BITS / (rows * cols)


def gptvq_quantize(
    weight: Tensor,
    hessian: Tensor,
    bits: int,
    dim: int = 2,
    block_size: int = 128,
    codebook_weights: int = 16384,
    damp: float = 0.01,
    kmeans_iters: int = 10,
    generator: torch.Generator | None = None,
) -> VQResult:
    """Vector-quantize ``weight`` ``(out, in)`` at ``bits`` index bits per weight, given ``hessian``."""
    w = weight.detach().float().clone()
    h = hessian.detach().float().clone()
    rows, cols = w.shape
    if cols % dim:
        dim = 1  # vectors must tile the row; scalar codebooks still beat uniform grids
    k = 2 ** (bits * dim)
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    importance = torch.diagonal(h).clone()
    hinv, used_damp = inverse_hessian_cholesky(h, damp)
    del h
    if hinv is None:
        raise RuntimeError("Hessian is singular even after damping; use more calibration data")

    block = max(dim, block_size // dim * dim)
    rpg = max(1, min(rows, codebook_weights // block))
    n_rg = math.ceil(rows / rpg)
    row_group = torch.arange(rows, device=w.device) // rpg
    q_all = torch.zeros_like(w)
    n_codebooks = 0
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        width = i2 - i1
        codebooks = _init_codebooks(w[:, i1:i2], importance[i1:i2], dim, k, rpg, n_rg, kmeans_iters, generator)
        n_codebooks += n_rg
        c_rows = codebooks[row_group]  # (rows, k, dim): each row's codebook
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        ar = torch.arange(rows, device=w.device)
        for j in range(0, width, dim):
            s = slice(j, j + dim)
            u_inv = torch.linalg.inv(hinv1[s, s])
            x = w1[:, s]
            xt = x @ u_inv
            ct = c_rows @ u_inv
            choice = (xt.unsqueeze(1) - ct).pow(2).sum(-1).argmin(dim=1)
            q = c_rows[ar, choice]
            e = (x - q) @ u_inv
            w1[:, j:] -= e @ hinv1[s, j:]
            err1[:, s] = e
            q_all[:, i1 + j : i1 + j + dim] = q
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    bits_total = vq_storage_bits((rows, cols), dim, k, n_codebooks)
    return VQResult(q_all.to(weight.dtype), bits_total, dim, k, n_codebooks, used_damp)


def _init_codebooks(
    blk: Tensor,
    importance: Tensor,
    dim: int,
    k: int,
    rpg: int,
    n_rg: int,
    iters: int,
    generator: torch.Generator | None,
) -> Tensor:
    """k-means codebooks ``(n_rg, k, dim)`` for one column block, one per row group, fp16-exact."""
    rows, width = blk.shape
    pad = n_rg * rpg - rows
    x = torch.nn.functional.pad(blk, (0, 0, 0, pad)).reshape(n_rg, rpg, width // dim, dim)
    imp = importance.reshape(1, 1, width // dim, dim).expand(n_rg, rpg, -1, -1).clone()
    if pad:
        imp.reshape(n_rg * rpg, width // dim, dim)[rows:] = 0  # padded rows do not pull centroids
    x, imp = x.reshape(n_rg, -1, dim), imp.reshape(n_rg, -1, dim)
    # k-means holds (groups, vectors, k) distances: bound them (~2M entries) by chunking groups
    step = max(1, (1 << 21) // (x.shape[1] * k))
    c = torch.cat([kmeans(x[i : i + step], k, imp[i : i + step], iters, generator)[0] for i in range(0, n_rg, step)])
    return c.half().float()  # codebooks are stored in fp16: quantize exactly what is stored
