"""OmniQuant for one group of layers sharing an input (Shao et al., 2023; the paper's Eq. 9-11).

Learnable parameters, trained with Adam through the straight-through estimator so that the
quantized group reproduces the full-precision outputs on captured inputs:

- LWC (learnable weight clipping, Eq. 10): per quantization group, ``gamma = sigmoid(g)`` and
  ``beta = sigmoid(b)`` shrink the max and min that set the grid:
  ``h = (gamma max(W) - beta min(W)) / (2^N - 1)``, ``z = -round(beta min(W) / h)``.
  OmniQuant initialises at ``sigmoid(4) ~ 0.98`` (almost min-max); we start from the best of
  a small grid of clipping ratios per group (``OmniGroup.init_clipping``) so that a few
  hundred steps suffice (OmniQuant trains for thousands).
- LET (learnable equivalent transformation, Eq. 11), shared by the group: per input channel a
  scale ``s`` and shift ``delta`` with ``X W^T + B = ((X - delta) / s)(s W)^T + (B + delta W^T)``,
  initialised from SmoothQuant's ``s`` (alpha 0.5) and the channel mid-range for ``delta``.
  Used only when activations are quantized (for weight-only it is off by default, as in
  OmniQuant's W-only recipes).

Why per group of layers, not per transformer block: the plugin contract exposes layers, not
blocks, so a block's internal function (attention, norms, residuals) is unknown. Layers that
read the same tensor (q/k/v) are optimised together because they must share one LET.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitscale.quant.formats import QuantSpec, choose_qparams, fake_quant_activation, fake_quant_weight, weight_minmax

_LWC_INIT = 4.0


class OmniGroup(nn.Module):
    """The learnable quantization of one group of Linears that read the same input."""

    def __init__(
        self,
        layers: list[nn.Linear],
        wspec: QuantSpec,
        aspec: QuantSpec | None,
        let: bool,
        act_absmax: Tensor | None = None,
        act_min: Tensor | None = None,
        act_max: Tensor | None = None,
        alpha: float = 0.5,
    ) -> None:
        super().__init__()
        self.wspec, self.aspec, self.let = wspec, aspec, let
        self.weights = [lin.weight.detach().float() for lin in layers]
        self.biases = [
            lin.bias.detach().float()
            if lin.bias is not None
            else torch.zeros(lin.out_features, device=lin.weight.device)
            for lin in layers
        ]
        self.lwc_max = nn.ParameterList()
        self.lwc_min = nn.ParameterList()
        for w in self.weights:
            lo, _ = weight_minmax(w, wspec)
            self.lwc_max.append(nn.Parameter(torch.full_like(lo, _LWC_INIT)))
            self.lwc_min.append(nn.Parameter(torch.full_like(lo, _LWC_INIT)))
        inp = self.weights[0].shape[1]
        dev = self.weights[0].device
        if let:
            w_absmax = torch.stack([w.abs().amax(0) for w in self.weights]).amax(0).clamp(min=1e-5)
            a = act_absmax.float().to(dev).clamp(min=1e-5)
            s0 = (a.pow(alpha) / w_absmax.pow(1 - alpha)).clamp(1e-5, 1e5)
            d0 = ((act_min + act_max) / 2).float().to(dev)
            self.log_scale = nn.Parameter(s0.log())
            self.shift = nn.Parameter(d0)
        else:
            self.register_parameter("log_scale", None)
            self.register_parameter("shift", None)
        self.inp = inp

    @torch.no_grad()
    def init_clipping(self, x: Tensor, ratios: int = 11, lowest: float = 0.5) -> None:
        """Start LWC at the best of a grid of clipping ratios per quantization group.

        Error measure: ``sum_c E[x_c^2] (W - Q(W))_rc^2`` over each group's columns (the output
        error if input channels were uncorrelated). OmniQuant starts at ``sigmoid(4)`` and needs
        thousands of steps to move (the sigmoid is flat there); a searched start lets a few
        hundred steps refine rather than search.
        """
        s, d = self.transformed()
        energy = torch.zeros(x.shape[1], device=x.device)
        for chunk in x.split(1024):  # row chunks: no full-size temporary
            xt = chunk.float() if s is None else (chunk.float() - d) / s
            energy += xt.pow(2).sum(0)
        energy /= x.shape[0]
        for i, w0 in enumerate(self.weights):
            w = w0 * s if s is not None else w0
            lo, hi = weight_minmax(w, self.wspec)
            best_err = best_r = None
            for r in torch.linspace(1.0, lowest, ratios).tolist():
                scale, zero = choose_qparams(lo * r, hi * r, self.wspec)
                err = (fake_quant_weight(w, self.wspec, scale, zero) - w).pow(2) * energy
                err = _per_group_sum(err, self.wspec, lo.shape)
                if best_err is None:
                    best_err, best_r = err, torch.full_like(err, r)
                else:
                    better = err < best_err
                    best_err = torch.where(better, err, best_err)
                    best_r = torch.where(better, torch.full_like(err, r), best_r)
            logit = torch.logit(best_r.clamp(max=0.982))  # 0.982 = sigmoid(4), OmniQuant's start
            self.lwc_max[i].copy_(logit)
            self.lwc_min[i].copy_(logit)

    def transformed(self) -> tuple[Tensor | None, Tensor | None]:
        """Current LET ``(s, delta)`` (``None`` when LET is off)."""
        if not self.let:
            return None, None
        return self.log_scale.exp(), self.shift

    def quantized_weight(self, i: int) -> Tensor:
        """LWC-quantized (and LET-scaled) weight of member ``i``."""
        s, _ = self.transformed()
        w = self.weights[i] * s if s is not None else self.weights[i]
        lo, hi = weight_minmax(w, self.wspec)
        scale, zero = choose_qparams(
            lo * torch.sigmoid(self.lwc_min[i]), hi * torch.sigmoid(self.lwc_max[i]), self.wspec
        )
        return fake_quant_weight(w, self.wspec, scale, zero)

    def bias(self, i: int) -> Tensor:
        _, d = self.transformed()
        return self.biases[i] + self.weights[i] @ d if d is not None else self.biases[i]

    def forward(self, x: Tensor) -> list[Tensor]:
        s, d = self.transformed()
        if d is not None:
            x = (x - d) / s
        if self.aspec is not None:
            # dynamic even for a static per-tensor spec: the static range is calibrated afterwards
            x = fake_quant_activation(x, self.aspec)
        return [F.linear(x, self.quantized_weight(i), self.bias(i)) for i in range(len(self.weights))]


def _per_group_sum(err: Tensor, spec: QuantSpec, shape: torch.Size) -> Tensor:
    """Sum an ``(out, in)`` error map over each quantization group -> ``(rows, groups)``."""
    rows, groups = shape
    if spec.granularity == "tensor":
        return err.sum().reshape(1, 1)
    if groups == 1:
        return err.sum(dim=1, keepdim=True)
    pad = groups * spec.group_size - err.shape[1]
    return F.pad(err, (0, pad)).reshape(rows, groups, -1).sum(-1)


@dataclass
class OmniResult:
    weights: list[Tensor]
    biases: list[Tensor]
    smooth: Tensor | None
    shift: Tensor | None
    loss_before: float
    loss_after: float


def optimize_group(
    group: OmniGroup,
    inputs: Tensor,
    steps: int,
    lr_lwc: float,
    lr_let: float,
    batch_rows: int,
    generator: torch.Generator | None = None,
    patience: int = 3,
) -> OmniResult:
    """Train ``group`` to reproduce the full-precision outputs on ``inputs`` ``(N, in)``; bake the result."""
    x_all = inputs.float()
    with torch.no_grad():
        targets = [
            torch.cat([F.linear(c, w, b) for c in x_all.split(batch_rows)]) for w, b in zip(group.weights, group.biases)
        ]

    def loss_on(idx: Tensor | None) -> Tensor:
        if idx is None:  # all rows, in chunks so no full-size activation temporaries exist
            total = sum(
                sum(
                    F.mse_loss(o, t[i : i + batch_rows], reduction="sum")
                    for o, t in zip(group(x_all[i : i + batch_rows]), targets)
                )
                for i in range(0, x_all.shape[0], batch_rows)
            )
            return total / (len(targets) * sum(t.numel() for t in targets) / len(targets))
        outs = group(x_all[idx])
        return sum(F.mse_loss(o, t[idx]) for o, t in zip(outs, targets)) / len(outs)

    group.init_clipping(x_all)
    with torch.no_grad():
        before = float(loss_on(None))
    params = [{"params": list(group.lwc_max) + list(group.lwc_min), "lr": lr_lwc}]
    if group.let:
        params.append({"params": [group.log_scale, group.shift], "lr": lr_let})
    opt = torch.optim.Adam(params)
    best = (before, _snapshot(group))
    n = x_all.shape[0]
    stale = 0  # evaluations without a 0.1 % improvement: stop after `patience` of them
    for step in range(steps):
        idx = (
            torch.randint(0, n, (min(batch_rows, n),), generator=generator).to(x_all.device) if n > batch_rows else None
        )
        opt.zero_grad(set_to_none=True)
        loss = loss_on(idx)
        if not torch.isfinite(loss):
            break
        loss.backward()
        opt.step()
        if step == steps - 1 or (step + 1) % 20 == 0:
            with torch.no_grad():
                full = float(loss_on(None))
            stale = 0 if full < best[0] * (1 - 1e-3) else stale + 1
            if full < best[0]:
                best = (full, _snapshot(group))
            if stale >= patience:
                break
    _restore(group, best[1])  # never return something worse than where we started
    with torch.no_grad():
        s, d = group.transformed()
        return OmniResult(
            [group.quantized_weight(i) for i in range(len(group.weights))],
            [group.bias(i) for i in range(len(group.weights))],
            None if s is None else s.detach().clone(),
            None if d is None else d.detach().clone(),
            before,
            best[0],
        )


def _snapshot(group: OmniGroup) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in group.named_parameters()}


def _restore(group: OmniGroup, snap: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for k, v in group.named_parameters():
            v.copy_(snap[k])
