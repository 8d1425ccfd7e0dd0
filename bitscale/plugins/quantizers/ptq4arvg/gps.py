"""Gain-projected scaling (PTQ4ARVG's GPS): per-channel smoothing factors from the quantization loss.

Expanding the output error of ``(X / s)(W s)^T`` to second order in the activation and weight
quantization errors and setting its derivative in ``s_i`` to zero gives, per input channel i,

    g_i = g* (sum X_i^2 * sum_o dW_{o,i}^2 / (sum dX_i^2 * sum_o Q(W)_{o,i}^2))^(1/4)

with the anchor ``g* = sqrt(range_X[a]) / sqrt(range_W[a])`` at the channel ``a`` of widest
activation range, which keeps ``g_a = g*``; ``g_i = 1`` where the numerator or the denominator
is 0. ``dX`` is the error of quantizing every channel on the anchor channel's grid (the grid a
per-tensor quantizer would use), ``dW`` that of the layer's own weight grid.

As in the official code, the expansion is taken around the SmoothQuant point, not around the
raw layer: activations are first scaled by SmoothQuant's ``t = max|X|^0.5 / max|W|^0.5`` (on the
raw input) and shifted to be symmetric per channel (``delta = (max + min) / 2``), and X, W, dX,
dW, the ranges and the anchor above are those of ``(X - delta) / t`` and ``W t``; the factor
applied is ``s = t * g``. Why it matters: around the raw layer the anchor's grid (set by the
outlier channel) is so coarse that every ordinary channel rounds to 0, ``dX_i = X_i``, and the
activation term drops out of the formula, which then ignores the activation magnitudes.
The positions a token-wise quantizer gives a group of their own (the "sink" tokens) can be left
out of the statistics (``skip_tokens``), as the official code does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bitscale.quant.capture import input_hooks, run_calibration
from bitscale.quant.formats import QuantSpec, choose_qparams, fake_quant, fake_quant_weight
from bitscale.quant.model import QuantModel


@dataclass
class ChannelStats:
    """Per-input-channel statistics of one input group (float32, on the CPU)."""

    xmin: Tensor
    xmax: Tensor
    sum_x2: Tensor | None = None  # of the shifted, pre-scaled input (x - delta) / init
    sum_dx2: Tensor | None = None  # its quantization error on the anchor's grid
    init: Tensor | None = None  # the pre-scaling (SmoothQuant factors) the sums were taken under
    tokens_axis: bool = True  # the input had a token axis (..., L, C), not just (B, C)
    length: int = 0  # tokens per call seen in calibration (the sequence length T)

    @property
    def shift(self) -> Tensor:
        return (self.xmax + self.xmin) / 2

    @property
    def range(self) -> Tensor:
        return self.xmax - self.xmin

    @property
    def absmax(self) -> Tensor:
        return torch.maximum(self.xmin.abs(), self.xmax.abs())

    @property
    def scaled_range(self) -> Tensor:
        """Channel ranges of the pre-scaled input ``(x - delta) / init``."""
        return self.range if self.init is None else self.range / self.init

    @property
    def anchor(self) -> int:
        """The channel of widest (pre-scaled) range."""
        return int(torch.argmax(self.scaled_range))


def anchor_qparams(stats: ChannelStats, spec: QuantSpec) -> tuple[Tensor, Tensor | None]:
    """Per-tensor grid of the (shifted, pre-scaled) anchor channel: every channel is rounded on it for dX."""
    half = stats.scaled_range[stats.anchor] / 2
    return choose_qparams(
        -half, half, QuantSpec(spec.fmt, "tensor", symmetric=spec.symmetric, restricted=spec.restricted)
    )


def _rows(x: Tensor, skip_tokens: int) -> Tensor:
    if skip_tokens and x.dim() >= 3 and x.shape[-2] > skip_tokens:
        x = x[..., skip_tokens:, :]
    return x.detach().reshape(-1, x.shape[-1]).float()


def collect_channel_stats(
    model: QuantModel,
    layers: dict[str, nn.Module],
    calibration: Iterable[Any],
    act_spec: QuantSpec | None,
    init: Callable[[str, ChannelStats], Tensor] | None = None,
    skip_tokens: int = 0,
) -> dict[str, ChannelStats]:
    """Calibration passes over the named layers: min/max, then (if ``act_spec``) sums of x^2 and dx^2.

    ``init(name, stats)`` gives the pre-scaling the sums are taken under (from the min/max pass);
    ``skip_tokens`` leaves the first positions of inputs with a token axis out of every statistic.
    """
    batches = list(calibration)
    stats: dict[str, ChannelStats] = {}

    def minmax(name: str, x: Tensor) -> None:
        rows = _rows(x, skip_tokens)
        lo, hi = rows.amin(dim=0).cpu(), rows.amax(dim=0).cpu()
        st = stats.get(name)
        if st is None:
            stats[name] = ChannelStats(lo, hi, tokens_axis=x.dim() >= 3, length=int(x.shape[-2]) if x.dim() >= 3 else 0)
        else:
            st.xmin, st.xmax = torch.minimum(st.xmin, lo), torch.maximum(st.xmax, hi)
            if x.dim() >= 3:
                st.length = max(st.length, int(x.shape[-2]))

    with input_hooks(layers, minmax):
        run_calibration(model, batches)
    if act_spec is None:
        return stats
    for name, st in stats.items():
        st.init = None if init is None else init(name, st).float().cpu()
    grids = {n: anchor_qparams(st, act_spec) for n, st in stats.items()}

    def sums(name: str, x: Tensor) -> None:
        st = stats[name]
        rows = _rows(x, skip_tokens) - st.shift.to(x.device)
        if st.init is not None:
            rows = rows / st.init.to(x.device)
        scale, zero = grids[name]
        err = rows - fake_quant(rows, scale.to(x.device), None if zero is None else zero.to(x.device), act_spec)
        x2, dx2 = rows.pow(2).sum(dim=0).cpu(), err.pow(2).sum(dim=0).cpu()
        st.sum_x2 = x2 if st.sum_x2 is None else st.sum_x2 + x2
        st.sum_dx2 = dx2 if st.sum_dx2 is None else st.sum_dx2 + dx2

    with input_hooks(layers, sums):
        run_calibration(model, batches)
    return stats


def gps_factors(stats: ChannelStats, weights: list[Tensor], w_spec: QuantSpec) -> Tensor:
    """GPS smoothing factors ``s = init * g`` for layers sharing one input (see the module docstring); float32."""
    w = torch.cat([x.detach().float().cpu() for x in weights], dim=0)
    t = torch.ones(w.shape[1]) if stats.init is None else stats.init
    w = w * t  # the pre-scaled weight W t
    a = stats.anchor
    x_range = stats.scaled_range
    w_range = w.amax(dim=0) - w.amin(dim=0)
    g_star = (x_range[a].clamp(min=0).sqrt() / w_range[a].sqrt()) if w_range[a] > 0 else torch.tensor(1.0)
    if not torch.isfinite(g_star) or g_star <= 0:
        g_star = torch.tensor(1.0)
    qw = fake_quant_weight(w, w_spec)
    num = stats.sum_x2 * (w - qw).pow(2).sum(dim=0)
    den = stats.sum_dx2 * qw.pow(2).sum(dim=0)
    ok = (den > 0) & (num > 0)
    g = torch.where(ok, g_star * (num / torch.where(ok, den, torch.ones_like(den))).pow(0.25), torch.ones_like(num))
    g[a] = g_star
    return (t * g).clamp(min=1e-5, max=1e5)


def smoothquant_factors(stats: ChannelStats, weights: list[Tensor], alpha: float = 0.5) -> Tensor:
    """SmoothQuant's ``max|X_j|^alpha / max|W_:,j|^(1-alpha)`` on the raw (unshifted) input, as the
    official code's SmoothQuant step, which runs before the shift: GPS's initialisation, and the
    factor used with GPS switched off."""
    w = torch.cat([x.detach().float().cpu() for x in weights], dim=0)
    a = stats.absmax
    wa = w.abs().amax(dim=0)
    s = a.clamp(min=1e-5).pow(alpha) / wa.clamp(min=1e-5).pow(1 - alpha)
    return torch.where((a > 0) & (wa > 0), s, torch.ones_like(s)).clamp(min=1e-5, max=1e5)
