"""``dit``: the released DiT-XL/2 checkpoint (ImageNet 256 or 512) with ``sd-vae-ft-ema``.

Files are loaded strictly from local paths: the DiT from option ``checkpoint`` (``DiT-XL-2-256x256.pt``,
a raw state dict; an ``ema`` entry is taken if present, as ``find_model`` does) and the autoencoder
from ``vae_path`` (a diffusers folder, e.g. a local copy of ``stabilityai/sd-vae-ft-ema``, or its
weights file), or both from ``$BITSCALE_DIT_CHECKPOINT_DIR`` holding ``DiT-XL-2-<N>x<N>.pt`` and an
``sd-vae-ft-ema/`` folder.

Sampler defaults are the official FID-50K settings: 250 respaced DDPM steps with learned-range
variance, cfg 1.5 on the first 3 latent channels, null class 1000, latents decoded as
``vae.decode(z / 0.18215)``. ``num_params`` counts every DiT parameter including the fixed sin-cos
``pos_embed``: 675,129,632 for XL/2 at 256px (674,834,720 trainable).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch

from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict, local_file
from bitscale.plugins.models.dit.dit import RELEASED_DIT, DiT, DiTConfig
from bitscale.plugins.models.dit.model import DiTModel
from bitscale.plugins.models.dit.options import DiTSamplerOptions, sampler_settings
from bitscale.plugins.models.dit.vae import SD_LATENT_SCALE, load_vae
from bitscale.plugins.models.options import check_size, coerce_options

ENV_DIR = "BITSCALE_DIT_CHECKPOINT_DIR"
VAE_FOLDER = "sd-vae-ft-ema"
OFFICIAL_SAMPLER = {"sampler": "ddpm", "steps": 250, "cfg": 1.5}


class DiTOptions(DiTSamplerOptions):
    """Options of ``dit``: checkpoint files, image size and sampler overrides."""

    checkpoint: str | None = None
    vae_path: str | None = None
    image_size: Literal[256, 512] = 256


def dit_config(size: str, image_size: int = 256) -> DiTConfig:
    """The released DiT config of ``size`` for ``image_size`` (8x downsampling autoencoder)."""
    return DiTConfig(**RELEASED_DIT[size], input_size=image_size // 8)


class DiTFamily(ModelFamily):
    """Released DiT-XL/2 (ImageNet protocol: 250-step DDPM, cfg 1.5)."""

    name: ClassVar[str] = "dit"
    sizes: ClassVar[tuple[str, ...]] = tuple(RELEASED_DIT)
    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"
    Options: ClassVar[type[PluginOptions]] = DiTOptions
    description: ClassVar[str] = "DiT-XL/2 released checkpoint with sd-vae-ft-ema (GPU)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> DiTModel:
        """Build ``size`` on ``device``; on ``meta`` nothing is read (for parameter counts)."""
        opts = coerce_options(options, DiTOptions)
        check_size(self.name, size, self.sizes)
        sampler = sampler_settings(opts, OFFICIAL_SAMPLER) | {"image_size": opts.image_size}
        device = torch.device(device)
        with torch.device("meta"):
            dit = DiT(dit_config(size, opts.image_size))
        if device.type == "meta":
            return DiTModel(dit, torch.nn.Identity(), "imagenet256", sampler, SD_LATENT_SCALE)
        ckpt, vae_path = self._paths(opts)
        load_strict(dit, load_state_dict_file(ckpt), ckpt, assign=True)
        dit = dit.float().eval().to(device)
        dit.pos_embed.requires_grad_(False)  # assign=True replaced the Parameter: keep it frozen
        vae = load_vae(vae_path).float().to(device).requires_grad_(False)
        dataset = "imagenet256" if opts.image_size == 256 else "imagenet512"
        return DiTModel(dit, vae, dataset, sampler, SD_LATENT_SCALE)

    def num_params(self, size: str, options: PluginOptions) -> int:
        return self.build(size, options, torch.device("meta")).num_params()

    def _paths(self, opts: DiTOptions) -> tuple[Path, Path]:
        file = f"DiT-XL-2-{opts.image_size}x{opts.image_size}.pt"

        def pick(given: str | None, name: str, option: str) -> Path:
            if (path := local_file(given, ENV_DIR, name)) is not None:
                return path
            raise BitscaleError(
                f"{self.name} needs local weights: set option `{option}`, or {ENV_DIR} to a folder "
                f"holding {file} and {VAE_FOLDER}/ (no downloads at run time)"
            )

        ckpt, vae = pick(opts.checkpoint, file, "checkpoint"), pick(opts.vae_path, VAE_FOLDER, "vae_path")
        if not vae.exists():
            raise BitscaleError(f"VAE not found at {vae}: pass a local sd-vae-ft-ema folder or weights file")
        return ckpt, vae
