"""``VarModel``: a VAR transformer plus its tokenizer, seen through the harness's ``GenerativeModel``.

``module`` is the transformer only: quantizers edit it and the bit budget counts it. The VQ-VAE
stays in full precision beside it (as in the paper) and is moved to the transformer's device
when needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from bitscale.data.digits import to_uint8
from bitscale.harness.contracts import GenerativeModel
from bitscale.harness.errors import BitscaleError
from bitscale.harness.noise import COUPLING, TokenNoise
from bitscale.plugins.models.var.generation import VarSteps
from bitscale.plugins.models.var.transformer import VAR
from bitscale.plugins.models.var.vqvae import VQVAE

#: Draws ``n`` real training images ``(n, 3, H, W)`` in [-1, 1] and their labels, using ``generator``.
ImageSource = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class VarBatch(NamedTuple):
    """One teacher-forcing batch: what ``forward_batch`` takes."""

    labels: torch.Tensor  # (B,) int64 class labels
    x_BLCv: torch.Tensor  # (B, L - first_l, Cvae) f_hat of earlier scales, resized to each next scale
    target: torch.Tensor  # (B, L) int64 token ids the logits should predict


class VarModel(GenerativeModel):
    """A class-conditional VAR generator (tiny digits zoo or released ImageNet checkpoints)."""

    style = "language"
    # fnmatch patterns on module names: the output head, its AdaLN and the token embedding
    # stay in full precision (the paper quantizes the transformer blocks).
    unquantized = ("head", "head_nm.*", "word_embed")
    coupling = COUPLING
    activation_layers = {
        "fc1": "blocks.{block}.ffn.fc1",
        "qkv": "blocks.{block}.attn.mat_qkv",
        "fc2": "blocks.{block}.ffn.fc2",
    }

    def __init__(
        self,
        transformer: VAR,
        vae: VQVAE,
        dataset: str,
        sampler: dict[str, Any],
        images: ImageSource | None,
        calibration_batch_size: int = 32,
        no_images_hint: str = "give the family a folder of real training images",
    ) -> None:
        self.module = transformer.eval()
        self.vae = vae.eval().requires_grad_(False)
        self.dataset = dataset
        self.num_classes = transformer.num_classes
        self.sampler = dict(sampler)
        self._images = images
        self.calibration_batch_size = calibration_batch_size
        self._no_images_hint = no_images_hint

    def _vae(self) -> VQVAE:
        dev = self.device
        if next(self.vae.parameters()).device != dev:
            self.vae.to(dev)
        return self.vae

    @torch.no_grad()
    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> VarBatch:
        """Tokenize real images into a teacher-forcing batch on the model's device."""
        vae = self._vae()
        idx = vae.img_to_idx(images.to(self.device, torch.float32))
        return VarBatch(labels.to(self.device), vae.quantize.idx_to_var_input(idx), torch.cat(idx, dim=1))

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[VarBatch]:
        """``n`` batches of ``calibration_batch_size`` random real training images, tokenized."""
        if self._images is None:
            raise BitscaleError(f"no calibration images for this VAR model ({self.dataset}): {self._no_images_hint}")
        out = []
        for _ in range(n):
            images, labels = self._images(self.calibration_batch_size, generator)
            out.append(self.encode(images, labels))
        return out

    def forward_batch(self, batch: VarBatch) -> torch.Tensor:
        """Teacher-forced logits ``(B, L, V)``; label dropout is always off here."""
        dev = self.device
        return self.module(batch.labels.to(dev), batch.x_BLCv.to(dev), cond_drop_rate=0.0)

    @torch.no_grad()
    def sample_tokens(
        self,
        labels: torch.Tensor,
        generator: torch.Generator,
        use_kv_cache: bool = True,
        noise: TokenNoise | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(f_hat, tokens per scale)`` drawn with this model's sampler settings."""
        s = self.sampler
        return self.module.autoregressive_infer_cfg(
            labels.to(self.device),
            self._vae().quantize,
            generator,
            cfg=float(s.get("cfg", 0.0)),
            top_k=int(s.get("top_k", 0)),
            top_p=float(s.get("top_p", 0.0)),
            use_kv_cache=use_kv_cache,
            noise=noise,
        )

    def generation_phases(
        self, labels: torch.Tensor, generator: torch.Generator, noise: TokenNoise | None = None
    ) -> VarSteps:
        """Scale-by-scale generation with this model's sampler (``sample`` runs the same steps)."""
        s = self.sampler
        return VarSteps(
            self.module,
            labels.to(self.device),
            self._vae().quantize,
            generator,
            cfg=float(s.get("cfg", 0.0)),
            top_k=int(s.get("top_k", 0)),
            top_p=float(s.get("top_p", 0.0)),
            decode=lambda f_hat: to_uint8(self._vae().fhat_to_img(f_hat.float())).cpu(),
            noise=noise,
        )

    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        generator: torch.Generator,
        use_kv_cache: bool = True,
        noise: TokenNoise | None = None,
    ) -> torch.Tensor:
        """One image per label, ``uint8 (B, 3, H, W)`` on the CPU; ``use_kv_cache`` does not change the result.
        With ``noise`` (the harness passes it: ``coupling``) every token is drawn from it, not from ``generator``."""
        f_hat, _ = self.sample_tokens(labels, generator, use_kv_cache=use_kv_cache, noise=noise)
        return to_uint8(self._vae().fhat_to_img(f_hat.float())).cpu()
