"""LlamaGen's raster-order generation as explicit steps: the loop behind ``generate`` (KV-cached) and
``bitscale analyze``.

Step ``i`` is image token ``i``. **extract** runs the GPT on the class token (``i = 0``) or the
previous token and returns the guided logits ``(B, V)``; **reconstruct** draws a token
(temperature, top-k, top-p, multinomial from the generator) and looks it up in the tokenizer's
codebook, ``(B, 1, D)``; **advance** takes the codebook entry nearest to a reconstruction as
token ``i``. The representation space is the codebook: discrete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from bitscale.harness.noise import TokenNoise
from bitscale.harness.phases import GenerationPhases
from bitscale.plugins.models.llamagen.gpt import GPT
from bitscale.plugins.models.llamagen.sampling import guide, sample_logits


class LlamaGenSteps(GenerationPhases):
    """One KV-cached generation of ``model.config.block_size`` tokens for ``labels``.

    Guidance (when ``cfg > 1``) doubles the batch into ``[cond; null]``: ``uncond + (cond - uncond) * cfg``.
    ``codebook`` (``(V, D)``) and ``decode`` (tokens to uint8 images) are needed only by ``reconstruct``
    and ``images``; ``generate`` drives the steps with ``draw`` and ``put`` instead.
    """

    space: Literal["discrete", "continuous"] = "discrete"

    def __init__(
        self,
        model: GPT,
        labels: torch.Tensor,
        cfg: float = 1.0,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        codebook: torch.Tensor | None = None,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        noise: TokenNoise | None = None,
    ) -> None:
        self.model, self.generator, self.codebook, self._decode = model, generator, codebook, decode
        self.noise, self._step = noise, 0  # coupled noise: token ``step`` draws at position ``step``
        self.cfg, self.temperature, self.top_k, self.top_p = cfg, temperature, top_k, top_p
        self.num_steps = model.config.block_size
        self.guided = cfg > 1.0
        self.cond = torch.cat([labels, torch.full_like(labels, model.num_classes)]) if self.guided else labels
        self.seq = torch.empty(labels.shape[0], self.num_steps, dtype=torch.long, device=labels.device)
        self.t0 = model.cls_token_num
        model.setup_caches(self.cond.shape[0], self.t0 + self.num_steps)

    def extract(self, step: int) -> torch.Tensor:
        self._step = step
        dev = self.seq.device
        if step == 0:
            logits = self.model.decode_step(torch.arange(self.t0, device=dev), labels=self.cond)
        else:
            prev = self.seq[:, step - 1 : step]
            pos = torch.tensor([self.t0 + step - 1], device=dev)
            logits = self.model.decode_step(pos, tokens=prev.repeat(2, 1) if self.guided else prev)
        return guide(logits[:, -1], self.cfg, self.guided)

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """One token per row ``(B, 1)`` drawn from guided ``logits`` ``(B, V)`` (of the last ``extract``ed step)."""
        return sample_logits(logits, self.temperature, self.top_k, self.top_p, self.generator, self.noise, self._step)

    def put(self, step: int, token: torch.Tensor) -> None:
        """Make ``token`` ``(B, 1)`` image token ``step``."""
        self.seq[:, step : step + 1] = token

    def reconstruct(self, step: int, features: torch.Tensor) -> torch.Tensor:
        return self._codes()[self.draw(features)]

    def advance(self, step: int, reconstruction: torch.Tensor) -> None:
        # The nearest code (exact for a codebook entry): another model's reconstruction becomes a token here.
        dist = torch.cdist(reconstruction.reshape(-1, reconstruction.shape[-1]), self._codes())
        self.put(step, dist.argmin(dim=1).view(-1, 1))

    def output(self) -> torch.Tensor:
        return self._codes()[self.seq]

    def images(self) -> torch.Tensor:
        if self._decode is None:
            raise RuntimeError("this LlamaGen generation has no tokenizer to decode with")
        return self._decode(self.seq)

    def close(self) -> None:
        self.model.clear_caches()

    def _codes(self) -> torch.Tensor:
        if self.codebook is None:
            raise RuntimeError("this LlamaGen generation has no codebook (built without a tokenizer)")
        return self.codebook
