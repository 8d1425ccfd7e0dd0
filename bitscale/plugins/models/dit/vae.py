"""The KL autoencoder DiT decodes latents with: diffusers' ``AutoencoderKL``.

Released DiT uses ``stabilityai/sd-vae-ft-ema`` with latents scaled by 0.18215; the tiny zoo uses
a small ``AutoencoderKL`` trained on digits, with the scale measured from its latents. diffusers
is imported lazily because importing it is slow and only these functions need it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict

#: Latent scale of the Stable Diffusion VAEs, hard-coded in DiT's sampling scripts.
SD_LATENT_SCALE = 0.18215

#: ``stabilityai/sd-vae-ft-ema``'s ``config.json`` (used when a bare weights file is given).
SD_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
}

#: A tiny ``AutoencoderKL`` for 16x16 digits: two downsamplings, latents ``(4, 4, 4)``. (With one
#: downsampling, 4x8x8 latents, tiny DiTs did not learn class-conditional digits in the budget.)
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 16,
}

# Attention parameter names of checkpoints saved by diffusers < 0.14 (sd-vae-ft-ema's files).
_OLD_ATTENTION_NAMES = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _autoencoder_class() -> type[nn.Module]:
    """diffusers' ``AutoencoderKL``, imported without the warnings its import prints.

    Importing diffusers probes torchao, which logs a deprecation warning per Enum from torch's
    pytree and one from diffusers about torchao tensors. Neither concerns bitscale (it never
    loads torchao-serialized checkpoints), and they would preface every DiT run and every zoo
    training worker, so both loggers are quieted for the import only.
    """
    quiet = [logging.getLogger(name) for name in ("torch.utils._pytree", "diffusers")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    # diffusers sets its logger's level from this variable when the import configures it.
    user_set = "DIFFUSERS_VERBOSITY" in os.environ
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        from diffusers import AutoencoderKL
        from diffusers.models import autoencoders  # noqa: F401 - the lazy submodule that logs
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
        if not user_set:
            os.environ.pop("DIFFUSERS_VERBOSITY", None)
    return AutoencoderKL


def build_vae(config: dict[str, Any]) -> nn.Module:
    """An untrained ``AutoencoderKL`` with ``config`` (on the current default device)."""
    return _autoencoder_class()(**config)


def load_vae(path: str | Path) -> nn.Module:
    """Load a KL autoencoder from a local diffusers folder or a single weights file (strictly).

    A folder is read with ``from_pretrained(local_files_only=True)`` (its ``config.json`` decides the
    architecture). A file (``.safetensors``, or a weights-only ``.bin``/``.pt``) is loaded into the
    ``sd-vae-ft-ema`` architecture, renaming the pre-0.14 attention keys if present.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BitscaleError(
                f"VAE folder {path} has no config.json; pass a diffusers AutoencoderKL folder "
                "(e.g. a local copy of stabilityai/sd-vae-ft-ema) or its weights file"
            )
        try:
            vae = _autoencoder_class().from_pretrained(str(path), local_files_only=True, use_safetensors=None)
        except Exception as e:  # noqa: BLE001 - report any loader failure with the folder named
            raise BitscaleError(f"cannot load the VAE from {path}: {type(e).__name__}: {e}") from e
        return vae.eval()
    state = load_state_dict_file(path)
    state = {_rename(k): v for k, v in state.items()}
    config = SD_VAE_CONFIG
    sidecar = path.with_name("config.json")
    if sidecar.exists():
        config = {k: v for k, v in json.loads(sidecar.read_text()).items() if k in SD_VAE_CONFIG}
    with torch.device("meta"):
        vae = build_vae(config)
    load_strict(vae, state, path, assign=True)
    return vae.eval()


def _rename(key: str) -> str:
    for old, new in _OLD_ATTENTION_NAMES.items():
        if old in key and ".attentions." in key:
            return key.replace(old, new)
    return key


@torch.no_grad()
def encode_latents(vae: nn.Module, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mean, std) of ``images`` in [-1, 1], unscaled, computed in batches."""
    means, stds = [], []
    for chunk in images.split(batch):
        dist = vae.encode(chunk).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def decode_latents(vae: nn.Module, latents: torch.Tensor, scale: float) -> torch.Tensor:
    """``vae.decode(z / scale)``: scaled latents to images, nominally in [-1, 1]."""
    return vae.decode(latents / scale).sample
