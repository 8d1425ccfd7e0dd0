"""``mar-tiny``: MAR's architecture at tiny sizes, trained by bitscale on 16x16 digits.

MAR generates the *continuous* latents of dit-tiny's autoencoder (the very artifact
``dit-tiny/vae``, 4x4x4 latents, scaled by its measured latent scale): so against var-tiny and
llamagen-tiny the one difference is the token space (continuous vs discrete), and against
dit-tiny the one difference is the generator (masked autoregression with a diffusion head vs a
diffusion transformer). 16 tokens of 4 channels (patch 1), a class buffer of 4 tokens, head_dim
32, sizes ``d<depth>w<width>`` with the same depth for encoder and decoder. Each MAR is the
artifact ``mar-tiny/<size>`` and records the autoencoder it was trained on.

Sampler defaults: 8 AR iterations, 50 head steps, cfg 2.0 with the linear schedule, temperature
1.0 — a fast stand-in for the official 256 iterations / 100 steps on 256 tokens
(``num_iter: 16, sampling_steps: 100`` is the official one-token-per-iteration ratio here) — and
one departure, ``clip_x0: 5.0``: the head's predicted x0 is clamped to +-5 (the scaled training
latents span +-4.8). Without it every sample diverged at the first head step (t = 999, where the
cosine process's x0 is the noise error times 2e4; ``diffusion.py``): latents of std ~1000 instead
of 1, FID ~500 whatever the training. Any bound from 3 to 20 gave the same FID.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Literal

import torch

from bitscale.data import digits
from bitscale.harness.contracts import PluginOptions
from bitscale.plugins.models.dit.tiny import (
    _VAE_RECORD,
    VAE_ARTIFACT,
    VAE_STEPS,
    DiTTinyFamily,
    calibration_latents,
)
from bitscale.plugins.models.dit.vae import decode_latents, encode_latents
from bitscale.plugins.models.mar.mar import MAR, MARConfig
from bitscale.plugins.models.mar.model import MARModel
from bitscale.plugins.models.mar.options import MARSamplerOptions, sampler_settings
from bitscale.plugins.models.mar.training import train_mar
from bitscale.plugins.models.tiny_family import SEED, TwoStageTinyFamily
from bitscale.zoo.training import TrainResult

_COMMON = {
    "img_size": digits.SIZE,
    "vae_stride": 4,
    "patch_size": 1,
    "vae_embed_dim": 4,
    "buffer_size": 4,
    "class_num": digits.NUM_CLASSES,
    "diffusion_batch_mul": 4,
}


def _size(width: int, depth: int, head_depth: int, head_width: int) -> MARConfig:
    heads = width // 32
    return MARConfig(
        encoder_embed_dim=width,
        encoder_depth=depth,
        encoder_num_heads=heads,
        decoder_embed_dim=width,
        decoder_depth=depth,
        decoder_num_heads=heads,
        diffloss_d=head_depth,
        diffloss_w=head_width,
        **_COMMON,
    )


#: Sizes, smallest first: (MAR config, training steps).
#: Small enough that the three ship in under 6 MB of fp32 weights. With the clamped sampler, 600
#: steps gave FID 54 / 56 / 44 (300 samples, one seed) and 2000 steps with a diffusion batch
#: multiplier of 1 gave 30.1 / ~31 (1000 samples, 3 and 2 seeds) for the two small sizes; the
#: official multiplier of 4 (the head sees each masked token under 4 noise levels) separated them.
SIZES: dict[str, tuple[MARConfig, int]] = {
    "d1w64": (_size(64, 1, 1, 64), 2000),
    "d2w64": (_size(64, 2, 2, 64), 2000),
    "d3w96": (_size(96, 3, 3, 96), 2000),
}
#: Training recipe of every size (``train_mar`` keyword arguments).
RECIPE: dict[str, Any] = {"batch_size": 64, "lr": 1e-3, "ema_decay": 0.995, "label_lr_mult": 10.0, "weight_decay": 0.02}
DEFAULT_SAMPLER: dict[str, Any] = {
    "num_iter": 8,
    "sampling_steps": 50,
    "cfg": 2.0,
    "cfg_schedule": "linear",
    "temperature": 1.0,
    "clip_x0": 5.0,
}


class MARTinyOptions(MARSamplerOptions):
    """Options of ``mar-tiny``. Step overrides are for tests; the zoo uses the defaults."""

    steps: int | None = None
    vae_steps: int | None = None


class MARTinyFamily(TwoStageTinyFamily):
    """MAR (masked autoregression + diffusion head) at tiny sizes on dit-tiny's digit latents."""

    name: ClassVar[str] = "mar-tiny"
    sizes: ClassVar[tuple[str, ...]] = tuple(SIZES)
    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"
    Options: ClassVar[type[PluginOptions]] = MARTinyOptions
    description: ClassVar[str] = "MAR (continuous autoregressive) on dit-tiny's autoencoder, 16x16 digits (CPU)"
    size_configs = SIZES
    recipe = RECIPE
    network = MAR
    codec_hash_key = "vae_hash"
    codec_artifact = VAE_ARTIFACT  # dit-tiny's autoencoder, shared
    codec_record = _VAE_RECORD
    codec_steps = VAE_STEPS
    codec_steps_option = "vae_steps"

    _codec = DiTTinyFamily._codec  # the same artifact, trained and cached the same way

    def _fit(
        self, size: str, cfg: MARConfig, steps: int, codec: torch.nn.Module, codec_manifest: dict[str, Any]
    ) -> tuple[MAR, TrainResult]:
        data = digits.load("train")
        mean, std = encode_latents(codec, data.images)
        return train_mar(
            cfg,
            mean,
            std,
            data.labels,
            codec_manifest["latent_scale"],
            steps,
            SEED,
            **RECIPE,
            desc=f"{self.name} {size}",
        )

    def _model(
        self,
        net: MAR,
        codec: torch.nn.Module,
        codec_manifest: dict[str, Any],
        opts: MARTinyOptions,
        device: torch.device | None = None,
    ) -> MARModel:
        sampler, scale = sampler_settings(opts, DEFAULT_SAMPLER), codec_manifest["latent_scale"]
        decode = functools.partial(decode_latents, codec, scale=scale)
        if device is None:
            return MARModel(net, decode, "digits16", sampler, vae=codec, latent_scale=scale)
        latents = functools.partial(calibration_latents, codec, scale, device)  # read on first calibration
        return MARModel(net, decode, "digits16", sampler, calibration_latents=latents, vae=codec, latent_scale=scale)

    def _meta_model(self, cfg: MARConfig, opts: MARTinyOptions) -> MARModel:
        with torch.device("meta"):
            return MARModel(MAR(cfg), lambda z: z, "digits16", sampler_settings(opts, DEFAULT_SAMPLER))
