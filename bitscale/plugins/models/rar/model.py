"""``RARModel``: a RAR generator plus its VQ tokenizer behind the ``GenerativeModel`` contract.

Calibration, teacher-forced logits and sampling work as for LlamaGen (``LlamaGenModel``): batches
are ``{"tokens": (B, N), "labels": (B,)}`` in raster order and ``forward_batch`` gives the
``(B, N, V)`` logits that predict each token from the class and the tokens before it. Only the
sampler differs (RAR's guidance schedule).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bitscale.harness.contracts import GenerativeModel
from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.generators import device_generator
from bitscale.plugins.models.llamagen.model import LlamaGenModel
from bitscale.plugins.models.rar.generate import generate

#: Sampler keys that ``generate`` takes.
SAMPLER_KEYS = ("guidance", "guidance_pow", "temperature", "top_k", "top_p")


class RARModel(LlamaGenModel):
    """Class-conditional RAR: ``module`` is the generator; the tokenizer stays full precision.

    The embedding table, the position tables, the final adaLN layer and the head stay full
    precision (as LlamaGen's embeddings/head and DiT's final layer); every block linear,
    adaLN modulations included, is quantized.
    """

    unquantized: ClassVar[tuple[str, ...]] = ("lm_head", "adaln_before_head.*", "embeddings")
    activation_layers: ClassVar[dict[str, str]] = {
        "fc1": "blocks.{block}.mlp.fc1",
        "qkv": "blocks.{block}.attn.qkv",
        "fc2": "blocks.{block}.mlp.fc2",
    }
    # LlamaGen's step-by-step generation does not apply to RAR's sampler: no phases (yet) for ``bitscale analyze``.
    generation_phases = GenerativeModel.generation_phases

    def generate_tokens(
        self, labels: torch.Tensor, generator: torch.Generator, use_cache: bool = True, noise: TokenNoise | None = None
    ) -> torch.Tensor:
        kwargs = {k: self.sampler[k] for k in SAMPLER_KEYS if k in self.sampler}
        gen = device_generator(generator, self.device)
        return generate(self.module, labels.to(self.device), generator=gen, use_cache=use_cache, noise=noise, **kwargs)
