"""Static token-wise activation quantization (PTQ4ARVG's STWQ): one calibrated scale per token group.

AR visual generators have a fixed token layout and position-dependent activation ranges (the
first, "sink" token and each VAR scale level differ by orders of magnitude), so a static scale
per *group of positions*, calibrated offline, follows the ranges without any run-time statistics.

Positions. A call whose length is the calibrated sequence length ``T`` (teacher forcing, DiT)
covers positions ``0..T-1``. Shorter calls are the steps of a KV-cached generation, which feed
every position once and in order (VAR: the tokens of one scale level; raster models: one token);
the quantizer keeps a position counter that advances by the call length and wraps at ``T``.
A generation abandoned midway would leave the counter off; ``reset_position()`` restarts it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec, choose_qparams, fake_quant


def var_groups(patch_nums: tuple[int, ...]) -> list[tuple[int, int]]:
    """One group per VAR scale level (``pn^2`` tokens each); level 0 is the single first token."""
    out, cur = [], 0
    for pn in patch_nums:
        out.append((cur, cur + pn * pn))
        cur += pn * pn
    return out


#: Leading raster positions quantized one group each (the official RAR code's two sink tokens).
RASTER_HEAD = 2


def raster_groups(length: int, head: int = RASTER_HEAD) -> list[tuple[int, int]]:
    """The first ``head`` tokens one group each, then the rest (the official raster-model layout)."""
    head = min(head, length)
    return [(i, i + 1) for i in range(head)] + ([(head, length)] if length > head else [])


class TokenGroupActQuantizer(ActQuantizer):
    """Static per-token-group activation quantizer (see the module docstring).

    ``observe()`` / calibration passes / ``freeze()`` as the static ``ActQuantizer``; ranges are
    kept per group over tokens, batch and channels.
    """

    def __init__(self, spec: QuantSpec, groups: list[tuple[int, int]]) -> None:
        if spec.kind != "int":
            raise ValueError(f"static token-wise quantization is defined for int activations, not {spec.fmt}")
        super().__init__(QuantSpec(spec.fmt, "tensor", symmetric=spec.symmetric, restricted=spec.restricted))
        if not groups or groups[0][0] != 0 or any(a[1] != b[0] for a, b in zip(groups, groups[1:])):
            raise ValueError(f"token groups must tile positions 0..T-1 in order, got {groups}")
        self.groups = list(groups)
        self.length = groups[-1][1]
        self.position = 0
        group_of = torch.empty(self.length, dtype=torch.long)
        for i, (a, b) in enumerate(groups):
            group_of[a:b] = i
        self.register_buffer("group_of", group_of)
        self.register_buffer("group_min", torch.full((len(groups),), float("inf")))
        self.register_buffer("group_max", torch.full((len(groups),), float("-inf")))

    def reset_position(self) -> None:
        self.position = 0

    def positions(self, length: int, device: torch.device) -> Tensor:
        """Positions of a call of ``length`` tokens (see the module docstring)."""
        if length == self.length:
            self.position = 0
            return torch.arange(length, device=device)
        if length > self.length:
            raise ValueError(f"a call of {length} tokens exceeds the calibrated sequence length {self.length}")
        start = self.position
        self.position = (start + length) % self.length
        return (torch.arange(start, start + length, device=device)) % self.length

    def forward(self, x: Tensor) -> Tensor:
        if self.group_of.device != x.device:
            self.to(x.device)
        if x.dim() < 2:
            raise ValueError("token-wise quantization needs inputs shaped (..., tokens, channels)")
        gid = self.group_of[self.positions(x.shape[-2], x.device)]
        if self.observing:
            with torch.no_grad():
                xf = x.detach().float()
                red = [d for d in range(xf.dim()) if d != xf.dim() - 2]
                tmin, tmax = xf.amin(dim=red), xf.amax(dim=red)  # per token position
                for g in gid.unique().tolist():
                    m = gid == g
                    self.group_min[g] = torch.minimum(self.group_min[g], tmin[m].min())
                    self.group_max[g] = torch.maximum(self.group_max[g], tmax[m].max())
            return x
        if self.scale is None:
            raise RuntimeError("token-wise activation quantizer used before calibration (call observe/freeze)")
        shape = [1] * x.dim()
        shape[-2] = gid.numel()
        scale = self.scale[gid].reshape(shape)
        zero = None if self.zero is None else self.zero[gid].reshape(shape)
        return fake_quant(x.float(), scale, zero, self.spec).to(x.dtype)

    def freeze(self) -> None:
        seen = torch.isfinite(self.group_min) & torch.isfinite(self.group_max)
        if not bool(seen.any()):
            raise RuntimeError("token-wise activation quantizer froze before observing any input")
        # a group never seen in calibration borrows the widest observed range (safe, not tuned)
        lo = torch.where(seen, self.group_min, self.group_min[seen].min())
        hi = torch.where(seen, self.group_max, self.group_max[seen].max())
        self.observing = False
        self.position = 0
        scale, zero = choose_qparams(lo, hi, self.spec)
        self.set_qparams(scale.detach(), None if zero is None else zero.detach())

    def extra_repr(self) -> str:
        return f"{self.spec}, static per token group ({len(self.groups)} groups over {self.length} positions)"
