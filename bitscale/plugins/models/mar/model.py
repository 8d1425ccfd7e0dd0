"""``MARModel``: a MAR plus its autoencoder and sampler behind the ``GenerativeModel`` contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch

from bitscale.data.digits import to_uint8
from bitscale.harness.contracts import GenerativeModel
from bitscale.plugins.models.generators import device_generator, random_indices
from bitscale.plugins.models.mar.diffusion import HeadDiffusion
from bitscale.plugins.models.mar.mar import MAR
from bitscale.plugins.models.mar.sampling import random_orders, sample_tokens
from bitscale.plugins.models.mar.training import masked_count

#: Clean scaled latents ``(N, C, h, w)`` and labels ``(N,)`` to calibrate on, on CPU.
LatentSource = Callable[[], tuple[torch.Tensor, torch.Tensor]]
#: Scaled latents ``(B, C, h, w)`` to images in about [-1, 1].
Decoder = Callable[[torch.Tensor], torch.Tensor]


class MARModel(GenerativeModel):
    """Class-conditional masked autoregression over continuous tokens; the autoencoder stays full precision.

    ``style`` is ``"diffusion"`` because what the model outputs, and what distillation compares,
    is predicted noise (a regression target), not token logits: MAR is autoregressive in its
    order of generation but continuous in its tokens, like DiT.

    Batches are dicts ``{"tokens": (B, L, C) clean tokens, "mask": (B, L) 1 = unknown,
    "labels": (B,), "t": (B, L) head timesteps, "noise": (B, L, C)}``: a training-time view (a
    random share of 70-100% of the tokens masked, as in training). ``forward_batch`` runs encoder,
    decoder and the diffusion head and returns the head's predicted noise at the unknown
    positions, ``(B * masked, C)``.

    ``sampler``: ``{"num_iter", "cfg", "cfg_schedule", "temperature", "sampling_steps", "clip_x0"}``.
    """

    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"
    #: Embeddings and the head's output layer stay full precision (as DiT's embedders and final layer).
    unquantized: ClassVar[tuple[str, ...]] = (
        "z_proj",
        "diffloss.net.time_embed.*",
        "diffloss.net.input_proj",
        "diffloss.net.final_layer.*",
    )

    def __init__(
        self,
        mar: MAR,
        decode: Decoder,
        dataset: str,
        sampler: dict[str, Any],
        calibration_latents: LatentSource | None = None,
        batch_size: int = 32,
        vae: torch.nn.Module | None = None,
        latent_scale: float | None = None,
    ) -> None:
        self.module = mar
        self.decode = decode
        self.vae, self.latent_scale = vae, latent_scale  # the autoencoder, for codec measurements
        self.dataset = dataset
        self.num_classes = mar.num_classes
        self.sampler = dict(sampler)
        self.batch_size = batch_size
        self._latent_source = calibration_latents
        self._pool: tuple[torch.Tensor, torch.Tensor] | None = None
        self._train_process = HeadDiffusion()

    def num_params(self) -> int:
        """Every MAR parameter, the diffusion head included (autoencoder excluded), as the papers count."""
        return sum(p.numel() for p in self.module.parameters())

    # ------------------------------------------------------------------ calibration

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """``n`` training-time views of clean latents (CPU tensors).

        Latents come from the latent source (the tiny zoo: train-split digits through the
        autoencoder) or, without one (released models: ImageNet is not shipped), from the model's
        own fast samples (16 iterations, 25 head steps, no guidance).
        """
        if self._pool is None and self._latent_source is not None:
            self._pool = self._latent_source()
        cfg, seq, b = self.module.config, self.module.seq_len, self.batch_size
        batches = []
        for _ in range(n):
            if self._pool is not None:
                latents, labels = self._pool
                idx = random_indices(len(latents), b, generator)
                x0, y = latents[idx], labels[idx]
            else:
                y = random_indices(self.num_classes, b, generator)
                fast = {"num_iter": min(16, seq), "sampling_steps": 25, "cfg": 1.0}
                x0 = self.sample_latents(y, generator, fast).cpu()
            tokens = self.module.patchify(x0)
            orders = random_orders(b, seq, generator)
            k = masked_count(seq, cfg.mask_ratio_min, generator)
            mask = torch.zeros(b, seq).scatter(1, orders[:, :k], 1.0)
            t = random_indices(self._train_process.num_timesteps, b * seq, generator).view(b, seq)
            noise = torch.randn(tokens.shape, generator=generator, device=generator.device).cpu()
            batches.append({"tokens": tokens, "mask": mask, "labels": y, "t": t, "noise": noise})
        return batches

    # ------------------------------------------------------------------ contract

    def forward_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted noise of the diffusion head at the unknown positions, ``(B * masked, C)``."""
        dev = self.device
        tokens, mask = batch["tokens"].to(dev), batch["mask"].to(dev)
        z = self.module(tokens, mask, batch["labels"].to(dev))
        pick = mask.bool()
        t = batch["t"].to(dev)[pick]
        x_t = self._train_process.q_sample(tokens[pick], t, batch["noise"].to(dev)[pick])
        out = self.module.diffloss.net(x_t, self._train_process.timestep_map.to(dev)[t], z[pick])
        return out[:, : tokens.shape[-1]]

    @torch.no_grad()
    def sample_latents(
        self, labels: torch.Tensor, generator: torch.Generator, sampler: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Scaled latents ``(B, C, h, w)`` for ``labels`` (``sampler`` overrides this model's)."""
        s = {**self.sampler, **(sampler or {})}
        gen = device_generator(generator, self.device)
        return sample_tokens(
            self.module,
            labels.to(self.device),
            gen,
            num_iter=int(s["num_iter"]),
            cfg=float(s["cfg"]),
            cfg_schedule=s.get("cfg_schedule", "linear"),
            temperature=float(s.get("temperature", 1.0)),
            sampling_steps=int(s.get("sampling_steps", 100)),
            clip_x0=s.get("clip_x0"),
        )

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One image per label: ``uint8`` ``(B, 3, H, W)`` on CPU."""
        return to_uint8(self.decode(self.sample_latents(labels, generator))).cpu()
