"""``var``: the released class-conditional ImageNet 256x256 VAR checkpoints (d16, d20, d24, d30).

Models are built with the official rules (width ``64 * depth``, ``depth`` heads, scales
1..16, tokenizer ``ch=160, V=4096, Cvae=32``) and loaded strictly from local files: nothing is
downloaded. Point the options ``checkpoint`` / ``vae_checkpoint`` at the files, or set
``BITSCALE_VAR_CHECKPOINT_DIR`` to a folder holding the official names (``var_d16.pth``, ...,
``vae_ch160v4096z32.pth``, from https://huggingface.co/FoundationVision/var).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict, local_file
from bitscale.plugins.models.var.images import image_folder_source
from bitscale.plugins.models.var.model import VarModel
from bitscale.plugins.models.var.transformer import VAR, VARConfig, official_var_config
from bitscale.plugins.models.var.vqvae import VQVAE, VQVAEConfig

ENV_DIR = "BITSCALE_VAR_CHECKPOINT_DIR"
#: Fallback for ``calibration_dir``: ImageNet train images in ImageFolder layout.
ENV_IMAGENET = "BITSCALE_IMAGENET_TRAIN"
VAE_FILE = "vae_ch160v4096z32.pth"
DEPTHS = {"d16": 16, "d20": 20, "d24": 24, "d30": 30}
#: The README's FID settings (cfg 1.5, top-k 900, top-p 0.96, no Gumbel smoothing).
OFFICIAL_SAMPLER: dict[str, Any] = {"cfg": 1.5, "top_k": 900, "top_p": 0.96}


class VarOptions(PluginOptions):
    """Where the released files are; ``{size}`` in a path is replaced by the size (``d16``)."""

    checkpoint: Path | None = None
    vae_checkpoint: Path | None = None
    #: ImageNet *train* images in ImageFolder layout (one folder per synset, sorted = class id);
    #: defaults to ``$BITSCALE_IMAGENET_TRAIN``.
    calibration_dir: Path | None = None
    calibration_batch_size: int = Field(8, ge=1)


def checkpoint_paths(size: str, options: VarOptions) -> tuple[Path, Path]:
    """(transformer, tokenizer) checkpoint paths for ``size``; ``BitscaleError`` says how to provide them."""
    paths: list[Path] = []
    for opt, default in ((options.checkpoint, f"var_{size}.pth"), (options.vae_checkpoint, VAE_FILE)):
        given = None if opt is None else str(opt).replace("{size}", size)
        if (path := local_file(given, ENV_DIR, default)) is not None:
            paths.append(path)
        else:
            raise BitscaleError(
                f"VAR {size} loads the released checkpoints, and none is configured: set the options "
                f"checkpoint (var_{size}.pth) and vae_checkpoint ({VAE_FILE}), or {ENV_DIR} to a folder "
                "holding both (files from https://huggingface.co/FoundationVision/var)"
            )
    return paths[0], paths[1]


def load_released(
    var_config: VARConfig,
    vae_config: VQVAEConfig,
    var_path: str | Path,
    vae_path: str | Path,
    device: torch.device,
) -> tuple[VAR, VQVAE]:
    """Build on the meta device (no wasted random init) and fill strictly from the two files."""
    with torch.device("meta"):
        var = VAR(var_config, init=False)
        vae = VQVAE(vae_config)
    load_strict(var, load_state_dict_file(var_path), var_path, assign=True)
    vae_sd = load_state_dict_file(vae_path)
    hits = vae_sd.get("quantize.ema_vocab_hit_SV")
    if hits is not None and hits.ndim == 2 and hits.shape[0] != len(vae_config.patch_nums):
        # Upstream's VQVAE.load_state_dict does the same: usage statistics of another scale
        # schedule are irrelevant at inference.
        vae_sd["quantize.ema_vocab_hit_SV"] = torch.zeros(len(vae_config.patch_nums), vae_config.vocab_size)
    load_strict(vae, vae_sd, vae_path, assign=True)
    return var.float().to(device).eval(), vae.float().to(device).eval()


class VarFamily(ModelFamily):
    """Released VAR checkpoints (class-conditional ImageNet 256x256)."""

    name = "var"
    sizes = tuple(DEPTHS)
    style = "language"
    Options = VarOptions
    description = "VAR next-scale prediction, released ImageNet-256 checkpoints d16-d30 (local files, GPU)"

    def configs(self, size: str) -> tuple[VARConfig, VQVAEConfig]:
        """The official transformer and tokenizer configurations of ``size``."""
        if size not in DEPTHS:
            raise BitscaleError(f"var has sizes {', '.join(DEPTHS)}, not {size!r}")
        return official_var_config(DEPTHS[size]), VQVAEConfig()

    def build(self, size: str, options: PluginOptions, device: torch.device) -> VarModel:
        """The released model of ``size`` on ``device`` (on ``meta``: the architecture only)."""
        assert isinstance(options, VarOptions)
        var_cfg, vae_cfg = self.configs(size)
        device = torch.device(device)
        if device.type == "meta":
            with torch.device("meta"):
                var, vae = VAR(var_cfg, init=False), VQVAE(vae_cfg)
        else:
            var_path, vae_path = checkpoint_paths(size, options)
            var, vae = load_released(var_cfg, vae_cfg, var_path, vae_path, device)
        folder = options.calibration_dir or os.environ.get(ENV_IMAGENET)
        images = image_folder_source(folder, vae_cfg.image_size) if folder else None
        hint = f"set the var option calibration_dir or {ENV_IMAGENET} to ImageNet train images (ImageFolder layout)"
        return VarModel(
            var, vae, "imagenet256", OFFICIAL_SAMPLER, images, options.calibration_batch_size, no_images_hint=hint
        )
