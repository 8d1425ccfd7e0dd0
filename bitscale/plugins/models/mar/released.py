"""``mar``: the released MAR-B/L/H checkpoints (ImageNet 256) with their KL-16 autoencoder.

Files are loaded strictly from local paths, never downloaded: option ``checkpoint`` (``{size}`` is
replaced by ``mar_base``/``mar_large``/``mar_huge``) and ``vae_checkpoint``, or
``$BITSCALE_MAR_CHECKPOINT_DIR`` pointing at the official download folder ``pretrained_models/``
(``mar/mar_base/checkpoint-last.pth`` ..., ``vae/kl16.ckpt``: what the official
``util/download.py`` writes). A training checkpoint holds ``model`` and ``model_ema``; the EMA
weights are taken, as the official evaluation does. ``kl16.ckpt`` holds the autoencoder under
``model``; LDM training-loss entries (``loss.*``), if any, are dropped before the strict load.

Sampler defaults are the official FID-50K settings (README): 256 AR iterations, 100 head steps,
temperature 1.0, linear CFG schedule with cfg 2.9 (B), 3.0 (L), 3.2 (H); latents decoded as
``vae.decode(z / 0.2325)``. Parameter counts include the diffusion head (the README's 208M/479M/943M).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import torch

from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict
from bitscale.plugins.models.mar.mar import MAR, RELEASED_MAR, MARConfig
from bitscale.plugins.models.mar.model import MARModel
from bitscale.plugins.models.mar.options import MARSamplerOptions, sampler_settings
from bitscale.plugins.models.mar.vae import KL16_LATENT_SCALE, KLAutoencoder
from bitscale.plugins.models.options import check_size, coerce_options

ENV_DIR = "BITSCALE_MAR_CHECKPOINT_DIR"
#: Official file names, relative to the download folder ``pretrained_models/``.
CHECKPOINT_FILE = "mar/{size}/checkpoint-last.pth"
VAE_FILE = "vae/kl16.ckpt"
OFFICIAL_NAMES = {"mar-b": "mar_base", "mar-l": "mar_large", "mar-h": "mar_huge"}
OFFICIAL_CFG = {"mar-b": 2.9, "mar-l": 3.0, "mar-h": 3.2}
OFFICIAL_SAMPLER = {
    "num_iter": 256,
    "sampling_steps": 100,
    "cfg_schedule": "linear",
    "temperature": 1.0,
    "clip_x0": None,
}


class MAROptions(MARSamplerOptions):
    """Options of ``mar``: checkpoint files and sampler overrides."""

    checkpoint: str | None = None
    vae_checkpoint: str | None = None


def mar_config(size: str) -> MARConfig:
    return MARConfig(**RELEASED_MAR[size])


def checkpoint_paths(size: str, opts: MAROptions) -> tuple[Path, Path]:
    """(MAR, KL-16) checkpoint paths; ``BitscaleError`` says how to provide them."""
    official = OFFICIAL_NAMES[size]
    folder = os.environ.get(ENV_DIR)
    paths = []
    for given, default in ((opts.checkpoint, CHECKPOINT_FILE), (opts.vae_checkpoint, VAE_FILE)):
        if given:
            paths.append(Path(given.replace("{size}", official)).expanduser())
        elif folder:
            paths.append(Path(folder).expanduser() / default.replace("{size}", official))
        else:
            raise BitscaleError(
                f"mar {size} loads the released checkpoints, and none is configured: set the options "
                f"checkpoint and vae_checkpoint, or {ENV_DIR} to the official pretrained_models/ folder "
                f"holding {CHECKPOINT_FILE.replace('{size}', official)} and {VAE_FILE} (no downloads at run time)"
            )
    return paths[0], paths[1]


def load_vae(path: Path) -> KLAutoencoder:
    """KL-16 strictly from ``kl16.ckpt`` (its ``model`` entry), on the meta device first."""
    state = load_state_dict_file(path, nested_keys=("model", "state_dict"))
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}
    with torch.device("meta"):
        vae = KLAutoencoder()
    load_strict(vae, state, path, assign=True)
    return vae.float().eval().requires_grad_(False)


class MARFamily(ModelFamily):
    """Released MAR-B/L/H (ImageNet protocol: 256 iterations, 100 head steps, linear CFG)."""

    name: ClassVar[str] = "mar"
    sizes: ClassVar[tuple[str, ...]] = tuple(RELEASED_MAR)
    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"
    Options: ClassVar[type[PluginOptions]] = MAROptions
    description: ClassVar[str] = "MAR-B/L/H released checkpoints with the KL-16 autoencoder (GPU)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> MARModel:
        """Build ``size`` on ``device``; on ``meta`` nothing is read (for parameter counts)."""
        opts = coerce_options(options, MAROptions)
        check_size(self.name, size, self.sizes)
        sampler = sampler_settings(opts, OFFICIAL_SAMPLER | {"cfg": OFFICIAL_CFG[size]})
        device = torch.device(device)
        with torch.device("meta"):
            mar = MAR(mar_config(size))
        if device.type == "meta":
            return MARModel(mar, lambda z: z, "imagenet256", sampler)
        ckpt, vae_path = checkpoint_paths(size, opts)
        load_strict(mar, load_state_dict_file(ckpt, nested_keys=("model_ema", "model")), ckpt, assign=True)
        mar = mar.float().eval().to(device)
        vae = load_vae(vae_path).to(device)
        return MARModel(
            mar,
            lambda z: vae.decode(z / KL16_LATENT_SCALE),
            "imagenet256",
            sampler,
            vae=vae,
            latent_scale=KL16_LATENT_SCALE,
        )

    def num_params(self, size: str, options: PluginOptions) -> int:
        return self.build(size, options, torch.device("meta")).num_params()
