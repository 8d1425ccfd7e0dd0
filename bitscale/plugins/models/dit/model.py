"""``DiTModel``: a DiT plus its KL autoencoder and sampler behind the ``GenerativeModel`` contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from bitscale.data.digits import to_uint8
from bitscale.harness.contracts import GenerativeModel
from bitscale.plugins.models.dit.diffusion import Diffusion
from bitscale.plugins.models.dit.dit import DiT
from bitscale.plugins.models.dit.generation import DiTSteps
from bitscale.plugins.models.dit.vae import decode_latents
from bitscale.plugins.models.generators import device_generator, random_indices

#: Returns clean scaled latents ``(N, C, h, w)`` and labels ``(N,)`` to calibrate on, on CPU.
LatentSource = Callable[[], tuple[torch.Tensor, torch.Tensor]]


class DiTModel(GenerativeModel):
    """Class-conditional latent diffusion: ``module`` is the DiT; the autoencoder stays full precision.

    Batches are dicts ``{"x_t": (B, C, h, w), "t": (B,) int64 in [0, 1000), "labels": (B,) int64}``:
    noised latents at random timesteps of the 1000-step training process. ``forward_batch``
    returns the predicted noise (the first ``C`` output channels; the variance half is dropped).

    ``sampler``: ``{"sampler": "ddpm" | "ddim", "steps": int, "cfg": float, ...}``. ``ddpm`` is the
    official respaced ancestral sampler with learned-range variance; ``ddim`` (eta 0) is the fast
    option. Guidance (when ``cfg > 1``) is applied to the first 3 latent channels, as officially.
    """

    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"
    unquantized: ClassVar[tuple[str, ...]] = (
        "final_layer.*",
        "x_embedder",
        "x_embedder.*",
        "t_embedder.*",
        "y_embedder",
        "y_embedder.*",
    )
    activation_layers: ClassVar[dict[str, str]] = {
        "fc1": "blocks.{block}.mlp.fc1",
        "qkv": "blocks.{block}.attn.qkv",
        "fc2": "blocks.{block}.mlp.fc2",
    }

    def __init__(
        self,
        dit: DiT,
        vae: nn.Module,
        dataset: str,
        sampler: dict[str, Any],
        latent_scale: float,
        calibration_latents: LatentSource | None = None,
        batch_size: int = 32,
    ) -> None:
        self.module = dit
        self.vae = vae
        self.dataset = dataset
        self.num_classes = dit.num_classes
        self.sampler = dict(sampler)
        self.latent_scale = latent_scale
        self.batch_size = batch_size
        self._latent_source = calibration_latents
        self._pool: tuple[torch.Tensor, torch.Tensor] | None = None
        self._train_process = Diffusion()

    def num_params(self) -> int:
        """Parameters of the DiT only, the fixed ``pos_embed`` included (autoencoder excluded)."""
        return sum(p.numel() for p in self.module.parameters())

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.module.config
        return cfg.in_channels, cfg.input_size, cfg.input_size

    # ------------------------------------------------------------------ calibration

    def calibration_batches(self, n: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
        """``n`` batches of noised latents at uniformly random timesteps (CPU tensors).

        Clean latents come from the latent source (the tiny zoo: train-split digits through the
        autoencoder) or, without one (released models: ImageNet is not shipped), from the
        model's own fast DDIM samples.
        """
        if self._pool is None and self._latent_source is not None:
            self._pool = self._latent_source()
        batches = []
        for _ in range(n):
            if self._pool is not None:
                latents, labels = self._pool
                idx = random_indices(len(latents), self.batch_size, generator)
                x0, y = latents[idx], labels[idx]
            else:
                y = random_indices(self.num_classes, self.batch_size, generator)
                x0 = self.sample_latents(y, generator, {"sampler": "ddim", "steps": 25}).cpu()
            t = random_indices(self._train_process.num_timesteps, self.batch_size, generator)
            noise = torch.randn(x0.shape, generator=generator, device=generator.device).cpu()
            batches.append({"x_t": self._train_process.q_sample(x0, t, noise), "t": t, "labels": y})
        return batches

    # ------------------------------------------------------------------ contract

    def forward_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted noise ``(B, C, h, w)``: the eps half of the DiT output."""
        x = batch["x_t"].to(self.device)
        out = self.module(x, batch["t"].to(self.device), batch["labels"].to(self.device))
        return out[:, : x.shape[1]]

    def model_fn(self, labels: torch.Tensor, cfg: float, guided_channels: int = 3):
        """``(x_t, t) -> output`` for the sampler, with the official CFG when ``cfg > 1``."""
        if cfg <= 1.0:
            return lambda x, t: self.module(x, t, labels)
        null = torch.full_like(labels, self.num_classes)
        both = torch.cat([labels, null])

        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            cond, uncond = self.module(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
            g = guided_channels
            eps = uncond[:, :g] + cfg * (cond[:, :g] - uncond[:, :g])
            return torch.cat([eps, cond[:, g:]], dim=1)  # unguided rest from the conditional half

        return guided

    @torch.no_grad()
    def sample_latents(
        self, labels: torch.Tensor, generator: torch.Generator, sampler: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Scaled latents ``(B, C, h, w)`` for ``labels`` (``sampler`` overrides this model's)."""
        s = {**self.sampler, **(sampler or {})}
        labels = labels.to(self.device)
        gen = device_generator(generator, self.device)
        noise = torch.randn((len(labels), *self.latent_shape), generator=gen, device=self.device)
        fn = self.model_fn(labels, float(s.get("cfg", 1.0)), int(s.get("guided_channels", 3)))
        process = Diffusion(int(s["steps"]))
        if s.get("sampler", "ddpm") == "ddim":
            return process.ddim_sample_loop(fn, noise, gen, eta=float(s.get("eta", 0.0)))
        return process.p_sample_loop(fn, noise, gen)

    def generation_phases(self, labels: torch.Tensor, generator: torch.Generator) -> DiTSteps:
        """The sampler's steps from the noise ``sample`` would draw (``sample`` gives the same images)."""
        labels = labels.to(self.device)
        gen = device_generator(generator, self.device)
        noise = torch.randn((len(labels), *self.latent_shape), generator=gen, device=self.device)
        s = self.sampler
        fn = self.model_fn(labels, float(s.get("cfg", 1.0)), int(s.get("guided_channels", 3)))
        return DiTSteps(fn, noise, s, gen, lambda x: to_uint8(decode_latents(self.vae, x, self.latent_scale)).cpu())

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One image per label: ``uint8`` ``(B, 3, H, W)`` on CPU."""
        images = decode_latents(self.vae, self.sample_latents(labels, generator), self.latent_scale)
        return to_uint8(images).cpu()
