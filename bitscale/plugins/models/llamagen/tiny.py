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
from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.plugins.models.llamagen.gpt import GPT, GPTConfig
from bitscale.plugins.models.llamagen.model import LlamaGenModel
from bitscale.plugins.models.llamagen.training import train_gpt, train_tokenizer
from bitscale.plugins.models.llamagen.vq import VQConfig, VQModel
from bitscale.plugins.models.llamagen.zoo_helpers import (
    manifest_for,
    manifest_matches,
    sampler_from,
    save_grid_png,
    state_hash,
)
from bitscale.zoo import cache

SEED = 0
TOKENIZER_ARTIFACT = "llamagen-tiny/vq"
TOKENIZER = VQConfig(codebook_size=64, codebook_embed_dim=8, ch=32, ch_mult=(1, 1, 2), z_channels=64,
                     num_res_blocks=1)
TOKENIZER_STEPS = 250

_COMMON = dict(vocab_size=TOKENIZER.codebook_size, num_classes=digits.NUM_CLASSES,
               block_size=(digits.SIZE // TOKENIZER.downsample) ** 2, multiple_of=32,
               token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0)
#: Sizes, smallest first: (GPT config, training steps). The largest trains longer: after 600 steps
#: its loss (1.44) was still above d3w128's (1.41); after 800 it is 0.98.
SIZES: dict[str, tuple[GPTConfig, int]] = {
    "d3w64": (GPTConfig(dim=64, n_layer=3, n_head=1, **_COMMON), 600),
    "d3w128": (GPTConfig(dim=128, n_layer=3, n_head=2, **_COMMON), 600),
    "d4w128": (GPTConfig(dim=128, n_layer=4, n_head=2, **_COMMON), 800),
}
#: Training recipe of every size (``train_gpt`` keyword arguments).
RECIPE: dict[str, Any] = {"batch_size": 128, "lr": 3e-3, "label_lr_mult": 10.0}
DEFAULT_SAMPLER: dict[str, Any] = {"cfg": 2.0, "top_k": 0, "top_p": 1.0, "temperature": 1.0}


class LlamaGenTinyOptions(PluginOptions):
    """Options of ``llamagen-tiny``. Step overrides are for tests; the zoo uses the defaults."""

    steps: int | None = None
    tokenizer_steps: int | None = None
    cfg: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None


class LlamaGenTinyFamily(ModelFamily):
    """LlamaGen (raster AR over VQ tokens) at tiny sizes on 16x16 digits."""

    name: ClassVar[str] = "llamagen-tiny"
    sizes: ClassVar[tuple[str, ...]] = tuple(SIZES)
    style: ClassVar[Literal["language", "diffusion"]] = "language"
    Options: ClassVar[type[PluginOptions]] = LlamaGenTinyOptions
    description: ClassVar[str] = "LlamaGen GPT + VQ tokenizer, tiny sizes trained on 16x16 digits (CPU)"
    trainable: ClassVar[bool] = True

    # ------------------------------------------------------------------ training

    def _tokenizer(self, options: LlamaGenTinyOptions) -> tuple[VQModel, dict[str, Any]]:
        """The shared tokenizer, trained first if missing or trained on other data/config."""
        steps = options.tokenizer_steps or TOKENIZER_STEPS
        with cache.locked(TOKENIZER_ARTIFACT):
            found = cache.load_artifact(TOKENIZER_ARTIFACT)
            if found is not None and manifest_matches(found[1], TOKENIZER.to_dict(), SEED, steps):
                state, manifest = found
            else:
                model, result = train_tokenizer(TOKENIZER, digits.load("train").images, steps, SEED,
                                                desc="llamagen-tiny tokenizer")
                state = model.state_dict()
                manifest = manifest_for(TOKENIZER.to_dict(), result, SEED)
                manifest["weights_hash"] = state_hash(state)
                cache.save_artifact(TOKENIZER_ARTIFACT, state, manifest)
        vq = VQModel(TOKENIZER)
        vq.load_state_dict(state)
        return vq.eval(), manifest

    def train(self, size: str, options: PluginOptions, force: bool = False) -> dict[str, Any]:
        """Train (or reuse) the shared tokenizer, then the GPT of ``size``; return the GPT's manifest.

        ``force`` retrains the GPT; the tokenizer is retrained only when missing or stale, so
        forcing every size does not invalidate the sizes trained before.
        """
        opts = self._options(options)
        cfg, default_steps = self._size(size)
        vq, vq_manifest = self._tokenizer(opts)
        name = f"{self.name}/{size}"
        with cache.locked(name):
            manifest = cache.load_manifest(name)
            steps = opts.steps or default_steps
            if not force and self._fresh(manifest, cfg, steps, vq_manifest):
                return manifest
            tokens, labels = encode_split(vq, "train")
            gpt, result = train_gpt(cfg, tokens, labels, steps, SEED, **RECIPE,
                                    desc=f"{self.name} {size}")
            manifest = manifest_for(cfg.to_dict() | {"recipe": RECIPE}, result, SEED)
            manifest["tokenizer_hash"] = vq_manifest["weights_hash"]
            cache.save_artifact(name, gpt.state_dict(), manifest)
            model = LlamaGenModel(gpt, vq, "digits16", sampler_from(opts, DEFAULT_SAMPLER))
            images = model.sample(torch.arange(10).repeat(10), torch.Generator().manual_seed(SEED))
            save_grid_png(images, str(cache.artifact_paths(name)[0].with_suffix(".png")))
            return manifest

    @staticmethod
    def _fresh(manifest: dict[str, Any] | None, cfg: GPTConfig, steps: int, vq_manifest: dict[str, Any]) -> bool:
        """Trained with this config and recipe, on the current tokenizer."""
        return (manifest_matches(manifest, cfg.to_dict() | {"recipe": RECIPE}, SEED, steps)
                and manifest.get("tokenizer_hash") == vq_manifest["weights_hash"])

    # ------------------------------------------------------------------ building

    def build(self, size: str, options: PluginOptions, device: torch.device) -> LlamaGenModel:
        """The trained model of ``size`` on ``device`` (training what is missing); on ``meta``, untrained."""
        opts = self._options(options)
        cfg, _ = self._size(size)
        sampler = sampler_from(opts, DEFAULT_SAMPLER)
        device = torch.device(device)
        if device.type == "meta":
            with device:
                return LlamaGenModel(GPT(cfg), VQModel(TOKENIZER), "digits16", sampler)
        self.train(size, opts)
        vq, _ = self._tokenizer(opts)
        state, _ = cache.load_artifact(f"{self.name}/{size}")
        gpt = GPT(cfg)
        gpt.load_state_dict(state)
        gpt.eval().to(device)
        vq = vq.to(device)
        return LlamaGenModel(gpt, vq, "digits16", sampler, calibration_tokens=lambda: encode_split(vq, "train"))

    def num_params(self, size: str, options: PluginOptions) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in GPT(self._size(size)[0]).parameters())

    def _size(self, size: str) -> tuple[GPTConfig, int]:
        if size not in SIZES:
            from bitscale.harness.errors import ConfigError

            raise ConfigError(f"{self.name} has no size {size!r}; sizes are {', '.join(SIZES)}")
        return SIZES[size]

    def _options(self, options: PluginOptions | None) -> LlamaGenTinyOptions:
        if options is None:
            return LlamaGenTinyOptions()
        if isinstance(options, LlamaGenTinyOptions):
            return options
        return LlamaGenTinyOptions.model_validate(options.model_dump())


@torch.no_grad()
def encode_split(vq: VQModel, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences ``(N, 16)`` and labels of a digits split, on CPU."""
    data = digits.load(split)
    device = next(vq.parameters()).device
    tokens = torch.cat([vq.encode_indices(x.to(device)).cpu() for x in data.images.split(512)])
    return tokens, data.labels
