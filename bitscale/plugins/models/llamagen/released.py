"""``llamagen``: the released class-conditional LlamaGen GPT-B / L / XL checkpoints (ImageNet).

Files are the official ones, loaded strictly from local paths: the GPT from option ``checkpoint``
and the tokenizer from ``vq_checkpoint``, or both from ``$BITSCALE_LLAMAGEN_CHECKPOINT_DIR`` under
their official names (``c2i_B_384.pt`` ... and ``vq_ds16_c2i.pt``). Keys a sampler adds at run
time (``freqs_cis``, ``*.kv_cache.*``, ``causal_mask``) are dropped before the strict load; any
other difference is an error naming the file and keys.

Sampler defaults are the official FID settings: cfg 2.0 for B and L, 1.75 for XL, top_k 0,
top_p 1.0, temperature 1.0; at ``image_size`` 384 samples are resized bicubically to 256.
Dropout probabilities are set to 0 (they only matter for training from scratch), so a module a
quantizer leaves in train mode still computes the released model's function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import BitscaleError, ConfigError
from bitscale.plugins.models.checkpoint import load_state_dict_file, load_strict, local_file
from bitscale.plugins.models.llamagen.gpt import GPT, RELEASED_GPT, GPTConfig
from bitscale.plugins.models.llamagen.model import LlamaGenModel
from bitscale.plugins.models.llamagen.options import LlamaGenSamplerOptions
from bitscale.plugins.models.llamagen.vq import VQConfig, VQModel
from bitscale.plugins.models.options import check_size, coerce_options, sampler_from

ENV_DIR = "BITSCALE_LLAMAGEN_CHECKPOINT_DIR"
VQ_FILE = "vq_ds16_c2i.pt"
VQ_CONFIG = VQConfig()  # VQ-16, the tokenizer of every released c2i GPT
#: Official file name per (size, image size).
CHECKPOINT_FILES = {
    ("gpt-b", 256): "c2i_B_256.pt",
    ("gpt-b", 384): "c2i_B_384.pt",
    ("gpt-l", 256): "c2i_L_256.pt",
    ("gpt-l", 384): "c2i_L_384.pt",
    ("gpt-xl", 384): "c2i_XL_384.pt",
}
FID_CFG = {"gpt-b": 2.0, "gpt-l": 2.0, "gpt-xl": 1.75}
EVAL_SIZE = 256
_RUNTIME_KEYS = ("freqs_cis", "causal_mask")


class LlamaGenOptions(LlamaGenSamplerOptions):
    """Options of ``llamagen``: checkpoint files, image size and sampler overrides."""

    checkpoint: str | None = None
    vq_checkpoint: str | None = None
    image_size: Literal[256, 384] = 384


def gpt_config(size: str, image_size: int = 384) -> GPTConfig:
    """The released GPT config of ``size`` for ``image_size`` (16x downsampling tokenizer)."""
    return GPTConfig(
        **RELEASED_GPT[size],
        block_size=(image_size // 16) ** 2,
        token_dropout_p=0.0,
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
    )


class LlamaGenFamily(ModelFamily):
    """Released LlamaGen class-conditional GPTs (ImageNet 256 protocol)."""

    name: ClassVar[str] = "llamagen"
    sizes: ClassVar[tuple[str, ...]] = tuple(RELEASED_GPT)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = LlamaGenOptions
    description: ClassVar[str] = "LlamaGen GPT-B/L/XL released checkpoints with the VQ-16 tokenizer (GPU)"

    def build(self, size: str, options: PluginOptions, device: torch.device) -> LlamaGenModel:
        """Build ``size`` on ``device``; on ``meta`` nothing is read (for parameter counts)."""
        opts = coerce_options(options, LlamaGenOptions)
        check_size(self.name, size, self.sizes)
        cfg = gpt_config(size, opts.image_size)
        defaults = {"cfg": FID_CFG[size], "top_k": 0, "top_p": 1.0, "temperature": 1.0}
        sampler = sampler_from(opts, defaults) | {"image_size": opts.image_size, "eval_size": EVAL_SIZE}
        device = torch.device(device)
        with torch.device("meta"):
            gpt, vq = GPT(cfg), VQModel(VQ_CONFIG)
        if device.type != "meta":
            gpt, vq = load_gpt_and_vq(gpt, vq, *self._paths(size, opts), device)
        return LlamaGenModel(gpt, vq, "imagenet256", sampler, output_size=EVAL_SIZE)

    def num_params(self, size: str, options: PluginOptions) -> int:
        return self.build(size, options, torch.device("meta")).num_params()

    def _paths(self, size: str, opts: LlamaGenOptions) -> tuple[Path, Path]:
        file = CHECKPOINT_FILES.get((size, opts.image_size))
        if file is None:
            raise ConfigError(f"LlamaGen {size} was released only at 384px; set image_size: 384")

        def pick(given: str | None, name: str, option: str) -> Path:
            if (path := local_file(given, ENV_DIR, name)) is not None:
                return path
            raise BitscaleError(
                f"{self.name} {size} needs its checkpoint: set option `{option}` to the local {name}, "
                f"or {ENV_DIR} to a folder holding {file} and {VQ_FILE} (no downloads at run time)"
            )

        return pick(opts.checkpoint, file, "checkpoint"), pick(opts.vq_checkpoint, VQ_FILE, "vq_checkpoint")


def load_gpt_and_vq(
    gpt: nn.Module, vq: nn.Module, gpt_path: Path, vq_path: Path, device: torch.device
) -> tuple[nn.Module, nn.Module]:
    """Fill a meta-built GPT (LlamaGen's or a subclass, e.g. PAR's) and the VQ-16 tokenizer strictly from
    their released files; fp32, eval mode, on ``device``."""
    load_strict(gpt, _without_runtime_keys(load_state_dict_file(gpt_path)), gpt_path, assign=True)
    load_strict(vq, load_state_dict_file(vq_path), vq_path, assign=True)
    gpt.reset_buffers()
    return gpt.float().eval().to(device), vq.float().eval().to(device)


def _without_runtime_keys(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in _RUNTIME_KEYS and ".kv_cache." not in k}
