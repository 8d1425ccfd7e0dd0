"""``rar``: the released RAR-B / L / XL / XXL generators (ImageNet 256) with the MaskGIT-VQGAN tokenizer.

Files are the official ones, loaded strictly from local paths: the generator from option
``checkpoint`` and the tokenizer from ``tokenizer_checkpoint``, or both from
``$BITSCALE_RAR_CHECKPOINT_DIR`` under their official names (``rar_b.bin`` ... ``rar_xxl.bin``,
``maskgit-vqgan-imagenet-f16-256.bin``; raw state dicts saved with ``torch.save``). Any missing,
unexpected or mis-shaped key is an error naming the file and the keys.

Sampler defaults are the official FID settings of README_RAR.md (``sample_imagenet_rar.py``):

| size | guidance | guidance_pow | temperature |
|------|----------|--------------|-------------|
| rar-b | 16.0 | 2.75 | 1.0 |
| rar-l | 15.5 | 2.5 | 1.02 |
| rar-xl | 6.9 | 1.5 | 1.02 |
| rar-xxl | 8.0 | 1.2 | 1.02 |

no top-k / top-p (the official sampler has none), 256 raster-order tokens at 256 px.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict, local_file
from bitscale.plugins.models.options import check_size, coerce_options, sampler_from
from bitscale.plugins.models.rar.gpt import RAR, RELEASED_RAR, RARConfig
from bitscale.plugins.models.rar.maskgit_vq import MaskGITVQ, MaskGITVQConfig
from bitscale.plugins.models.rar.model import RARModel
from bitscale.plugins.models.rar.options import RARSamplerOptions

ENV_DIR = "BITSCALE_RAR_CHECKPOINT_DIR"
TOKENIZER_FILE = "maskgit-vqgan-imagenet-f16-256.bin"
CHECKPOINT_FILES = {"rar-b": "rar_b.bin", "rar-l": "rar_l.bin", "rar-xl": "rar_xl.bin", "rar-xxl": "rar_xxl.bin"}
#: Official FID sampler settings per size (README_RAR.md).
FID_SAMPLER: dict[str, dict[str, float]] = {
    "rar-b": {"guidance": 16.0, "guidance_pow": 2.75, "temperature": 1.0},
    "rar-l": {"guidance": 15.5, "guidance_pow": 2.5, "temperature": 1.02},
    "rar-xl": {"guidance": 6.9, "guidance_pow": 1.5, "temperature": 1.02},
    "rar-xxl": {"guidance": 8.0, "guidance_pow": 1.2, "temperature": 1.02},
}
#: Published FID-50K (ImageNet 256, README_RAR.md).
PUBLISHED_FID = {"rar-b": 1.95, "rar-l": 1.70, "rar-xl": 1.50, "rar-xxl": 1.48}


class RAROptions(RARSamplerOptions):
    """Options of ``rar``: checkpoint files and sampler overrides."""

    checkpoint: str | None = None
    tokenizer_checkpoint: str | None = None


def rar_config(size: str) -> RARConfig:
    """The released generator config of ``size`` (256 tokens, 1024 codes, 1000 classes)."""
    return RARConfig(**RELEASED_RAR[size])


class RARFamily(ModelFamily):
    """Released RAR class-conditional generators (ImageNet 256 protocol)."""

    name: ClassVar[str] = "rar"
    sizes: ClassVar[tuple[str, ...]] = tuple(RELEASED_RAR)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = RAROptions
    description: ClassVar[str] = "RAR-B/L/XL/XXL released checkpoints with the MaskGIT-VQGAN tokenizer (GPU)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> RARModel:
        """Build ``size`` on ``device``; on ``meta`` nothing is read (for parameter counts)."""
        opts = coerce_options(options, RAROptions)
        check_size(self.name, size, self.sizes)
        defaults: dict[str, Any] = {**FID_SAMPLER[size], "top_k": 0, "top_p": 1.0}
        sampler = sampler_from(opts, defaults)
        device = torch.device(device)
        with torch.device("meta"):
            gen, vq = RAR(rar_config(size)), MaskGITVQ(MaskGITVQConfig())
        if device.type != "meta":
            gen_path, vq_path = self._paths(size, opts)
            load_strict(gen, load_state_dict_file(gen_path), gen_path, assign=True)
            load_strict(vq, load_state_dict_file(vq_path), vq_path, assign=True)
            gen, vq = gen.float().eval().to(device), vq.float().eval().to(device)
        return RARModel(gen, vq, "imagenet256", sampler)

    def num_params(self, size: str, options: PluginOptions) -> int:
        return self.build(size, options, torch.device("meta")).num_params()

    def _paths(self, size: str, opts: RAROptions) -> tuple[Path, Path]:
        file = CHECKPOINT_FILES[size]

        def pick(given: str | None, name: str, option: str) -> Path:
            if (path := local_file(given, ENV_DIR, name)) is not None:
                return path
            raise BitscaleError(
                f"{self.name} {size} needs its checkpoint: set option `{option}` to the local {name}, "
                f"or {ENV_DIR} to a folder holding {file} and {TOKENIZER_FILE} (no downloads at run time)"
            )

        return pick(opts.checkpoint, file, "checkpoint"), pick(
            opts.tokenizer_checkpoint, TOKENIZER_FILE, "tokenizer_checkpoint"
        )
