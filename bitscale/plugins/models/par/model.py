"""``PARModel``: a PAR GPT plus LlamaGen's VQ tokenizer behind the ``GenerativeModel`` contract.

Batches stay in raster order like every other token family (``{"tokens": (B, N), "labels": (B,)}``);
``forward_batch`` puts them in PAR's region order before the teacher-forced forward, so its
``(B, N, V)`` logits predict the PAR-ordered tokens, and generated tokens are put back in raster
order before decoding (as the official sampling script does).
"""

from __future__ import annotations

import torch

from bitscale.harness.contracts import GenerativeModel
from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.generators import device_generator
from bitscale.plugins.models.llamagen.model import SAMPLER_KEYS, LlamaGenModel
from bitscale.plugins.models.par.generate import generate
from bitscale.plugins.models.par.order import to_par_order, to_raster_order


class PARModel(LlamaGenModel):
    """Class-conditional PAR; the embeddings, stand-in tokens and head stay full precision like LlamaGen's."""

    unquantized = (*LlamaGenModel.unquantized, "spe_tok_embeddings", "spe_tok_embeddings.*")
    # LlamaGen's one-token-per-step phases do not describe PAR's parallel steps: no phases (yet) for ``bitscale analyze``.
    generation_phases = GenerativeModel.generation_phases

    def _order(self) -> tuple[int, int]:
        return self.module.config.grid, self.module.config.ar_token_num

    def forward_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits ``(B, N, V)`` (float32) for raster ``batch["tokens"]``, in PAR order."""
        tokens = to_par_order(batch["tokens"].to(self.device), *self._order())
        return self.module(tokens[:, :-1], batch["labels"].to(self.device))

    def generate_tokens(
        self, labels: torch.Tensor, generator: torch.Generator, use_cache: bool = True, noise: TokenNoise | None = None
    ) -> torch.Tensor:
        """Image tokens ``(B, N)`` in raster order, sampled with PAR's parallel decoding."""
        kwargs = {k: self.sampler[k] for k in SAMPLER_KEYS if k in self.sampler}
        gen = device_generator(generator, self.device)
        seq = generate(self.module, labels.to(self.device), generator=gen, use_cache=use_cache, noise=noise, **kwargs)
        return to_raster_order(seq, *self._order())
