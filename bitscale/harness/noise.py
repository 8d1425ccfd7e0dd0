"""Coupled token noise: one Gumbel variate per (cell seed, sample index, token position, vocabulary entry).

A token model that draws ``argmax(logits + g)`` with these ``g`` samples exactly its softmax
distribution (the Gumbel-max trick), and two models that draw with the same ``g`` -- a quantized
model and its W16A16 twin -- pick the same token wherever their distributions nearly agree:
their samples are *coupled*, so a paired comparison measures the quantization, not the dice.

The noise is a pure function of the four integers (a counter-based hash, not a generator stream),
so it does not depend on batch size, chunking, sharding, thread count or device. The hash is
Chris Wellons' ``lowbias32`` integer mix applied in 64-bit integer arithmetic, with each 32x32-bit
product split in 16-bit halves so no intermediate overflows: the same bits on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_M32 = 0xFFFFFFFF
#: What a model's ``coupling`` says when it draws its tokens from ``TokenNoise``.
COUPLING = "gumbel(seed,sample,position)"


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without 64-bit overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (lowbias32) of int64 tensors holding values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_keys(seed: int, indices: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per sample: a hash of (cell seed, global sample index within the cell)."""
    if seed < 0 or seed >= 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    h = mix32(torch.tensor(seed & _M32, dtype=torch.int64))
    h = mix32(h ^ ((seed >> 32) & _M32))
    return mix32(h ^ (indices.to(torch.int64) & _M32))


@dataclass(frozen=True)
class TokenNoise:
    """The Gumbel noise of a batch of samples, addressed by token position and vocabulary entry."""

    keys: torch.Tensor  # (B,) int64, from ``sample_keys``

    def __len__(self) -> int:
        return len(self.keys)

    def uniforms(self, positions: torch.Tensor, vocab: int, device: torch.device | str) -> torch.Tensor:
        """float64 ``(B, l, V)`` uniforms in (0, 1) for token ``positions`` ``(l,)`` of every sample."""
        keys = self.keys.to(device)[:, None, None]
        pos = positions.to(device, torch.int64)[None, :, None]
        h = mix32(mix32(keys ^ pos) ^ 0x5BD1E995)  # the constant separates the two mixing stages
        h = mix32(h ^ torch.arange(vocab, device=device, dtype=torch.int64)[None, None, :])
        return (h.to(torch.float64) + 0.5) / 2.0**32

    def gumbel(self, positions: torch.Tensor, vocab: int, device: torch.device | str) -> torch.Tensor:
        """float64 standard Gumbel variates ``(B, l, V)``."""
        return -torch.log(-torch.log(self.uniforms(positions, vocab, device)))

    def draw(self, logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per ``(sample, position)`` from ``logits`` ``(B, l, V)`` (already filtered: ``-inf`` =
        excluded, and tempered): ``argmax(logits + g)``, distributed as ``softmax(logits)``. Returns ``(B, l)``."""
        B, l, V = logits.shape
        if B != len(self.keys) or l != len(positions):
            raise ValueError(
                f"noise for {len(self.keys)} samples x {len(positions)} positions, logits {tuple(logits.shape)}"
            )
        g = self.gumbel(positions, V, logits.device)
        return (logits.to(torch.float64) + g).argmax(dim=-1)
