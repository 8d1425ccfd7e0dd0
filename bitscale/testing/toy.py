"""A toy language-style model implementing the contract with random weights: fast, no training.

It is a real (tiny) causal transformer over a 4x4 token grid whose tokens map to 4x4-pixel
patches, so quantizers see real attention/MLP Linears and ``sample`` returns real images.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bitscale.harness.contracts import GenerativeModel, ModelFamily, PluginOptions

GRID, PATCH, VOCAB = 4, 4, 32


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ToyTransformer(nn.Module):
    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.cls = nn.Embedding(num_classes, dim)
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Parameter(torch.randn(1, GRID * GRID, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, labels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for every position of the grid: (B, GRID*GRID, VOCAB)."""
        x = torch.cat([self.cls(labels)[:, None], self.tok(tokens[:, :-1])], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class ToyModel(GenerativeModel):
    style: ClassVar = "language"
    unquantized: ClassVar = ("head",)

    def __init__(self, depth: int = 2, seed: int = 0, device: torch.device | str = "cpu") -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.module = ToyTransformer(depth=depth).to(device)
        self.patterns = (torch.rand(VOCAB, PATCH, PATCH, generator=g) * 2 - 1).to(device)
        self.dataset, self.num_classes = "digits16", 10
        self.sampler = {"temperature": 1.0}

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Any]:
        return [(torch.randint(0, 10, (8,), generator=generator),
                 torch.randint(0, VOCAB, (8, GRID * GRID), generator=generator)) for _ in range(n)]

    def forward_batch(self, batch: Any) -> torch.Tensor:
        labels, tokens = batch
        return self.module(labels.to(self.device), tokens.to(self.device))

    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = len(labels)
        tokens = torch.zeros(b, GRID * GRID, dtype=torch.long, device=labels.device)
        for i in range(GRID * GRID):  # no KV cache: the toy favours simplicity over speed
            probs = self.module(labels, tokens)[:, i].float().softmax(-1)
            # draw where the generator lives: the harness passes one on the model's device
            draw = torch.multinomial(probs.to(generator.device), 1, generator=generator)
            tokens[:, i] = draw.squeeze(1).to(labels.device)
        img = self.patterns[tokens].view(b, GRID, GRID, PATCH, PATCH).permute(0, 1, 3, 2, 4)
        img = img.reshape(b, 1, GRID * PATCH, GRID * PATCH).expand(-1, 3, -1, -1)
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
        return ToyModel(depth=int(size[1:]), seed=options.seed, device=device)

    def num_params(self, size: str, options: PluginOptions) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in ToyTransformer(depth=int(size[1:])).parameters())
