"""The three plugin contracts: ``ModelFamily``/``GenerativeModel``, ``Quantizer``, ``DistillLoss``.

They are deliberately small. A quantizer must work on *any* ``GenerativeModel`` through this
contract alone: it edits ``model.module`` in place (usually swapping the layers returned by
``quant_layers()``), and captures activations with forward hooks while ``forward_batch`` runs
calibration batches.
"""

from __future__ import annotations

import fnmatch
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from bitscale.harness.phases import GenerationPhases
from bitscale.precision import Precision


class PluginOptions(BaseModel):
    """Base for a plugin's options; unknown keys are errors so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- models


class GenerativeModel(ABC):
    """What a model family builds for one (size, checkpoint): a generator plus what the harness needs.

    ``module`` is the network that quantizers edit in place and that the bit budget counts
    (the transformer; tokenizers and autoencoders stay in full precision, as in the paper).
    """

    #: ``"language"``: discrete tokens, autoregressive (logits); ``"diffusion"``: continuous (noise).
    style: ClassVar[Literal["language", "diffusion"]]
    #: Module-name patterns (fnmatch) that ``quant_layers`` leaves out: heads and embeddings.
    unquantized: ClassVar[tuple[str, ...]] = ()
    #: How two models sampled with the same labels and seed share randomness. None: ``sample`` draws
    #: from ``generator`` only (diffusion: the same initial noise per chunk). ``noise.COUPLING``:
    #: ``sample(labels, generator, noise=TokenNoise)`` draws every token from the coupled Gumbel noise
    #: (``bitscale.harness.noise``), so a quantized model and its W16A16 twin pick the same tokens
    #: wherever their distributions agree. Part of every score's protocol.
    coupling: ClassVar[str | None] = None

    module: nn.Module
    #: Evaluation data set id (``"digits16"``, ``"imagenet256"``): picks reference set and extractor.
    dataset: str
    #: Number of classes sampled from (labels are ``0..num_classes-1``).
    num_classes: int
    #: Sampler settings (cfg, top-k, top-p, steps, ...); part of every score's protocol fingerprint.
    sampler: dict[str, Any]

    def quant_layers(self) -> dict[str, nn.Linear]:
        """Every ``nn.Linear`` of ``module`` except names matching ``unquantized``."""
        return {
            name: m
            for name, m in self.module.named_modules()
            if isinstance(m, nn.Linear) and not any(fnmatch.fnmatch(name, p) for p in self.unquantized)
        }

    @abstractmethod
    def calibration_batches(self, n: int, generator: torch.Generator) -> list[Any]:
        """``n`` batches of real training inputs, in whatever form ``forward_batch`` takes."""

    @abstractmethod
    def forward_batch(self, batch: Any) -> torch.Tensor:
        """Teacher-forced logits ``(B, L, V)`` (language) or predicted noise (diffusion)."""

    @abstractmethod
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Generate one image per label: ``uint8`` tensor ``(B, 3, H, W)``."""

    def num_params(self) -> int:
        """Parameters the bit budget counts (those of ``module``)."""
        return sum(p.numel() for p in self.module.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # Optional: the generation-phases extension that ``bitscale analyze`` uses (bitscale/harness/phases.py).

    #: The paper's layer kinds (``"fc1"``, ``"qkv"``, ``"fc2"``) as module-name templates of ``module``
    #: with ``{block}`` for the block index, e.g. ``{"fc1": "blocks.{block}.mlp.fc1"}``.
    activation_layers: ClassVar[dict[str, str]] = {}

    def generation_phases(self, labels: torch.Tensor, generator: torch.Generator) -> GenerationPhases:
        """One generation for ``labels``, step by step (``phases.GenerationPhases``); optional."""
        raise NotImplementedError(f"{type(self).__name__} does not expose generation phases")

    @property
    def exposes_phases(self) -> bool:
        """True if this model implements ``generation_phases``."""
        return type(self).generation_phases is not GenerativeModel.generation_phases


class ModelFamily(ABC):
    """A family of generators (e.g. ``var-tiny``) offered in several sizes (e.g. ``d2``, ``d4``)."""

    name: ClassVar[str]
    #: Ordered smallest to largest: the leaderboard's columns.
    sizes: ClassVar[tuple[str, ...]]
    style: ClassVar[Literal["language", "diffusion"]]
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    #: Short human description for ``bitscale plugins list``.
    description: ClassVar[str] = ""
    #: True for families bitscale trains itself (the tiny zoo); ``bitscale zoo train`` lists them.
    trainable: ClassVar[bool] = False
    #: GPUs one cell asks the Ray executor for (e.g. 0.5: two cells share a GPU); None: 1 when the
    #: cluster has GPUs, else 0. ``--gpus-per-cell`` overrides it.
    gpus_per_cell: ClassVar[float | None] = None

    def train(self, size: str, options: PluginOptions, force: bool = False) -> dict[str, Any]:
        """Train ``size`` (or reuse the cached weights unless ``force``); return its manifest."""
        raise NotImplementedError(f"{self.name} loads released checkpoints; bitscale does not train it")

    @abstractmethod
    def build(self, size: str, options: PluginOptions, device: torch.device) -> GenerativeModel:
        """Build (and load or train, if needed) the full-precision model of ``size``."""

    def num_params(self, size: str, options: PluginOptions) -> int:
        """Parameter count of ``size`` without loading weights (used to plan bit budgets)."""
        return self.build(size, options, torch.device("meta")).num_params()

    def weights_id(self, size: str, options: PluginOptions) -> str | None:
        """What identifies the weights ``size`` loads, without loading them: for the tiny zoo, the
        hash of the weight files. It is part of each cell's hash, so results measured on other
        weights (retrained, another recipe, another machine's training) are not taken for these.
        Empty when options already say it (a checkpoint path); None when the weights are still to
        be trained (the harness trains them through ``training_units``, then asks again)."""
        return ""


# --------------------------------------------------------------------------- quantizers


@dataclass
class QuantReport:
    """What a quantizer did. ``effective_weight_bits`` counts scales, zero-points and codebooks."""

    effective_weight_bits: float
    layers: int = 0
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.effective_weight_bits) or self.effective_weight_bits <= 0:
            raise ValueError(f"effective_weight_bits must be a positive number, got {self.effective_weight_bits}")


class Quantizer(ABC):
    """A quantization method. Instances are made per cell as ``cls(options)``."""

    name: ClassVar[str]
    #: True for quantization-aware training methods, which take a ``DistillLoss``.
    trains: ClassVar[bool] = False
    #: Number-format kinds the method can produce for weights: subset of {"int", "fp"}.
    weight_kinds: ClassVar[frozenset[str]] = frozenset({"int"})
    #: Number-format kinds for activations; empty means weight-only (a_bits must be 16).
    activation_kinds: ClassVar[frozenset[str]] = frozenset()
    #: True if the method only makes sense with quantized activations (e.g. SmoothQuant).
    needs_activation_quant: ClassVar[bool] = False
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    description: ClassVar[str] = ""

    def __init__(self, options: PluginOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def unsupported_reason(self, precision: Precision) -> str | None:
        """``None`` if this method can run ``precision``, else a sentence saying why not."""
        if precision.is_full:
            return "W16A16 is the full-precision reference; it is run once per model, without a quantizer"
        w, a = precision.weights, precision.activations
        if w.kind != "full" and w.kind not in self.weight_kinds:
            return f"{self.name} quantizes weights only to {_kinds(self.weight_kinds)} formats, not {w}"
        if a.kind != "full" and a.kind not in self.activation_kinds:
            if not self.activation_kinds:
                return f"{self.name} is weight-only; use an A16 precision"
            return f"{self.name} quantizes activations only to {_kinds(self.activation_kinds)} formats, not {a}"
        if self.needs_activation_quant and a.kind == "full":
            return f"{self.name} needs quantized activations (e.g. W8A8)"
        return None

    @abstractmethod
    def quantize(
        self,
        model: GenerativeModel,
        precision: Precision,
        calibration: list[Any],
        loss: DistillLoss | None = None,
        generator: torch.Generator | None = None,
    ) -> QuantReport:
        """Quantize ``model.module`` in place to ``precision``; return what was done."""


def _kinds(kinds: frozenset[str]) -> str:
    return "/".join(sorted(kinds)) or "no"


# --------------------------------------------------------------------------- losses


class DistillLoss(ABC):
    """A distillation loss between student and teacher outputs of ``forward_batch``."""

    name: ClassVar[str]
    #: ``"logits"`` for language-style (B, L, V) logits; ``"regression"`` for diffusion noise.
    kind: ClassVar[Literal["logits", "regression"]]
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    description: ClassVar[str] = ""

    def __init__(self, options: PluginOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def prepare(self, model: GenerativeModel) -> None:
        """Adapt option defaults to the model before training (e.g. TopKLD's K = its sampling top-k)."""

    def applies_to(self, model_style: str) -> str | None:
        """``None`` if this loss fits the model style, else why not."""
        wanted = "language" if self.kind == "logits" else "diffusion"
        if self.kind == "regression":
            return None  # regression on outputs is defined for any model
        if model_style != wanted:
            return f"{self.name} compares token logits and needs a language-style model, not {model_style}"
        return None

    @abstractmethod
    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Scalar loss (mean over tokens/elements); differentiable in ``student``."""
