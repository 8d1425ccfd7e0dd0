"""``llamagen-tiny``: LlamaGen's architecture at tiny sizes, trained by bitscale on 16x16 digits.

A VQ tokenizer (``ch=32``, downsampling 4, 64 codes of dim 8) turns each digit into a 4x4 token
grid; GPTs of three sizes (``d<layers>w<width>``, head_dim 64 as in every official config) model
the 16 tokens after a class token. Depth matters more than width here: in this training budget
two-layer GPTs barely follow the class label, three-layer ones do (helped by a 10x learning
rate on the class table, see ``training.py``). The tokenizer is trained once and shared
(artifact ``llamagen-tiny/vq``); each GPT is the artifact ``llamagen-tiny/<size>``, whose
manifest records the tokenizer it was trained on (a GPT trained on another tokenizer is stale
and retrained).

Sampler defaults: cfg 2.0 (the official B/L value), top_k 0, top_p 1.0, temperature 1.0.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from bitscale.data import digits
from bitscale.harness.contracts import PluginOptions
from bitscale.plugins.models.llamagen.gpt import GPT, GPTConfig
from bitscale.plugins.models.llamagen.model import LlamaGenModel
from bitscale.plugins.models.llamagen.options import LlamaGenSamplerOptions
from bitscale.plugins.models.llamagen.training import train_gpt, train_tokenizer
from bitscale.plugins.models.llamagen.vq import VQConfig, VQModel
from bitscale.plugins.models.options import sampler_from
from bitscale.plugins.models.tiny_family import SEED, TwoStageTinyFamily
from bitscale.zoo.manifest import manifest_for
from bitscale.zoo.training import TrainResult

TOKENIZER_ARTIFACT = "llamagen-tiny/vq"
TOKENIZER = VQConfig(codebook_size=64, codebook_embed_dim=8, ch=32, ch_mult=(1, 1, 2), z_channels=64, num_res_blocks=1)
TOKENIZER_STEPS = 250

#: Dropout is the official one (token, residual and FFN dropout 0.1, ``GPTConfig``'s defaults).
#: Without it (the recipe before), 1,437 training sequences of 16 tokens are memorised, more so the
#: larger the GPT: held-out NLL rose with size (1.83 / 1.94 / 2.16 while training NLL fell to 0.90),
#: and FID ranked the sizes by how far each had got from generalising to memorising (38.7 / 46.7 /
#: 30.7, the middle size worst on every seed), not by their capacity.
_COMMON = dict(
    vocab_size=TOKENIZER.codebook_size,
    num_classes=digits.NUM_CLASSES,
    block_size=(digits.SIZE // TOKENIZER.downsample) ** 2,
    multiple_of=32,
)
#: Sizes, smallest first: (GPT config, training steps). The largest trains longer (a deeper net
#: starts slower: at step 200 its held-out NLL is d3w64's, 2.32 vs 2.31).
SIZES: dict[str, tuple[GPTConfig, int]] = {
    "d3w64": (GPTConfig(dim=64, n_layer=3, n_head=1, **_COMMON), 600),
    "d3w128": (GPTConfig(dim=128, n_layer=3, n_head=2, **_COMMON), 600),
    "d4w128": (GPTConfig(dim=128, n_layer=4, n_head=2, **_COMMON), 800),
}
#: Training recipe of every size (``train_gpt`` keyword arguments).
RECIPE: dict[str, Any] = {"batch_size": 128, "lr": 3e-3, "label_lr_mult": 10.0}
DEFAULT_SAMPLER: dict[str, Any] = {"cfg": 2.0, "top_k": 0, "top_p": 1.0, "temperature": 1.0}


class LlamaGenTinyOptions(LlamaGenSamplerOptions):
    """Options of ``llamagen-tiny``. Step overrides are for tests; the zoo uses the defaults."""

    steps: int | None = None
    tokenizer_steps: int | None = None


class LlamaGenTinyFamily(TwoStageTinyFamily):
    """LlamaGen (raster AR over VQ tokens) at tiny sizes on 16x16 digits."""

    name: ClassVar[str] = "llamagen-tiny"
    sizes: ClassVar[tuple[str, ...]] = tuple(SIZES)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = LlamaGenTinyOptions
    description: ClassVar[str] = "LlamaGen GPT + VQ tokenizer, tiny sizes trained on 16x16 digits (CPU)"
    # Its FIDs spread far more between seeds than var-tiny's: sd/mean over 3 seeds of 16,000 samples
    # 1.4% / 2.8% / 1.9% (d3w64 / d3w128 / d4w128), but 3.1% / 5.5% / 5.8% over 24 blocks of 2,000
    # (docs/design.md, "Measurement protocol"). 16,000 is the smallest measured count under 3%.
    default_num_samples: ClassVar[int] = 16_000
    size_configs = SIZES
    recipe = RECIPE
    network = GPT
    codec_hash_key = "tokenizer_hash"
    codec_artifact = TOKENIZER_ARTIFACT
    codec_record = TOKENIZER.to_dict()
    codec_steps = TOKENIZER_STEPS
    codec_steps_option = "tokenizer_steps"

    def _codec(self, opts: LlamaGenTinyOptions) -> tuple[VQModel, dict[str, Any]]:
        """The shared tokenizer, trained first if missing or trained on other data/config."""
        steps = self._codec_spec(opts)[2]

        def fit() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            model, result = train_tokenizer(
                TOKENIZER, digits.load("train").images, steps, SEED, desc="llamagen-tiny tokenizer"
            )
            return model.state_dict(), manifest_for(TOKENIZER.to_dict(), result, SEED)

        state, manifest = self._cached_codec(opts, fit)
        vq = VQModel(TOKENIZER)
        vq.load_state_dict(state)
        return vq.eval(), manifest

    def _fit(
        self, size: str, cfg: GPTConfig, steps: int, codec: VQModel, codec_manifest: dict[str, Any]
    ) -> tuple[GPT, TrainResult]:
        tokens, labels = encode_split(codec, "train")
        return train_gpt(cfg, tokens, labels, steps, SEED, **RECIPE, desc=f"{self.name} {size}")

    def _model(
        self,
        net: GPT,
        codec: VQModel,
        codec_manifest: dict[str, Any],
        opts: LlamaGenTinyOptions,
        device: torch.device | None = None,
    ) -> LlamaGenModel:
        sampler = sampler_from(opts, DEFAULT_SAMPLER)
        if device is None:
            return LlamaGenModel(net, codec, "digits16", sampler)
        return LlamaGenModel(net, codec, "digits16", sampler, calibration_tokens=lambda: encode_split(codec, "train"))

    def _meta_model(self, cfg: GPTConfig, opts: LlamaGenTinyOptions) -> LlamaGenModel:
        with torch.device("meta"):
            return LlamaGenModel(GPT(cfg), VQModel(TOKENIZER), "digits16", sampler_from(opts, DEFAULT_SAMPLER))


@torch.no_grad()
def encode_split(vq: VQModel, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences ``(N, 16)`` and labels of a digits split, on CPU."""
    data = digits.load(split)
    device = next(vq.parameters()).device
    tokens = torch.cat([vq.encode_indices(x.to(device)).cpu() for x in data.images.split(512)])
    return tokens, data.labels
