"""Straightforward reference implementations of GPTQ, for tests and benchmarks only.

No packaged GPTQ could be installed next to bitscale here: llm-compressor 0.14 pins
torch<=2.14 and transformers (the environment has torch 2.15), gptqmodel needs a CUDA
extension build, and torchao's prototype GPTQ handles int4 only. So the reference is written
from the GPTQ paper (Frantar et al., 2022), as plainly as possible, in two forms:

- ``gptq_obs``: the OBS/OBQ form (paper Eq. 2-3): quantize column q, propagate
  ``(w_q - q) / [H^-1]_qq * [H^-1]_{q,:}`` to the remaining columns, then remove q from the
  inverse Hessian by Gaussian elimination. O(cols^3); no Cholesky, no blocking. Use on small
  layers to check that the fast implementation computes the same function.
- ``gptq_algorithm1``: the paper's Algorithm 1 line by line (Cholesky of the inverse, lazy
  block updates, group parameters from the current weights at each group start), the form of
  the reference GPTQ code; used for wall-time comparisons on realistic layer shapes.

Both use the same min-max grid as ``bitscale.quant.formats`` and damping
``0.01 * mean(diag(H))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bitscale.quant.formats import QuantSpec, fake_quant, weight_qparams


def _column_params(w: Tensor, spec: QuantSpec, j: int, cached: tuple) -> tuple:
    """Per-row (scale, zero) for column ``j``: whole-row grid, or the group's grid at its start."""
    if spec.granularity == "group" and spec.group_size < w.shape[1]:
        if j % spec.group_size == 0:
            chunk = w[:, j : j + spec.group_size]
            s, z = weight_qparams(chunk, QuantSpec(spec.fmt, "channel", None, spec.symmetric))
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


def gptq_algorithm1(
    weight: Tensor, hessian: Tensor, spec: QuantSpec, block_size: int = 128, damp: float = 0.01
) -> Tensor:
    """The GPTQ paper's Algorithm 1 (float32, as the reference code runs it)."""
    h, w = _damped(hessian, weight, damp)
    h, w = h.float(), w.float()
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    cols = w.shape[1]
    q_all = torch.zeros_like(w)
    params: tuple = (None, None)
    if not (spec.granularity == "group" and spec.group_size < cols):
        s, z = weight_qparams(w, spec)
        params = (s[:, 0], z[:, 0] if z is not None else None)
    for i in range(0, cols, block_size):
        end = min(i + block_size, cols)
        err = torch.zeros(w.shape[0], end - i)
        for j in range(i, end):
            # group parameters come from the weights as updated so far (full W: the block's
            # own pending updates are already in W because we update W in place here)
            params = _column_params(w, spec, j, params)
            q = fake_quant(w[:, j], params[0], params[1], spec)
            q_all[:, j] = q
            err[:, j - i] = (w[:, j] - q) / hinv[j, j]
            w[:, j:end] -= err[:, j - i : j - i + 1] @ hinv[j : j + 1, j:end]
        w[:, end:] -= err @ hinv[i:end, end:]
    return q_all.to(weight.dtype)
