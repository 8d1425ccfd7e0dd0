"""``rar-tiny``: RAR's architecture at tiny sizes, trained by bitscale on 16x16 digits.

It reuses ``llamagen-tiny``'s VQ tokenizer (artifact ``llamagen-tiny/vq``, 64 codes on a 4x4
grid), so that the generator is the only difference from ``llamagen-tiny`` and ``par-tiny``.
Sizes ``d<depth>w<width>`` (heads of width 32); each is the artifact ``rar-tiny/<size>``, whose
manifest records the tokenizer it was trained on. The position tables keep 2 spare rows
(officially 1024 and 100), which a 16-token sequence needs and nothing more.

The generator weights are stored (cached, shipped) as float16 values: the three sizes are 3.5-4 MB
instead of 7-8 MB in float32; the model loads them into float32 and computes in float32, and the
FIDs and sample grids are those of the stored (rounded) weights.

Sampler defaults: guidance 2.0 with ``guidance_pow`` 0 (a constant scale, like llamagen-tiny's
cfg 2.0, so the two families sample with the same guidance), temperature 1.0, no top-k/top-p.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from bitscale.data import digits
from bitscale.harness.contracts import PluginOptions
from bitscale.plugins.models.llamagen.tiny import TOKENIZER, LlamaGenTinyFamily, encode_split
from bitscale.plugins.models.llamagen.vq import VQModel
from bitscale.plugins.models.options import sampler_from
from bitscale.plugins.models.rar.gpt import RAR, RARConfig
from bitscale.plugins.models.rar.model import RARModel
from bitscale.plugins.models.rar.options import RARSamplerOptions
from bitscale.plugins.models.rar.training import train_rar
from bitscale.plugins.models.tiny_family import SEED
from bitscale.zoo.training import TrainResult

_COMMON = dict(
    image_seq_len=(digits.SIZE // TOKENIZER.downsample) ** 2,
    codebook_size=TOKENIZER.codebook_size,
    num_classes=digits.NUM_CLASSES,
    pos_extra=2,
    timestep_extra=2,
)


def _cfg(depth: int, width: int) -> RARConfig:
    return RARConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=width // 32,
        intermediate_size=4 * width,
        **_COMMON,
    )


#: Sizes, smallest first: (config, training steps).
SIZES: dict[str, tuple[RARConfig, int]] = {
    "d2w64": (_cfg(2, 64), 400),
    "d3w96": (_cfg(3, 96), 500),
    "d4w128": (_cfg(4, 128), 600),
}
RECIPE: dict[str, Any] = {"batch_size": 64, "lr": 2e-3}
DEFAULT_SAMPLER: dict[str, Any] = {"guidance": 2.0, "guidance_pow": 0.0, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


class RARTinyOptions(RARSamplerOptions):
    """Options of ``rar-tiny``. Step overrides are for tests; the zoo uses the defaults."""

    steps: int | None = None
    tokenizer_steps: int | None = None


class RARTinyFamily(LlamaGenTinyFamily):
    """RAR (random-order-trained AR with target-aware positions) at tiny sizes on 16x16 digits.

    The shared tokenizer (training, caching, freshness) is llamagen-tiny's: only the generator differs.
    """

    name: ClassVar[str] = "rar-tiny"
    sizes: ClassVar[tuple[str, ...]] = tuple(SIZES)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = RARTinyOptions
    description: ClassVar[str] = (
        "RAR generator on llamagen-tiny's VQ tokenizer, tiny sizes trained on 16x16 digits (CPU)"
    )
    size_configs = SIZES
    recipe = RECIPE
    network = RAR
    weights_dtype = torch.float16  # 3.5-4 MB shipped for the three sizes instead of 7-8 MB (see module docstring)

    def _fit(
        self, size: str, cfg: RARConfig, steps: int, codec: VQModel, codec_manifest: dict[str, Any]
    ) -> tuple[RAR, TrainResult]:
        tokens, labels = encode_split(codec, "train")
        return train_rar(cfg, tokens, labels, steps, SEED, **RECIPE, desc=f"{self.name} {size}")

    def _model(
        self,
        net: RAR,
        codec: VQModel,
        codec_manifest: dict[str, Any],
        opts: RARTinyOptions,
        device: torch.device | None = None,
    ) -> RARModel:
        sampler = sampler_from(opts, DEFAULT_SAMPLER)
        if device is None:
            return RARModel(net, codec, "digits16", sampler)
        return RARModel(net, codec, "digits16", sampler, calibration_tokens=lambda: encode_split(codec, "train"))

    def _meta_model(self, cfg: RARConfig, opts: RARTinyOptions) -> RARModel:
        with torch.device("meta"):
            return RARModel(RAR(cfg), VQModel(TOKENIZER), "digits16", sampler_from(opts, DEFAULT_SAMPLER))
