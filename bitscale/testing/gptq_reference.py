"""A plain OBS-form GPTQ, for tests only.

``gptq_obs`` is GPTQ in its OBS/OBQ form (the paper's Eq. 2-3; Frantar et al., 2022): quantize
column q, propagate ``(w_q - q) / [H^-1]_qq * [H^-1]_{q,:}`` to the remaining columns, then
remove q from the explicit inverse Hessian by Gaussian elimination. O(cols^3), float64, no
Cholesky and no blocking, so it checks on small layers that ``bitscale.quant.gptq`` (Cholesky
form, lazy block updates) computes the same function. It uses the same min-max grid as
``bitscale.quant.formats``, damping ``0.01 * mean(diag(H))`` and group parameters from the
current weights at each group start (bitscale's default).

The comparison with an established implementation (llm-compressor's GPTQ, in its own venv
because it pins an older torch) is ``benchmarks/bench_gptq_reference.py``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from bitscale.quant.formats import QuantSpec, fake_quant, weight_qparams


def _column_params(w: Tensor, spec: QuantSpec, j: int, cached: tuple) -> tuple:
    """Per-row (scale, zero) for column ``j``: whole-row grid, or the group's grid at its start."""
    if spec.granularity == "group" and spec.group_size < w.shape[1]:
        if j % spec.group_size == 0:
            chunk = w[:, j : j + spec.group_size]
            s, z = weight_qparams(chunk, replace(spec, granularity="channel", group_size=None))
            return s[:, 0], (z[:, 0] if z is not None else None)
        return cached
    return cached


def _damped(h: Tensor, w: Tensor, damp: float) -> tuple[Tensor, Tensor]:
    h = h.double().clone()
    w = w.double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diagonal(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    return h, w


def gptq_obs(weight: Tensor, hessian: Tensor, spec: QuantSpec, damp: float = 0.01) -> Tensor:
    """GPTQ in its OBS form: explicit inverse Hessian, updated after every column (float64)."""
    h, w = _damped(hessian, weight, damp)
    hinv = torch.linalg.inv(h)
    cols = w.shape[1]
    q_all = torch.zeros_like(w)
    params: tuple = (None, None)
    if not (spec.granularity == "group" and spec.group_size < cols):
        s, z = weight_qparams(w, spec)
        params = (s[:, 0], z[:, 0] if z is not None else None)
    for j in range(cols):
        params = _column_params(w, spec, j, params)
        q = fake_quant(w[:, j], params[0], params[1], spec)
        q_all[:, j] = q
        err = (w[:, j] - q) / hinv[j, j]
        w[:, j:] -= err[:, None] * hinv[j, j:][None, :]
        # remove column j from the problem: Gaussian elimination on the inverse Hessian
        hinv -= torch.outer(hinv[:, j], hinv[j, :]) / hinv[j, j]
    return q_all.to(weight.dtype)
