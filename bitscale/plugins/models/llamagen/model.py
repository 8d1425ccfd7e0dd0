"""``LlamaGenModel``: a LlamaGen GPT plus its VQ tokenizer behind the ``GenerativeModel`` contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from bitscale.data.digits import to_uint8
from bitscale.harness.contracts import GenerativeModel
from bitscale.harness.noise import COUPLING, TokenNoise
from bitscale.plugins.models.generators import device_generator, random_indices
from bitscale.plugins.models.llamagen.generate import generate
from bitscale.plugins.models.llamagen.gpt import GPT
from bitscale.plugins.models.llamagen.steps import LlamaGenSteps
from bitscale.plugins.models.llamagen.vq import VQModel

#: Returns every calibration sequence: (tokens ``(N, L)`` int64, labels ``(N,)`` int64), on CPU.
TokenSource = Callable[[], tuple[torch.Tensor, torch.Tensor]]

#: Sampler keys that ``generate`` takes.
SAMPLER_KEYS = ("cfg", "temperature", "top_k", "top_p")


class LlamaGenModel(GenerativeModel):
    """Class-conditional raster-order AR model: ``module`` is the GPT; the tokenizer stays full precision.

    Batches are dicts ``{"tokens": (B, L) int64, "labels": (B,) int64}``; ``forward_batch`` returns
    teacher-forced logits ``(B, L, V)`` (position ``i`` predicts token ``i`` from the class token
    and tokens ``< i``).
    """

    style: ClassVar[Literal["language", "diffusion"]] = "language"
    unquantized: ClassVar[tuple[str, ...]] = ("output", "tok_embeddings", "cls_embedding", "cls_embedding.*")
    coupling: ClassVar[str] = COUPLING
    # LlamaGen's SwiGLU has two input projections, w1 (gate) and w3; w1 stands for the paper's fc1.
    activation_layers: ClassVar[dict[str, str]] = {
        "fc1": "layers.{block}.feed_forward.w1",
        "qkv": "layers.{block}.attention.wqkv",
        "fc2": "layers.{block}.feed_forward.w2",
    }

    def __init__(
        self,
        gpt: GPT,
        tokenizer: VQModel,
        dataset: str,
        sampler: dict[str, Any],
        calibration_tokens: TokenSource | None = None,
        batch_size: int = 32,
        output_size: int | None = None,
    ) -> None:
        self.module = gpt
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.num_classes = gpt.num_classes
        self.sampler = dict(sampler)
        self.batch_size = batch_size
        self.output_size = output_size
        self._token_source = calibration_tokens
        self._pool: tuple[torch.Tensor, torch.Tensor] | None = None

    def num_params(self) -> int:
        """Parameters of the GPT only (tokenizer excluded, as in the paper's bit budgets)."""
        return sum(p.numel() for p in self.module.parameters())

    # ------------------------------------------------------------------ calibration

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """``n`` batches of ``batch_size`` token sequences (CPU tensors).

        With a token source (the tiny zoo: train-split digits through the tokenizer) sequences are
        drawn from it; without one (released models: ImageNet is not shipped) they are generated
        by the model itself with its sampler and random labels.
        """
        if self._token_source is None:
            return [self._generated_batch(generator) for _ in range(n)]
        if self._pool is None:
            self._pool = self._token_source()
        tokens, labels = self._pool
        batches = []
        for _ in range(n):
            idx = random_indices(len(tokens), self.batch_size, generator)
            batches.append({"tokens": tokens[idx], "labels": labels[idx]})
        return batches

    def _generated_batch(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        labels = random_indices(self.num_classes, self.batch_size, generator).to(self.device)
        return {"tokens": self.generate_tokens(labels, generator).cpu(), "labels": labels.cpu()}

    # ------------------------------------------------------------------ contract

    def forward_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits ``(B, L, V)`` (float32) for ``batch["tokens"]`` ``(B, L)``."""
        tokens = batch["tokens"].to(self.device)
        labels = batch["labels"].to(self.device)
        return self.module(tokens[:, :-1], labels)

    def generate_tokens(
        self, labels: torch.Tensor, generator: torch.Generator, use_cache: bool = True, noise: TokenNoise | None = None
    ) -> torch.Tensor:
        """Image tokens ``(B, L)`` for ``labels`` with this model's sampler settings (from ``noise`` when given)."""
        kwargs = {k: self.sampler[k] for k in SAMPLER_KEYS if k in self.sampler}
        gen = device_generator(generator, self.device)
        return generate(self.module, labels.to(self.device), generator=gen, use_cache=use_cache, noise=noise, **kwargs)

    def generation_phases(
        self, labels: torch.Tensor, generator: torch.Generator, noise: TokenNoise | None = None
    ) -> LlamaGenSteps:
        """Token-by-token generation with this model's sampler (``sample`` draws the same tokens)."""
        kwargs = {k: self.sampler[k] for k in SAMPLER_KEYS if k in self.sampler}
        return LlamaGenSteps(
            self.module,
            labels.to(self.device),
            generator=device_generator(generator, self.device),
            codebook=self.tokenizer.quantize.codebook().detach(),
            decode=self._decode,
            noise=noise,
            **kwargs,
        )

    def _decode(self, tokens: torch.Tensor) -> torch.Tensor:
        images = self.tokenizer.decode_code(tokens)
        if self.output_size is not None and images.shape[-1] != self.output_size:
            # The official FID protocol samples at 384px and resizes bicubically to 256px.
            images = F.interpolate(images, size=(self.output_size, self.output_size), mode="bicubic")
        return to_uint8(images).cpu()

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator, noise: TokenNoise | None = None) -> torch.Tensor:
        """One image per label: ``uint8`` ``(B, 3, H, W)`` on CPU; tokens from the coupled ``noise`` when given."""
        return self._decode(self.generate_tokens(labels, generator, noise=noise))
