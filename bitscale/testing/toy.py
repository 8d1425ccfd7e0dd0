"""The toy models of bitscale's tests, benchmarks and plugin kit: random weights, no training, no data.

- ``ToyModel``: the one toy ``GenerativeModel``, a real (tiny) class-conditional causal transformer
  over a square grid of tokens whose tokens map to 4x4-pixel patches, so quantizers see real
  attention/MLP Linears (pre-norm LayerNorm -> q/k/v -> attention -> proj; LayerNorm -> fc1 -> GELU
  -> fc2) and ``sample`` returns real images. Optional outlier input channels make activation
  quantization hard, as in real transformers.
- ``ToyFamily``: ``ToyModel`` as a model family (sizes ``d1``, ``d2``, ``d4``: the depth), for grids.
- ``LinearModel``: one ``nn.Linear`` fed correlated Gaussian inputs, for per-layer error comparisons
  (GPTQ vs RTN vs a reference implementation); not a transformer, so not a second toy of the same kind.
  ``TokenGroupLinearModel`` adds VAR's per-position token gains to its inputs (PTQ4ARVG's STWQ).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitscale import GenerativeModel, ModelFamily, PluginOptions

#: Pixels per token side: a token is drawn as a PATCH x PATCH grey patch.
PATCH = 4


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_ratio * dim), nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.norm1(x)
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (self.q(h), self.k(h), self.v(h)))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ToyNet(nn.Module):
    """Class token, then the grid's tokens; logits for every position, teacher-forced."""

    def __init__(
        self, vocab: int, dim: int, depth: int, heads: int, mlp_ratio: int, seq: int, num_classes: int
    ) -> None:
        super().__init__()
        self.cls = nn.Embedding(num_classes, dim)
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, labels: Tensor, tokens: Tensor) -> Tensor:
        """Logits ``(B, n, vocab)`` for the first ``n`` positions given ``tokens[:, :n-1]`` (``n = tokens.shape[1]``)."""
        n = tokens.shape[1]
        x = torch.cat([self.cls(labels)[:, None], self.tok(tokens[:, : n - 1])], 1) + self.pos[:, :n]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class ToyModel(GenerativeModel):
    """A tiny random-weight class-conditional transformer implementing the ``GenerativeModel`` contract.

    Calibration batches are ``(labels, tokens)`` pairs of ``batch`` random sequences of ``seq`` tokens
    (a square number to ``sample`` images: the token grid). Weights depend on ``seed`` alone (the global RNG is left as it was).
    """

    style: ClassVar = "language"
    unquantized: ClassVar = ("head",)

    def __init__(
        self,
        depth: int = 2,
        *,
        dim: int = 64,
        heads: int = 4,
        mlp_ratio: int = 4,
        vocab: int = 32,
        seq: int = 16,
        num_classes: int = 10,
        batch: int = 8,
        outlier_channels: int = 0,
        outlier_scale: float = 20.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = ToyNet(vocab, dim, depth, heads, mlp_ratio, seq, num_classes).eval()
        g = torch.Generator().manual_seed(seed + 1)
        if outlier_channels:
            # Real transformers have a few input channels with huge magnitude after the norms
            # (LLM.int8 / SmoothQuant); emulate them through the LayerNorm gains.
            for blk in self.module.blocks:
                for norm in (blk.norm1, blk.norm2):
                    idx = torch.randperm(dim, generator=g)[:outlier_channels]
                    with torch.no_grad():
                        norm.weight[idx] *= outlier_scale
        self.module.to(device)
        self.patterns = (torch.rand(vocab, PATCH, PATCH, generator=g) * 2 - 1).to(device)
        self.vocab, self.seq, self.batch = vocab, seq, batch
        self.dataset, self.num_classes = "digits16", num_classes
        self.sampler = {"temperature": 1.0}

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Any]:
        return [
            (
                torch.randint(0, self.num_classes, (self.batch,), generator=generator),
                torch.randint(0, self.vocab, (self.batch, self.seq), generator=generator),
            )
            for _ in range(n)
        ]

    def forward_batch(self, batch: Any) -> Tensor:
        labels, tokens = batch
        return self.module(labels.to(self.device), tokens.to(self.device))

    def sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        b = len(labels)
        tokens = torch.zeros(b, self.seq, dtype=torch.long, device=labels.device)
        for i in range(self.seq):  # no KV cache: the toy favours simplicity over speed
            probs = self.module(labels, tokens[:, : i + 1])[:, i].float().softmax(-1)
            # draw where the generator lives: the harness passes one on the model's device
            draw = torch.multinomial(probs.to(generator.device), 1, generator=generator)
            tokens[:, i] = draw.squeeze(1).to(labels.device)
        s = math.isqrt(self.seq)
        if s * s != self.seq:
            raise ValueError(f"ToyModel draws images of a square grid of tokens; seq={self.seq} is not a square")
        img = self.patterns[tokens].view(b, s, s, PATCH, PATCH).permute(0, 1, 3, 2, 4)
        img = img.reshape(b, 1, s * PATCH, s * PATCH).expand(-1, 3, -1, -1)
        return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ToyOptions(PluginOptions):
    seed: int = 0


class ToyFamily(ModelFamily):
    """A family of toy transformers (random weights) for tests and plugin authors."""

    name: ClassVar = "toy"
    sizes: ClassVar = ("d1", "d2", "d4")
    style: ClassVar = "language"
    Options: ClassVar = ToyOptions
    description: ClassVar = "toy transformers with random weights (tests only)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> GenerativeModel:
        return ToyModel(depth=int(size[1:]), seed=options.seed, device=device)  # on "meta": parameter counts


class LinearModel(GenerativeModel):
    """One ``nn.Linear`` fed correlated inputs ``x = z @ mix`` (plus a mean offset), for per-layer tests."""

    style: ClassVar = "diffusion"

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
