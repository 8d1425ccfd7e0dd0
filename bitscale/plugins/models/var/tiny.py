"""``var-tiny``: the VAR architecture at tiny sizes on 16x16 digits, trained by bitscale itself.

One VQ-VAE (artifact ``var-tiny/vqvae``) is shared by every size; each transformer
(``var-tiny/d2``, ...) is trained on its tokens. Everything is deterministic (fixed seed), cached
through ``bitscale.harness.artifacts.cache`` under a file lock, and retrained when the cached manifest no
longer matches the configuration, the recipe or the data.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from bitscale.data import digits
from bitscale.harness.artifacts import cache
from bitscale.harness.contracts import PluginOptions, TrainableFamily
from bitscale.harness.errors import BitscaleError
from bitscale.harness.threads import single_thread
from bitscale.plugins.models.checkpoint import load_strict
from bitscale.plugins.models.var.images import digits_source
from bitscale.plugins.models.var.model import VarModel
from bitscale.plugins.models.var.train import tokenize, train_var, train_vqvae
from bitscale.plugins.models.var.transformer import VAR, VARConfig
from bitscale.plugins.models.var.vqvae import VQVAE, VQVAEConfig
from bitscale.zoo.manifest import jsonable, manifest_for, manifest_matches
from bitscale.zoo.training import TrainResult, param_count
from bitscale.zoo.units import TrainingUnit, staged_units

#: Bump when the training recipe changes: cached weights of another version are retrained.
RECIPE_VERSION = 2
SEED = 0
#: Sized so that the whole zoo (VQ-VAE + 3 sizes) costs about 150 CPU-seconds on one thread.
VAE_STEPS = 250
VAR_STEPS = 400
#: Optimisation settings (passed to ``train_vqvae`` / ``train_var`` and recorded in manifests).
VAE_RECIPE: dict[str, Any] = {"batch_size": 32, "lr": 2e-3}
VAR_RECIPE: dict[str, Any] = {"batch_size": 64, "lr": 2e-3, "weight_decay": 0.05}

#: 16x16 digits -> 4x4 latents (downsample 4), scales 1, 2, 4 (L = 21 tokens), 256 codes.
TINY_VAE = VQVAEConfig(vocab_size=256, Cvae=16, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, patch_nums=(1, 2, 4))
#: Like upstream (``depth`` heads, width proportional to depth) with 16-wide heads instead of 64.
WIDTH_PER_DEPTH = 16
SIZES = ("d2", "d4", "d6")

#: Sampler for the tiny zoo. Upstream keeps the top 900 of 4096 codes (22%) with top-p 0.96 and
#: cfg 1.5; with 256 codes the same fraction is top-k 56, rounded to 64; cfg and top-p are kept.
TINY_SAMPLER: dict[str, Any] = {"cfg": 1.5, "top_k": 64, "top_p": 0.96}


class VarTinyOptions(PluginOptions):
    """Training lengths (non-default values train separately cached models, e.g. for tests)."""

    vae_steps: int = Field(VAE_STEPS, ge=1)
    steps: int = Field(VAR_STEPS, ge=1)
    calibration_batch_size: int = Field(32, ge=1)


def _cached(name: str, config: dict[str, Any], steps: int) -> bool:
    """Artifact ``name`` is shipped or on disk, trained with ``config`` for ``steps`` (its weights are not read)."""
    return manifest_matches(cache.load_manifest(name), config, SEED, steps) and cache.has_weights(name)


def tiny_var_config(size: str) -> VARConfig:
    """The transformer of ``size`` (``d<depth>``)."""
    if size not in SIZES:
        raise BitscaleError(f"var-tiny has sizes {', '.join(SIZES)}, not {size!r}")
    depth = int(size[1:])
    return VARConfig(
        depth=depth,
        embed_dim=WIDTH_PER_DEPTH * depth,
        num_heads=depth,
        vocab_size=TINY_VAE.vocab_size,
        Cvae=TINY_VAE.Cvae,
        num_classes=digits.NUM_CLASSES,
        patch_nums=TINY_VAE.patch_nums,
        drop_path_rate=0.0,
    )


class VarTinyFamily(TrainableFamily):
    """VAR on 16x16 digits at sizes d2 < d4 < d6 (50k, 327k, 1.05M parameters); bitscale trains them.

    Sampler defaults (``TINY_SAMPLER``): cfg 1.5, top-k 64, top-p 0.96, i.e. upstream's FID
    settings with top-k scaled to the 256-code vocabulary (900/4096 is about 22%; 22% of 256 is 56,
    rounded up to 64). Sample grids and VQ-VAE reconstructions are saved as PNGs beside the weights.
    """

    name = "var-tiny"
    sizes = SIZES
    style = "language"
    Options = VarTinyOptions
    description = "VAR next-scale prediction at tiny sizes on 16x16 digits (trained by bitscale, CPU)"

    # ----------------------------------------------------------------- names and configs

    def artifact_names(self, size: str, options: VarTinyOptions) -> tuple[str, str]:
        """(VQ-VAE, transformer) artifact names; defaults get the plain names."""
        vae = "var-tiny/vqvae" if options.vae_steps == VAE_STEPS else f"var-tiny/vqvae-s{options.vae_steps}"
        if options.vae_steps == VAE_STEPS and options.steps == VAR_STEPS:
            return vae, f"var-tiny/{size}"
        return vae, f"var-tiny/{size}-s{options.steps}-v{options.vae_steps}"

    def _vae_config(self, options: VarTinyOptions) -> dict[str, Any]:
        recipe = {"version": RECIPE_VERSION, **VAE_RECIPE}
        return jsonable({"vae": TINY_VAE.to_dict(), "recipe": recipe})

    def _var_config(self, size: str, options: VarTinyOptions) -> dict[str, Any]:
        recipe = {"version": RECIPE_VERSION, **VAR_RECIPE}
        return jsonable(
            {
                "var": tiny_var_config(size).to_dict(),
                "recipe": recipe,
                "tokenizer": self._vae_config(options),
                "vae_steps": options.vae_steps,
            }
        )

    def weights_id(self, size: str, options: PluginOptions) -> str | None:
        """Hash of the VQ-VAE's and the transformer's weight files; None until both are trained."""
        assert isinstance(options, VarTinyOptions)
        vae, name = self.artifact_names(size, options)
        vae_config, config = self._vae_config(options), self._var_config(size, options)
        return cache.weights_digest(
            [
                (vae, lambda m: manifest_matches(m, vae_config, SEED, options.vae_steps)),
                (name, lambda m: manifest_matches(m, config, SEED, options.steps)),
            ]
        )

    def artifacts(self, size: str, options: PluginOptions) -> list[str]:
        """The artifacts ``size`` loads: the VQ-VAE, then the transformer."""
        assert isinstance(options, VarTinyOptions)
        return list(self.artifact_names(size, options))

    # ----------------------------------------------------------------- training

    def _ensure_vae(self, options: VarTinyOptions) -> tuple[VQVAE, dict[str, Any]]:
        name, _ = self.artifact_names(self.sizes[0], options)
        config = self._vae_config(options)
        with cache.locked(name), single_thread():
            found = cache.load_fresh(name, lambda m: manifest_matches(m, config, SEED, options.vae_steps))
            if found is None:
                data = digits.load("train")
                vae, result = train_vqvae(
                    TINY_VAE, data.images, options.vae_steps, seed=SEED, desc="var-tiny vqvae", **VAE_RECIPE
                )
                manifest = self._manifest(config, result, vae)
                manifest = cache.save_artifact(name, vae.state_dict(), manifest)
                self._save_reconstructions(vae, name)
                return vae, manifest
        vae = VQVAE(TINY_VAE)
        load_strict(vae, found[0], cache.artifact_paths(name)[0])
        return vae.eval(), found[1]

    def train(self, size: str, options: PluginOptions, force: bool = False) -> dict[str, Any]:
        """Train ``size`` (and the shared VQ-VAE if missing); reuse cached weights unless ``force``.

        ``force`` retrains the transformer; the VQ-VAE is retrained only when missing or stale
        (training is deterministic, so retraining it would give the same weights).
        """
        assert isinstance(options, VarTinyOptions)
        config = self._var_config(size, options)
        _, name = self.artifact_names(size, options)
        with cache.locked(name), single_thread():
            if not force and _cached(name, config, options.steps):
                return cache.load_manifest(name)
            vae, _ = self._ensure_vae(options)
            data = digits.load("train")
            tokens = tokenize(vae, data.images, data.labels)
            var, result = train_var(
                tiny_var_config(size), tokens, options.steps, seed=SEED, desc=f"var-tiny {size}", **VAR_RECIPE
            )
            manifest = cache.save_artifact(name, var.state_dict(), self._manifest(config, result, var))
            self._save_samples(var, vae, name)
            return manifest

    def train_shared(self, options: PluginOptions) -> dict[str, Any]:
        """Train (or reuse) the VQ-VAE alone; return its manifest. Parallel training runs it before the sizes."""
        assert isinstance(options, VarTinyOptions)
        return self._ensure_vae(options)[1]

    def training_units(self, sizes: list[str], options: PluginOptions, force: bool = False) -> list[TrainingUnit]:
        """The VQ-VAE if it is missing or stale and a size needs it, then each of ``sizes`` that is missing or stale
        (each of them with ``force``)."""
        assert isinstance(options, VarTinyOptions)
        vae = self.artifact_names(self.sizes[0], options)[0]
        names = {s: self.artifact_names(s, options)[1] for s in sizes}
        todo = {s: n for s, n in names.items() if force or not _cached(n, self._var_config(s, options), options.steps)}
        shared = vae if todo and not _cached(vae, self._vae_config(options), options.vae_steps) else None
        # Parameters x steps: a fair guess of the transformers' relative CPU time (for the scheduling order).
        return staged_units(self, options, shared, todo, force, lambda s: self.num_params(s, options) * options.steps)

    @staticmethod
    def _manifest(config: dict[str, Any], result: TrainResult, module: torch.nn.Module) -> dict[str, Any]:
        manifest = manifest_for(config, result, SEED)
        # var-tiny manifests have always called the first loss ``first_loss``: the cached ones keep their key.
        manifest["first_loss"] = manifest.pop("initial_loss")
        return manifest | {
            "threads": torch.get_num_threads(),
            "num_params": sum(p.numel() for p in module.parameters()),
            "torch": torch.__version__,
        }

    @staticmethod
    def _save_reconstructions(vae: VQVAE, name: str) -> None:
        """Test digits (odd rows) over their reconstructions (even rows), for a look."""
        from torchvision.utils import save_image

        test = digits.load("test").images[:64]
        with torch.no_grad():
            rec = vae.idx_to_img(vae.img_to_idx(test))
        rows = torch.stack([test.view(4, 16, 3, 16, 16), rec.view(4, 16, 3, 16, 16)], 1).reshape(-1, 3, 16, 16)
        path = cache.artifact_paths(name)[0].with_name(name.rsplit("/", 1)[-1] + "-recon.png")
        save_image(rows * 0.5 + 0.5, str(path), nrow=16)

    @staticmethod
    def _save_samples(var: VAR, vae: VQVAE, name: str) -> None:
        """A 10x10 grid (one row per class) drawn with the default sampler and seed 0."""
        from torchvision.utils import save_image

        model = VarModel(var, vae, "digits16", TINY_SAMPLER, None)
        labels = torch.arange(digits.NUM_CLASSES).repeat_interleave(10)
        images = model.sample(labels, torch.Generator().manual_seed(0))
        path = cache.artifact_paths(name)[0].with_name(name.rsplit("/", 1)[-1] + "-samples.png")
        save_image(images.float() / 255, str(path), nrow=10)

    # ----------------------------------------------------------------- building

    def build(self, size: str, options: PluginOptions, device: torch.device) -> VarModel:
        """The trained model of ``size`` (trained now if missing); on ``meta``, the untrained architecture."""
        assert isinstance(options, VarTinyOptions)
        device = torch.device(device)
        config = tiny_var_config(size)
        if device.type == "meta":
            with torch.device("meta"):
                var, vae = VAR(config, init=False), VQVAE(TINY_VAE)
        else:
            self.train(size, options)
            vae_name, name = self.artifact_names(size, options)
            var, vae = VAR(config, init=False), VQVAE(TINY_VAE)
            for module, artifact in ((var, name), (vae, vae_name)):
                found = cache.load_artifact(artifact)
                if found is None:  # deleted between train() and here
                    raise BitscaleError(f"cached {artifact} disappeared from {cache.cache_dir()}; run again")
                load_strict(module, found[0], cache.artifact_paths(artifact)[0])
            var, vae = var.to(device), vae.to(device)
        # On meta (parameter counts while planning) nothing is read: the digits load in seconds.
        source = None if device.type == "meta" else digits_source("train")
        return VarModel(var, vae, "digits16", TINY_SAMPLER, source, options.calibration_batch_size)

    def num_params(self, size: str, options: PluginOptions) -> int:
        """Transformer parameters of ``size``, from the architecture alone (never trains)."""
        return param_count(lambda: VAR(tiny_var_config(size), init=False))
