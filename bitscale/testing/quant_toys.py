"""Small ``GenerativeModel``s for tests and benchmarks of quantizers (no training, no data).

- ``ToyTransformer``: a pre-norm transformer (LayerNorm -> q/k/v -> attention -> proj;
  LayerNorm -> fc1 -> GELU -> fc2) over token ids, a "language"-style model. Optional outlier
  input channels make activation quantization hard, as in real transformers.
- ``LinearModel``: one ``nn.Linear`` whose calibration batches are correlated Gaussian inputs,
  for per-layer error comparisons (GPTQ vs RTN vs a reference implementation).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitscale.harness.contracts import GenerativeModel


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.norm1(x)
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (self.q(h), self.k(h), self.v(h)))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class _Net(nn.Module):
    def __init__(self, vocab: int, dim: int, depth: int, heads: int, mlp_ratio: int, seq: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.tok(tokens) + self.pos[: tokens.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class ToyTransformer(GenerativeModel):
    """A tiny random-weight transformer implementing the ``GenerativeModel`` contract."""

    style: ClassVar[Literal["language", "diffusion"]] = "language"
    unquantized: ClassVar[tuple[str, ...]] = ("head", "tok")

    def __init__(
        self,
        vocab: int = 64,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 4,
        seq: int = 16,
        outlier_channels: int = 0,
        outlier_scale: float = 20.0,
        seed: int = 0,
    ) -> None:
        torch.manual_seed(seed)
        self.module = _Net(vocab, dim, depth, heads, mlp_ratio, seq).eval()
        self.vocab, self.seq = vocab, seq
        self.dataset = "toy"
        self.num_classes = vocab
        self.sampler = {}
        if outlier_channels:
            # Real transformers have a few input channels with huge magnitude after the norms
            # (LLM.int8 / SmoothQuant); emulate them through the LayerNorm gains.
            g = torch.Generator().manual_seed(seed + 1)
            for blk in self.module.blocks:
                for norm in (blk.norm1, blk.norm2):
                    idx = torch.randperm(dim, generator=g)[:outlier_channels]
                    with torch.no_grad():
                        norm.weight[idx] *= outlier_scale

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Tensor]:
        return [torch.randint(0, self.vocab, (4, self.seq), generator=generator) for _ in range(n)]

    def forward_batch(self, batch: Tensor) -> Tensor:
        return self.module(batch.to(self.device))

    def sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        tokens = labels.view(-1, 1) % self.vocab
        with torch.no_grad():
            while tokens.shape[1] < self.seq:
                nxt = self.module(tokens)[:, -1].argmax(-1, keepdim=True)
                tokens = torch.cat([tokens, nxt], dim=1)
        side = int(math.isqrt(self.seq))
        img = (tokens[:, : side * side].float() / max(1, self.vocab - 1) * 255).to(torch.uint8)
        return img.view(-1, 1, side, side).expand(-1, 3, side, side).contiguous()


class LinearModel(GenerativeModel):
    """One ``nn.Linear`` fed correlated inputs ``x = z @ mix`` (plus a mean offset), for per-layer tests."""

    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        seq: int = 32,
        correlation_rank: int | None = None,
        outlier_channels: int = 0,
        outlier_scale: float = 30.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.module = nn.Sequential()
        lin = nn.Linear(in_features, out_features, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(out_features, in_features, generator=g) / math.sqrt(in_features))
            lin.bias.copy_(torch.randn(out_features, generator=g) * 0.1)
        self.module.append(lin)
        r = correlation_rank or max(1, in_features // 4)
        # Low-rank-plus-noise mixing gives strongly correlated channels, as real activations are.
        self.mix = torch.randn(r, in_features, generator=g) / math.sqrt(r)
        self.noise = 0.1
        self.mean = torch.randn(in_features, generator=g) * 0.2
        self.gain = torch.ones(in_features)
        if outlier_channels:
            self.gain[torch.randperm(in_features, generator=g)[:outlier_channels]] = outlier_scale
        self.seq, self.in_features, self.dtype = seq, in_features, dtype
        self.dataset, self.num_classes, self.sampler = "toy", 1, {}

    @property
    def linear(self) -> nn.Module:
        return self.module[0]

    def inputs(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` sequences of ``seq`` correlated input rows, shape ``(n, seq, in)``."""
        z = torch.randn(n, self.seq, self.mix.shape[0], generator=generator)
        e = torch.randn(n, self.seq, self.in_features, generator=generator) * self.noise
        return ((z @ self.mix + e + self.mean) * self.gain).to(self.dtype)

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Tensor]:
        return list(self.inputs(n, generator).unsqueeze(1))

    def forward_batch(self, batch: Tensor) -> Tensor:
        return self.module(batch)

    def sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        return torch.zeros(labels.shape[0], 3, 8, 8, dtype=torch.uint8)


class TokenGroupLinearModel(LinearModel):
    """``LinearModel`` whose input also has VAR's token structure, what PTQ4ARVG's STWQ targets.

    Positions follow VAR's scale levels (``patch_nums``: ``pn^2`` tokens per level, level 0 the
    single first token). Besides the outlier *channels* of ``LinearModel``, every row at a
    position is multiplied by a fixed per-position gain: ``sink_scale`` for the first ("sink")
    token, and per level a gain falling geometrically from ``level_gain[0]`` to ``level_gain[1]``
    (coarse levels larger). The gains are fixed across samples, as VAR's position-invariant
    token statistics. A synthetic assumption to exercise token-group quantization, not a
    measurement of VAR's activations. ``module.patch_nums`` tells ptq4arvg to use VAR's groups.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        patch_nums: tuple[int, ...] = (1, 2, 3, 4, 6, 8),
        sink_scale: float = 20.0,
        level_gain: tuple[float, float] = (4.0, 0.5),
        **kwargs,
    ) -> None:
        seq = sum(p * p for p in patch_nums)
        super().__init__(in_features, out_features, seq=seq, **kwargs)
        self.module.patch_nums = tuple(patch_nums)
        levels = len(patch_nums) - 1
        gains = [level_gain[0] * (level_gain[1] / level_gain[0]) ** (i / max(1, levels - 1)) for i in range(levels)]
        token_gain = [sink_scale] + [g for pn, g in zip(patch_nums[1:], gains) for _ in range(pn * pn)]
        self.token_gain = torch.tensor(token_gain)

    def inputs(self, n: int, generator: torch.Generator) -> Tensor:
        return (super().inputs(n, generator) * self.token_gain.unsqueeze(-1)).to(self.dtype)
