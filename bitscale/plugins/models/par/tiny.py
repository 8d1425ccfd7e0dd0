"""``par-tiny``: PAR's architecture at tiny sizes, trained by bitscale on 16x16 digits.

It reuses ``llamagen-tiny``'s VQ tokenizer (artifact ``llamagen-tiny/vq``: 64 codes on a 4x4
grid). PAR's 4x variant cuts the official 24x24 grid into 4 regions of 12x12; on the 4x4 grid it
becomes **4 regions of 2x2 tokens** (``ar_token_num`` 4, 3 stand-in tokens): the first 4 tokens
(the top-left token of each region) are generated one by one, then 3 parallel steps of 4 tokens
each, 7 model steps instead of 16. (The 16x variant would leave one token per region, i.e. no
sequential context inside regions at all; it is not trained.) Sizes ``d<layers>w<width>`` with
head_dim 64 as in every official config; each is the artifact ``par-tiny/<size>``.

The generator weights are stored (cached, shipped) as float16 values: the three sizes are 3.5-4 MB
instead of 7-8 MB in float32; the model loads them into float32 and computes in float32, and the
FIDs and sample grids are those of the stored (rounded) weights.

Sampler defaults: cfg 1.5 (the official PAR-XL-4x value), top_k 0, top_p 1.0, temperature 1.0.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from bitscale.data import digits
from bitscale.harness.contracts import PluginOptions
from bitscale.plugins.models.llamagen.options import LlamaGenSamplerOptions
from bitscale.plugins.models.llamagen.tiny import TOKENIZER, LlamaGenTinyFamily, encode_split
from bitscale.plugins.models.llamagen.vq import VQModel
from bitscale.plugins.models.options import sampler_from
from bitscale.plugins.models.par.gpt import PARGPT, PARConfig
from bitscale.plugins.models.par.model import PARModel
from bitscale.plugins.models.par.training import train_par
from bitscale.plugins.models.tiny_family import SEED
from bitscale.zoo.training import TrainResult

_COMMON = dict(
    vocab_size=TOKENIZER.codebook_size,
    num_classes=digits.NUM_CLASSES,
    block_size=(digits.SIZE // TOKENIZER.downsample) ** 2,
    multiple_of=32,
    token_dropout_p=0.0,
    resid_dropout_p=0.0,
    ffn_dropout_p=0.0,
    ar_token_num=4,
    spe_token_num=3,
)
#: Sizes, smallest first: (config, training steps).
SIZES: dict[str, tuple[PARConfig, int]] = {
    "d2w64": (PARConfig(dim=64, n_layer=2, n_head=1, **_COMMON), 400),
    "d3w128": (PARConfig(dim=128, n_layer=3, n_head=2, **_COMMON), 500),
    "d5w128": (PARConfig(dim=128, n_layer=5, n_head=2, **_COMMON), 600),
}
RECIPE: dict[str, Any] = {"batch_size": 64, "lr": 3e-3, "label_lr_mult": 10.0}
#: cfg 1.5, the official PAR-XL-4x value. At llamagen-tiny's 2.0 the two smaller sizes scored the same
#: (FID 59.6 vs 59.7, 3 seeds); measured on d2w64 (2 seeds): cfg 1.5 67.9, 2.0 ~59, 3.0 74.5, 4.0 103.3.
DEFAULT_SAMPLER: dict[str, Any] = {"cfg": 1.5, "top_k": 0, "top_p": 1.0, "temperature": 1.0}


class PARTinyOptions(LlamaGenSamplerOptions):
    """Options of ``par-tiny``. Step overrides are for tests; the zoo uses the defaults."""

    steps: int | None = None
    tokenizer_steps: int | None = None


class PARTinyFamily(LlamaGenTinyFamily):
    """PAR (LlamaGen GPT with parallel region decoding) at tiny sizes on 16x16 digits.

    The shared tokenizer (training, caching, freshness) is llamagen-tiny's: only the generator differs.
    """

    name: ClassVar[str] = "par-tiny"
    sizes: ClassVar[tuple[str, ...]] = tuple(SIZES)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = PARTinyOptions
    description: ClassVar[str] = "PAR-4x GPT on llamagen-tiny's VQ tokenizer, tiny sizes trained on 16x16 digits (CPU)"
    size_configs = SIZES
    recipe = RECIPE
    network = PARGPT
    weights_dtype = torch.float16  # 3.5-4 MB shipped for the three sizes instead of 7-8 MB (see module docstring)

    def _fit(
        self, size: str, cfg: PARConfig, steps: int, codec: VQModel, codec_manifest: dict[str, Any]
    ) -> tuple[PARGPT, TrainResult]:
        tokens, labels = encode_split(codec, "train")
        return train_par(cfg, tokens, labels, steps, SEED, **RECIPE, desc=f"{self.name} {size}")

    def _model(
        self,
        net: PARGPT,
        codec: VQModel,
        codec_manifest: dict[str, Any],
        opts: PARTinyOptions,
        device: torch.device | None = None,
    ) -> PARModel:
        sampler = sampler_from(opts, DEFAULT_SAMPLER)
        if device is None:
            return PARModel(net, codec, "digits16", sampler)
        return PARModel(net, codec, "digits16", sampler, calibration_tokens=lambda: encode_split(codec, "train"))

    def _meta_model(self, cfg: PARConfig, opts: PARTinyOptions) -> PARModel:
        with torch.device("meta"):
            return PARModel(PARGPT(cfg), VQModel(TOKENIZER), "digits16", sampler_from(opts, DEFAULT_SAMPLER))
