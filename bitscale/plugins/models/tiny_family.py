"""A tiny-zoo family in two stages: a codec trained once and shared, then a generator per size.

The codec (LlamaGen's VQ tokenizer, DiT's autoencoder) is one artifact shared by every size;
each generator is the artifact ``<family>/<size>`` (plus any step overrides) and records the codec's weights hash in its
manifest, so a generator trained on another codec is stale and retrained. Subclasses say how to
train and wrap their two networks; caching, freshness, the sample grid and loading live here.
(``var-tiny`` names its artifacts per step count and versions its recipe, so it stays apart.)
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from bitscale.harness.artifacts import cache
from bitscale.harness.contracts import GenerativeModel, PluginOptions, TrainableFamily
from bitscale.harness.threads import single_thread
from bitscale.plugins.models.options import check_size, coerce_options
from bitscale.zoo.images import save_grid_png
from bitscale.zoo.manifest import manifest_for, manifest_matches, state_hash
from bitscale.zoo.training import TrainResult, param_count
from bitscale.zoo.units import TrainingUnit, staged_units

#: Every artifact of these families trains from this seed.
SEED = 0

State = dict[str, torch.Tensor]


class TwoStageTinyFamily(TrainableFamily):
    """Base of ``llamagen-tiny`` and ``dit-tiny``; subclasses set the class attributes and hooks below."""

    #: Sizes, smallest first: (generator config, default training steps).
    size_configs: ClassVar[dict[str, tuple[Any, int]]]
    #: Keyword arguments of the generator's training function, recorded in its manifest.
    recipe: ClassVar[dict[str, Any]]
    #: The generator's class, built from a size's config.
    network: ClassVar[Callable[[Any], nn.Module]]
    #: Manifest key under which a generator records the weights hash of its codec.
    codec_hash_key: ClassVar[str]
    #: The codec's artifact, what its manifest records as config, its default training steps and
    #: the option that overrides them.
    codec_artifact: ClassVar[str]
    codec_record: ClassVar[dict[str, Any]]
    codec_steps: ClassVar[int]
    codec_steps_option: ClassVar[str]
    #: Store the generator's floating-point weights in this dtype (None: as trained, float32). The model
    #: computes in float32 either way, on the rounded weights; it halves a family's shipped bytes.
    weights_dtype: ClassVar[torch.dtype | None] = None

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    def _codec(self, opts: Any) -> tuple[nn.Module, dict[str, Any]]:
        """The shared codec in eval mode and its manifest (see ``_cached_codec``)."""

    @abstractmethod
    def _fit(
        self, size: str, cfg: Any, steps: int, codec: nn.Module, codec_manifest: dict[str, Any]
    ) -> tuple[nn.Module, TrainResult]:
        """Train the generator of ``size`` on the codec's codes of the digits train split."""

    @abstractmethod
    def _model(
        self,
        net: nn.Module,
        codec: nn.Module,
        codec_manifest: dict[str, Any],
        opts: Any,
        device: torch.device | None = None,
    ) -> GenerativeModel:
        """The trained networks as a model; with ``device``, for the harness (calibration data there)."""

    @abstractmethod
    def _meta_model(self, cfg: Any, opts: Any) -> GenerativeModel:
        """The untrained model on the meta device (parameter counts; nothing is trained or read)."""

    # ------------------------------------------------------------------ training

    def _cached_codec(self, opts: Any, fit: Callable[[], tuple[State, dict[str, Any]]]) -> tuple[State, dict[str, Any]]:
        """(state, manifest) of the codec: the cached one if trained as ``_codec_spec`` says, else ``fit()``'s,
        saved with its weights hash."""
        artifact, record, steps = self._codec_spec(opts)
        with cache.locked(artifact), single_thread():
            found = cache.load_fresh(artifact, lambda m: manifest_matches(m, record, SEED, steps))
            if found is not None:
                return found
            state, manifest = fit()
            manifest["weights_hash"] = state_hash(state)
            manifest = cache.save_artifact(artifact, state, manifest)
            return state, manifest

    def train(self, size: str, options: PluginOptions, force: bool = False) -> dict[str, Any]:
        """Train (or reuse) the shared codec, then the generator of ``size``; return the generator's manifest.

        ``force`` retrains the generator; the codec is retrained only when missing or stale, so
        forcing every size does not invalidate the sizes trained before.
        """
        opts = self._options(options)
        cfg, default_steps = self._size(size)
        codec, codec_manifest = self._codec(opts)
        name = self._artifact(size, opts)
        with cache.locked(name), single_thread():  # encoding the data and sampling the grid too
            manifest = cache.load_manifest(name)
            steps = opts.steps or default_steps
            if not force and self._fresh(manifest, cfg, steps, codec_manifest) and cache.has_weights(name):
                return manifest
            net, result = self._fit(size, cfg, steps, codec, codec_manifest)
            state = stored_state(net, self.weights_dtype)
            manifest = manifest_for(self._record(cfg), result, SEED)
            manifest[self.codec_hash_key] = codec_manifest["weights_hash"]
            manifest = cache.save_artifact(name, state, manifest)
            model = self._model(net, codec, codec_manifest, opts)
            images = model.sample(torch.arange(10).repeat(10), torch.Generator().manual_seed(SEED))
            save_grid_png(images, cache.artifact_paths(name)[0].with_suffix(".png"))
            return manifest

    def train_shared(self, options: PluginOptions) -> dict[str, Any]:
        """Train (or reuse) the codec alone; return its manifest. Parallel training runs it before the sizes."""
        return self._codec(self._options(options))[1]

    def training_units(self, sizes: list[str], options: PluginOptions, force: bool = False) -> list[TrainingUnit]:
        """The codec if it is missing or stale, then each of ``sizes`` that is (each of them with ``force``)."""
        opts = self._options(options)
        artifact, record, steps = self._codec_spec(opts)
        codec = cache.load_manifest(artifact)
        if not (manifest_matches(codec, record, SEED, steps) and cache.has_weights(artifact)):
            codec = None  # retrained, so every size trained on it is stale

        def steps_of(size: str) -> int:
            return opts.steps or self._size(size)[1]

        def stale(size: str) -> bool:
            name = self._artifact(size, opts)
            return (
                force
                or codec is None
                or not self._fresh(cache.load_manifest(name), self._size(size)[0], steps_of(size), codec)
                or not cache.has_weights(name)
            )

        todo = {s: self._artifact(s, opts) for s in sizes if stale(s)}
        shared = artifact if todo and codec is None else None
        # Parameters x steps: a fair guess of the generators' relative CPU time (for the scheduling order).
        return staged_units(self, opts, shared, todo, force, lambda s: self.num_params(s, opts) * steps_of(s))

    def weights_id(self, size: str, options: PluginOptions) -> str | None:
        """Hash of the codec's and the generator's weight files; None until both are trained."""
        opts = self._options(options)
        cfg, default_steps = self._size(size)
        artifact, record, steps = self._codec_spec(opts)
        codec = cache.load_manifest(artifact)
        return cache.weights_digest(
            [
                (artifact, lambda m: manifest_matches(m, record, SEED, steps)),
                (
                    self._artifact(size, opts),
                    lambda m: codec is not None and self._fresh(m, cfg, opts.steps or default_steps, codec),
                ),
            ]
        )

    def artifacts(self, size: str, options: PluginOptions) -> list[str]:
        """The artifacts ``size`` loads: the codec, then the generator."""
        opts = self._options(options)
        return [self._codec_spec(opts)[0], self._artifact(size, opts)]

    def _codec_spec(self, opts: Any) -> tuple[str, dict[str, Any], int]:
        """(artifact, manifest record, training steps) of the shared codec; a step override trains a
        codec of its own (``<codec>-s<steps>``), so the default one in the same cache is left alone."""
        steps = getattr(opts, self.codec_steps_option) or self.codec_steps
        artifact = self.codec_artifact if steps == self.codec_steps else f"{self.codec_artifact}-s{steps}"
        return artifact, self.codec_record, steps

    def _artifact(self, size: str, opts: Any) -> str:
        """``<family>/<size>``; with step overrides, e.g. ``<family>/<size>-s50-vq-s20``, so that a grid
        with two step settings keeps both models instead of retraining one file back and forth."""
        default_steps = self._size(size)[1]
        steps = opts.steps or default_steps
        codec_artifact, _, codec_steps = self._codec_spec(opts)
        suffix = f"-s{steps}" if steps != default_steps else ""
        if codec_steps != self.codec_steps:
            suffix += "-" + codec_artifact.rpartition("/")[2]
        return f"{self.name}/{size}{suffix}"

    def _record(self, cfg: Any) -> dict[str, Any]:
        """What a generator's manifest records as its config: the architecture and the recipe."""
        extra = {} if self.weights_dtype is None else {"weights_dtype": str(self.weights_dtype).removeprefix("torch.")}
        return cfg.to_dict() | {"recipe": self.recipe} | extra

    def _fresh(self, manifest: dict[str, Any] | None, cfg: Any, steps: int, codec_manifest: dict[str, Any]) -> bool:
        """Trained with this config and recipe, on the current codec."""
        return (
            manifest_matches(manifest, self._record(cfg), SEED, steps)
            and manifest.get(self.codec_hash_key) == codec_manifest["weights_hash"]
        )

    # ------------------------------------------------------------------ building

    def build(self, size: str, options: PluginOptions, device: torch.device) -> GenerativeModel:
        """The trained model of ``size`` on ``device`` (training what is missing); on ``meta``, untrained."""
        opts = self._options(options)
        cfg, _ = self._size(size)
        device = torch.device(device)
        if device.type == "meta":
            return self._meta_model(cfg, opts)
        self.train(size, opts)
        codec, codec_manifest = self._codec(opts)
        state, _ = cache.load_artifact(self._artifact(size, opts))
        net = self.network(cfg)
        net.load_state_dict(state)
        return self._model(net.eval().to(device), codec.to(device), codec_manifest, opts, device)

    def num_params(self, size: str, options: PluginOptions) -> int:
        return param_count(lambda: self.network(self._size(size)[0]))

    def _size(self, size: str) -> tuple[Any, int]:
        check_size(self.name, size, self.size_configs)
        return self.size_configs[size]

    def _options(self, options: PluginOptions | None) -> Any:
        return coerce_options(options, self.Options)


def stored_state(net: nn.Module, dtype: torch.dtype | None) -> State:
    """``net``'s state dict as stored: floating-point tensors in ``dtype`` (if given), and ``net`` loaded with
    the rounded values, so that the sample grid and every later load see the stored weights."""
    state = net.state_dict()
    if dtype is None:
        return state
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    net.load_state_dict(state)
    return state
