"""Batched, importance-weighted k-means (Lloyd) for VQ codebook initialisation.

Minimises ``sum_v sum_d w[v, d] * (x[v, d] - c[a(v), d])^2`` independently for each of ``G``
problems at once, all vectorized: assignment by expanding the weighted square
(``w.x^2 - 2 (w x) . c + w . c^2``, three matmuls), update by weighted means via ``scatter_add``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_sq_dist(x: Tensor, w: Tensor, c: Tensor) -> Tensor:
    """``(G, N, K)`` weighted squared distances of vectors ``x`` ``(G, N, d)`` to centroids ``c`` ``(G, K, d)``."""
    # two (G, N, K) tensors at most: the distances are built in place
    d = torch.baddbmm(torch.bmm(w, (c * c).transpose(1, 2)), w * x, c.transpose(1, 2), alpha=-2)
    d += (w * x * x).sum(-1, keepdim=True)
    return d.clamp_(min=0)


def kmeans(
    x: Tensor, k: int, weights: Tensor | None = None, iters: int = 10, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Centroids ``(G, K, d)`` and assignments ``(G, N)`` for ``G`` batched problems ``x`` ``(G, N, d)``.

    Initialised from ``k`` distinct random vectors per problem (deterministic with ``generator``);
    empty clusters keep their previous centroid.
    """
    g, n, d = x.shape
    w = torch.ones_like(x) if weights is None else weights.expand_as(x)
    if n <= k:
        # fewer vectors than centroids: every vector is its own centroid (pad with the first)
        c = torch.cat([x, x[:, :1].expand(g, k - n, d)], dim=1) if n < k else x.clone()
        return c, torch.arange(n, device=x.device).expand(g, n).clone()
    if d == 1:
        # scalar codebooks: start from evenly spaced order statistics (already close to optimal)
        pos = torch.linspace(0, n - 1, k, device=x.device).round().long()
        c = x.sort(dim=1).values[:, pos].clone()
    else:
        idx = torch.stack([torch.randperm(n, generator=generator)[:k] for _ in range(g)]).to(x.device)
        c = torch.gather(x, 1, idx.unsqueeze(-1).expand(g, k, d)).clone()
    assign = torch.zeros(g, n, dtype=torch.long, device=x.device)
    for _ in range(iters):
        assign = _nearest_1d(x, c) if d == 1 else weighted_sq_dist(x, w, c).argmin(dim=-1)
        num = torch.zeros(g, k, d, device=x.device, dtype=x.dtype).scatter_add_(
            1, assign.unsqueeze(-1).expand(g, n, d), w * x
        )
        den = torch.zeros(g, k, d, device=x.device, dtype=x.dtype).scatter_add_(
            1, assign.unsqueeze(-1).expand(g, n, d), w
        )
        c = torch.where(den > 0, num / den.clamp(min=1e-30), c)
    return c, assign


def _nearest_1d(x: Tensor, c: Tensor) -> Tensor:
    """Nearest scalar centroid by binary search on midpoints (per-dimension weights do not
    change a 1-D assignment): O(N log K) instead of the O(N K) distance matrix."""
    cs, order = c[..., 0].sort(dim=1)
    mid = (cs[:, 1:] + cs[:, :-1]) / 2
    pos = torch.searchsorted(mid.contiguous(), x[..., 0].contiguous())
    return order.gather(1, pos)
