"""A synthetic model with known generation phases, to test analyses and show what they should find.

The state is a vector per sample; each step's features are a fixed linear map of it (one
``nn.Linear``, the "network"); the reconstruction is either the features themselves
(``continuous``: the final output moves linearly with injected noise, so the loss grows in
proportion to the noise power) or the nearest of a fixed set of codebook vectors (``discrete``:
small noise is absorbed, larger noise flips a code: the loss is a step function of the noise).
The output is every step's reconstruction. ``SyntheticFamily`` registers both as sizes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from bitscale.harness.contracts import GenerativeModel, ModelFamily, PluginOptions
from bitscale.harness.phases import GenerationPhases

DIM, CODES, STEPS = 8, 32, 10


class _Net(nn.Module):
    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.ModuleDict({"fc1": nn.Linear(DIM, DIM)})])
        q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=generator))
        with torch.no_grad():  # a rotation: the state neither explodes nor vanishes over the steps
            self.blocks[0]["fc1"].weight.copy_(q)
            self.blocks[0]["fc1"].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0]["fc1"](x)


class _Steps(GenerationPhases):
    def __init__(self, model: SyntheticModel, labels: torch.Tensor, generator: torch.Generator) -> None:
        self.model, self.num_steps = model, STEPS
        self.space = "discrete" if model.discrete else "continuous"
        self.state = torch.randn(len(labels), DIM, generator=generator)
        if model.discrete:
            self.state = model.codebook[self._nearest(self.state)]
        self.recs: list[torch.Tensor] = []

    def _nearest(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, self.model.codebook).argmin(dim=1)

    def extract(self, step: int) -> torch.Tensor:
        return self.model.module(self.state)

    def reconstruct(self, step: int, features: torch.Tensor) -> torch.Tensor:
        return self.model.codebook[self._nearest(features)] if self.model.discrete else features

    def advance(self, step: int, reconstruction: torch.Tensor) -> None:
        self.state = reconstruction
        self.recs.append(reconstruction)

    def output(self) -> torch.Tensor:
        return torch.stack(self.recs, dim=1)

    def images(self) -> torch.Tensor:
        out = self.output()[:, -1, :]  # a 1x8 grey strip per sample, enough for the contract
        return ((out.tanh() + 1) * 127.5).round().to(torch.uint8).view(-1, 1, 1, DIM).expand(-1, 3, 1, DIM).contiguous()


class SyntheticModel(GenerativeModel):
    """``discrete=True``: codebook reconstruction (language-style); False: identity (diffusion-style)."""

    unquantized: ClassVar[tuple[str, ...]] = ()
    activation_layers: ClassVar[dict[str, str]] = {"fc1": "blocks.{block}.fc1"}

    def __init__(self, discrete: bool, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.discrete = discrete
        self.style: Literal["language", "diffusion"] = "language" if discrete else "diffusion"
        self.module = _Net(g).eval()
        codes = torch.randn(CODES, DIM, generator=g)
        self.codebook = codes / codes.norm(dim=1, keepdim=True) * math.sqrt(DIM)
        self.dataset, self.num_classes, self.sampler = "synthetic", 10, {}

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Any]:
        return [torch.randn(16, DIM, generator=generator) for _ in range(n)]

    def forward_batch(self, batch: Any) -> torch.Tensor:
        return self.module(batch.to(self.device))

    def generation_phases(self, labels: torch.Tensor, generator: torch.Generator) -> GenerationPhases:
        return _Steps(self, labels, generator)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        g = self.generation_phases(labels, generator)
        for s in range(g.num_steps):
            g.advance(s, g.reconstruct(s, g.extract(s)))
        return g.images()


class SyntheticFamily(ModelFamily):
    """Sizes ``discrete`` and ``continuous`` of the synthetic phases model (tests only)."""

    name: ClassVar[str] = "synthetic-phases"
    sizes: ClassVar[tuple[str, ...]] = ("discrete", "continuous")
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    description: ClassVar[str] = "synthetic model with known discrete/continuous reconstruction (tests only)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> GenerativeModel:
        return SyntheticModel(discrete=size == "discrete")
