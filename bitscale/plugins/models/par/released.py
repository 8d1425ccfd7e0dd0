"""``par``: the released PAR-XL / XXL / 3B generators (ImageNet, 384 px) on LlamaGen's VQ-16 tokenizer.

Files are the official ones, loaded strictly from local paths: the GPT from option ``checkpoint``
and the tokenizer from ``vq_checkpoint``, or both from ``$BITSCALE_PAR_CHECKPOINT_DIR`` under their
official names (``PAR-XL-4x.pt``, ``PAR-XXL-4x.pt``, ``PAR-3B-4x.pt``, ``PAR-3B-16x.pt`` and
LlamaGen's ``vq_ds16_c2i.pt``). The weights may sit under ``model``/``module``/``state_dict``
(DDP) or at the top level (FSDP, as the XXL/3B files are saved); keys a sampler adds at run time
(``freqs_cis``, ``causal_mask``, ``*.kv_cache.*``) are dropped, anything else must match exactly.

Sampler defaults are the official FID settings of the README: 24x24 tokens (384 px), cfg 1.5
(XL-4x, 3B-16x), 1.435 (XXL-4x), 1.345 (3B-4x), top_k 0, top_p 1.0, temperature 1.0; samples
are resized bicubically to 256 px for FID.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch

from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import local_file
from bitscale.plugins.models.llamagen.options import LlamaGenSamplerOptions
from bitscale.plugins.models.llamagen.released import VQ_CONFIG, VQ_FILE, load_gpt_and_vq
from bitscale.plugins.models.llamagen.vq import VQModel
from bitscale.plugins.models.options import check_size, coerce_options, sampler_from
from bitscale.plugins.models.par.gpt import PARGPT, PARConfig
from bitscale.plugins.models.par.model import PARModel

ENV_DIR = "BITSCALE_PAR_CHECKPOINT_DIR"
IMAGE_SIZE, EVAL_SIZE = 384, 256
#: size: (official GPT config name's dims, regions, checkpoint file, FID cfg, published FID-50K).
RELEASED_PAR: dict[str, dict] = {
    "xl-4x": {
        "gpt": {"dim": 1280, "n_layer": 36, "n_head": 20},
        "regions": 4,
        "file": "PAR-XL-4x.pt",
        "cfg": 1.5,
        "fid": 2.61,
    },
    "xxl-4x": {
        "gpt": {"dim": 1536, "n_layer": 48, "n_head": 24},
        "regions": 4,
        "file": "PAR-XXL-4x.pt",
        "cfg": 1.435,
        "fid": 2.35,
    },
    "3b-4x": {
        "gpt": {"dim": 3200, "n_layer": 24, "n_head": 32},
        "regions": 4,
        "file": "PAR-3B-4x.pt",
        "cfg": 1.345,
        "fid": 2.29,
    },
    "3b-16x": {
        "gpt": {"dim": 3200, "n_layer": 24, "n_head": 32},
        "regions": 16,
        "file": "PAR-3B-16x.pt",
        "cfg": 1.5,
        "fid": 2.88,
    },
}


class PAROptions(LlamaGenSamplerOptions):
    """Options of ``par``: checkpoint files and sampler overrides."""

    checkpoint: str | None = None
    vq_checkpoint: str | None = None


def par_config(size: str) -> PARConfig:
    """The released GPT config of ``size`` at 384 px (24x24 tokens), dropout off."""
    spec = RELEASED_PAR[size]
    return PARConfig(
        **spec["gpt"],
        block_size=(IMAGE_SIZE // 16) ** 2,
        ar_token_num=spec["regions"],
        spe_token_num=spec["regions"] - 1,
        token_dropout_p=0.0,
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
    )


class PARFamily(ModelFamily):
    """Released PAR class-conditional GPTs (ImageNet 256 protocol, generated at 384 px)."""

    name: ClassVar[str] = "par"
    sizes: ClassVar[tuple[str, ...]] = tuple(RELEASED_PAR)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = PAROptions
    description: ClassVar[str] = "PAR-XL/XXL/3B (4x, 16x) released checkpoints with LlamaGen's VQ-16 tokenizer (GPU)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> PARModel:
        """Build ``size`` on ``device``; on ``meta`` nothing is read (for parameter counts)."""
        opts = coerce_options(options, PAROptions)
        check_size(self.name, size, self.sizes)
        defaults = {"cfg": RELEASED_PAR[size]["cfg"], "top_k": 0, "top_p": 1.0, "temperature": 1.0}
        sampler = sampler_from(opts, defaults) | {"image_size": IMAGE_SIZE, "eval_size": EVAL_SIZE}
        device = torch.device(device)
        with torch.device("meta"):
            gpt, vq = PARGPT(par_config(size)), VQModel(VQ_CONFIG)
        if device.type != "meta":
            gpt, vq = load_gpt_and_vq(gpt, vq, *self._paths(size, opts), device)
        return PARModel(gpt, vq, "imagenet256", sampler, output_size=EVAL_SIZE)

    def num_params(self, size: str, options: PluginOptions) -> int:
        return self.build(size, options, torch.device("meta")).num_params()

    def _paths(self, size: str, opts: PAROptions) -> tuple[Path, Path]:
        file = RELEASED_PAR[size]["file"]

        def pick(given: str | None, name: str, option: str) -> Path:
            if (path := local_file(given, ENV_DIR, name)) is not None:
                return path
            raise BitscaleError(
                f"{self.name} {size} needs its checkpoint: set option `{option}` to the local {name}, "
                f"or {ENV_DIR} to a folder holding {file} and {VQ_FILE} (no downloads at run time)"
            )

        return pick(opts.checkpoint, file, "checkpoint"), pick(opts.vq_checkpoint, VQ_FILE, "vq_checkpoint")
