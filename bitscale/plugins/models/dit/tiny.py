"""``dit-tiny``: DiT's architecture at tiny sizes, trained by bitscale on 16x16 digits.

A tiny ``AutoencoderKL`` (two downsamplings) maps digits to 4x4x4 latents; DiTs of three sizes
(``d<depth>w<width>``, patch 1 so 16 tokens as for DiT-XL/2 at 64px, head_dim 64) denoise them.
The autoencoder is trained once and shared (artifact ``dit-tiny/vae``, whose manifest records the
measured latent scale, 1 / std of the latents, the recipe that gave Stable Diffusion's 0.18215);
each DiT is the artifact ``dit-tiny/<size>`` and records the autoencoder it was trained on
(otherwise it is stale). The training recipe departs from the official one to fit a CPU budget
(see ``training.py``): min-SNR-5 loss weighting and a 30x learning rate on the label table.

Sampler defaults: DDIM with 50 respaced steps and cfg 1.5 on the first 3 latent channels, a
fast stand-in for the official 250-step DDPM (``sampler: ddpm``, ``steps: 250`` restores it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from bitscale.data import digits
from bitscale.harness.contracts import ModelFamily, PluginOptions
from bitscale.harness.errors import ConfigError
from bitscale.plugins.models.dit.dit import DiT, DiTConfig
from bitscale.plugins.models.dit.model import DiTModel
from bitscale.plugins.models.dit.training import train_dit, train_vae
from bitscale.plugins.models.dit.vae import TINY_VAE_CONFIG, build_vae, encode_latents
from bitscale.plugins.models.llamagen.zoo_helpers import (
    manifest_for,
    manifest_matches,
    sampler_from,
    save_grid_png,
    state_hash,
)
from bitscale.zoo import cache

SEED = 0
VAE_ARTIFACT = "dit-tiny/vae"
VAE_STEPS = 200
VAE_KL_WEIGHT = 1e-3
_VAE_RECORD = {**TINY_VAE_CONFIG, "kl_weight": VAE_KL_WEIGHT}  # what the autoencoder manifest records
_COMMON = dict(input_size=digits.SIZE // 4, patch_size=1, in_channels=4, num_classes=digits.NUM_CLASSES)
#: Sizes, smallest first: (DiT config, training steps).
SIZES: dict[str, tuple[DiTConfig, int]] = {
    "d3w64": (DiTConfig(hidden_size=64, depth=3, num_heads=1, **_COMMON), 1000),
    "d3w128": (DiTConfig(hidden_size=128, depth=3, num_heads=2, **_COMMON), 1000),
    "d4w128": (DiTConfig(hidden_size=128, depth=4, num_heads=2, **_COMMON), 1000),
}
#: Training recipe of every size (``train_dit`` keyword arguments).
RECIPE: dict[str, Any] = {"batch_size": 64, "lr": 2e-3, "ema_decay": 0.995, "label_lr_mult": 30.0, "snr_gamma": 5.0}
DEFAULT_SAMPLER: dict[str, Any] = {"sampler": "ddim", "steps": 50, "cfg": 1.5}


class DiTTinyOptions(PluginOptions):
    """Options of ``dit-tiny``. Step overrides are for tests; the zoo uses the defaults."""

    steps: int | None = None
    vae_steps: int | None = None
    sampler: Literal["ddpm", "ddim"] | None = None
    sampling_steps: int | None = None
    cfg: float | None = None


def sampler_settings(opts: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Sampler defaults with the user's overrides (``sampling_steps`` sets ``steps``)."""
    out = sampler_from(opts, {k: v for k, v in defaults.items() if k != "steps"}) | {"steps": defaults["steps"]}
    if getattr(opts, "sampling_steps", None) is not None:
        out["steps"] = opts.sampling_steps
    return out


class DiTTinyFamily(ModelFamily):
    """DiT (latent diffusion transformer) at tiny sizes on 16x16 digits."""

    name: ClassVar[str] = "dit-tiny"
    sizes: ClassVar[tuple[str, ...]] = tuple(SIZES)
    style: ClassVar[Literal["language", "diffusion"]] = "diffusion"
    Options: ClassVar[type[PluginOptions]] = DiTTinyOptions
    description: ClassVar[str] = "DiT + KL autoencoder, tiny sizes trained on 16x16 digits (CPU)"
    trainable: ClassVar[bool] = True

    # ------------------------------------------------------------------ training

    def _vae(self, opts: DiTTinyOptions) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The shared autoencoder, trained first if missing or trained on other data/config."""
        steps = opts.vae_steps or VAE_STEPS
        with cache.locked(VAE_ARTIFACT):
            found = cache.load_artifact(VAE_ARTIFACT)
            if found is not None and manifest_matches(found[1], _VAE_RECORD, SEED, steps):
                state, manifest = found
            else:
                images = digits.load("train").images
                vae, result = train_vae(TINY_VAE_CONFIG, images, steps, SEED, kl_weight=VAE_KL_WEIGHT,
                                        desc="dit-tiny autoencoder")
                mean, std = encode_latents(vae, images)
                state = vae.state_dict()
                manifest = manifest_for(_VAE_RECORD, result, SEED)
                manifest["latent_scale"] = float(1.0 / (mean + std * torch.randn_like(mean)).std())
                manifest["weights_hash"] = state_hash(state)
                cache.save_artifact(VAE_ARTIFACT, state, manifest)
        vae = build_vae(TINY_VAE_CONFIG)
        vae.load_state_dict(state)
        return vae.eval().requires_grad_(False), manifest

    def train(self, size: str, options: PluginOptions, force: bool = False) -> dict[str, Any]:
        """Train (or reuse) the shared autoencoder, then the DiT of ``size``; return the DiT's manifest.

        ``force`` retrains the DiT; the autoencoder is retrained only when missing or stale.
        """
        opts = self._options(options)
        cfg, default_steps = self._size(size)
        vae, vae_manifest = self._vae(opts)
        name = f"{self.name}/{size}"
        with cache.locked(name):
            manifest = cache.load_manifest(name)
            steps = opts.steps or default_steps
            if not force and self._fresh(manifest, cfg, steps, vae_manifest):
                return manifest
            data = digits.load("train")
            mean, std = encode_latents(vae, data.images)
            scale = vae_manifest["latent_scale"]
            dit, result = train_dit(cfg, mean, std, data.labels, scale, steps, SEED, **RECIPE,
                                    desc=f"{self.name} {size}")
            manifest = manifest_for(cfg.to_dict() | {"recipe": RECIPE}, result, SEED)
            manifest["vae_hash"] = vae_manifest["weights_hash"]
            cache.save_artifact(name, dit.state_dict(), manifest)
            model = DiTModel(dit, vae, "digits16", sampler_settings(opts, DEFAULT_SAMPLER), scale)
            images = model.sample(torch.arange(10).repeat(10), torch.Generator().manual_seed(SEED))
            save_grid_png(images, str(cache.artifact_paths(name)[0].with_suffix(".png")))
            return manifest

    @staticmethod
    def _fresh(manifest: dict[str, Any] | None, cfg: DiTConfig, steps: int, vae_manifest: dict[str, Any]) -> bool:
        """Trained with this config and recipe, on the current autoencoder."""
        return (manifest_matches(manifest, cfg.to_dict() | {"recipe": RECIPE}, SEED, steps)
                and manifest.get("vae_hash") == vae_manifest["weights_hash"])

    # ------------------------------------------------------------------ building

    def build(self, size: str, options: PluginOptions, device: torch.device) -> DiTModel:
        """The trained model of ``size`` on ``device`` (training what is missing); on ``meta``, untrained."""
        opts = self._options(options)
        cfg, _ = self._size(size)
        sampler = sampler_settings(opts, DEFAULT_SAMPLER)
        device = torch.device(device)
        if device.type == "meta":
            with device:
                return DiTModel(DiT(cfg), torch.nn.Identity(), "digits16", sampler, 1.0)
        self.train(size, opts)
        vae, vae_manifest = self._vae(opts)
        state, _ = cache.load_artifact(f"{self.name}/{size}")
        dit = DiT(cfg)
        dit.load_state_dict(state)
        dit = dit.eval().to(device)
        vae = vae.to(device)
        scale = vae_manifest["latent_scale"]

        def latents() -> tuple[torch.Tensor, torch.Tensor]:
            data = digits.load("train")
            mean, std = encode_latents(vae, data.images.to(device))
            # One fixed posterior sample per image: the same calibration pool in every run.
            noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(SEED)).to(device)
            return (scale * (mean + std * noise)).cpu(), data.labels

        return DiTModel(dit, vae, "digits16", sampler, scale, calibration_latents=latents)

    def num_params(self, size: str, options: PluginOptions) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in DiT(self._size(size)[0]).parameters())

    def _size(self, size: str) -> tuple[DiTConfig, int]:
        if size not in SIZES:
            raise ConfigError(f"{self.name} has no size {size!r}; sizes are {', '.join(SIZES)}")
        return SIZES[size]

    def _options(self, options: PluginOptions | None) -> DiTTinyOptions:
        if options is None:
            return DiTTinyOptions()
        if isinstance(options, DiTTinyOptions):
            return options
        return DiTTinyOptions.model_validate(options.model_dump())
