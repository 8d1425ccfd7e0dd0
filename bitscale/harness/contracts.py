"""The three plugin contracts: ``ModelFamily``/``GenerativeModel`` (+ ``TrainableFamily``), ``Quantizer``,
``DistillLoss``. Plugin authors import them from ``bitscale`` (the public API), not from here.

They are deliberately small. A quantizer must work on *any* ``GenerativeModel`` through this
contract alone: it edits ``model.module`` in place (usually swapping the layers returned by
``quant_layers()``), and captures activations with forward hooks while ``forward_batch`` runs
calibration batches.
"""

from __future__ import annotations

import fnmatch
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast, get_args, get_origin

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from bitscale.harness.phases import GenerationPhases
from bitscale.harness.training_unit import TrainingUnit
from bitscale.precision import Precision

if TYPE_CHECKING:
    from collections.abc import Sequence


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
    #: True for a ``TrainableFamily`` (the tiny zoo): bitscale trains it; ``bitscale zoo train`` lists them.
    trainable: ClassVar[bool] = False
    #: GPUs one cell asks the Ray executor for (e.g. 0.5: two cells share a GPU); None: 1 when the
    #: cluster has GPUs, else 0. ``--gpus-per-cell`` overrides it.
    gpus_per_cell: ClassVar[float | None] = None
    #: Samples per cell when an experiment does not set ``evaluation.num_samples``: the count at which
    #: this family's W16A16 FID varies by at most 3% between seeds, measured (``bitscale rescore
    #: --blocks``; docs/design.md, "Measurement protocol"). Families whose samples spread more need more.
    default_num_samples: ClassVar[int] = 2000

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


class TrainableFamily(ModelFamily):
    """A family bitscale trains itself (the tiny zoo): ``bitscale zoo train`` and ``bitscale run`` train it.

    ``train`` trains one size. A family whose sizes share a stage (a tokenizer, an autoencoder)
    also overrides ``train_shared`` and ``training_units``, so the harness can train what is
    missing in parallel processes, the shared stage first.
    """

    trainable: ClassVar[bool] = True

    @abstractmethod
    def train(self, size: str, options: PluginOptions, force: bool = False) -> dict[str, Any]:
        """Train ``size`` (or reuse the cached weights unless ``force``); return its manifest."""

    def train_shared(self, options: PluginOptions) -> dict[str, Any]:
        """Train (or reuse) the stage every size shares; return its manifest. Default: no shared stage."""
        return {}

    def training_units(
        self, sizes: Sequence[str], options: PluginOptions, force: bool = False
    ) -> list[TrainingUnit] | None:
        """The units that train what ``sizes`` lack (stale or missing artifacts), the shared stage first.

        ``None`` (the default) means the family cannot say what it lacks: its sizes are then
        trained one unit each (each reusing its cache if fresh), and not before a grid is planned.
        """
        return None

    def artifacts(self, size: str, options: PluginOptions) -> list[str]:
        """Names of the cached artifacts ``size`` loads (``bitscale zoo list|verify|ship``); default none:
        the family caches its own way, outside bitscale's artifact cache."""
        return []

    @property
    def plans_training(self) -> bool:
        """True if this family says which of its artifacts are missing (overrides ``training_units``)."""
        return type(self).training_units is not TrainableFamily.training_units


# --------------------------------------------------------------------------- quantizers


@dataclass
class QuantReport:
    """What a quantizer did. ``effective_weight_bits`` counts scales, zero-points and codebooks
    (``bitscale.effective_bits`` is the one rule); ``seconds`` is filled by ``Quantizer.quantize``."""

    effective_weight_bits: float
    layers: int = 0
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.effective_weight_bits) or self.effective_weight_bits <= 0:
            raise ValueError(f"effective_weight_bits must be a positive number, got {self.effective_weight_bits}")


OptionsT = TypeVar("OptionsT", bound=PluginOptions)


@dataclass(frozen=True)
class QuantJob:
    """One quantization request, as ``Quantizer.apply`` receives it."""

    #: The model to quantize in place (``model.module``; usually the layers of ``model.quant_layers()``).
    model: GenerativeModel
    #: The requested bit setting; ``unsupported_reason`` has already accepted it.
    precision: Precision
    #: Batches from ``model.calibration_batches``, to run with ``model.forward_batch``.
    calibration: list[Any]
    #: The distillation loss of a training quantizer (``trains = True``), else None.
    loss: DistillLoss | None
    #: The cell's seeded generator: the only source of randomness a quantizer may use.
    generator: torch.Generator


class Quantizer(ABC, Generic[OptionsT]):
    """A quantization method, generic in its options: ``class RTN(Quantizer[RTNOptions])``.

    Instances are made per cell as ``cls(options)``; ``self.options`` has the options type, and
    ``Options`` is taken from the type argument unless the class sets it. Implement ``apply``;
    the harness calls ``quantize``, which times ``apply`` and fills ``QuantReport.seconds``.
    """

    name: ClassVar[str]
    #: True for quantization-aware training methods, which take a ``DistillLoss``.
    trains: ClassVar[bool] = False
    #: Number-format kinds the method can produce for weights: subset of {"int", "fp"}.
    weight_kinds: ClassVar[frozenset[str]] = frozenset({"int"})
    #: Number-format kinds for activations; empty means weight-only (a_bits must be 16).
    activation_kinds: ClassVar[frozenset[str]] = frozenset()
    #: Weight widths the method supports (of 2..8); None: every width of ``weight_kinds``' formats.
    weight_bits: ClassVar[frozenset[int] | None] = None
    #: Activation widths the method supports (of 2..8); None: every width of ``activation_kinds``' formats.
    activation_bits: ClassVar[frozenset[int] | None] = None
    #: True if the method only makes sense with quantized weights (W16Ax leaves it nothing to do).
    needs_weight_quant: ClassVar[bool] = False
    #: True if the method only makes sense with quantized activations (e.g. SmoothQuant).
    needs_activation_quant: ClassVar[bool] = False
    #: True if ``apply`` needs calibration batches: ``quantize`` refuses an empty ``calibration`` for it.
    needs_calibration: ClassVar[bool] = False
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    description: ClassVar[str] = ""

    options: OptionsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" not in cls.__dict__:
            declared = _options_argument(cls)
            if declared is not None:
                cls.Options = declared

    def __init__(self, options: OptionsT | None = None) -> None:
        self.options = options if options is not None else cast(OptionsT, self.Options())

    def unsupported_reason(self, precision: Precision) -> str | None:
        """``None`` if this method can run ``precision``, else a sentence saying why not.

        The default reads the class attributes (kinds, widths, ``needs_*``); override it for finer
        rules and call ``super()`` first.
        """
        if precision.is_full:
            return "W16A16 is the full-precision reference; it is run once per model, without a quantizer"
        w, a = precision.weights, precision.activations
        if w.kind != "full" and w.kind not in self.weight_kinds:
            return f"{self.name} quantizes weights only to {_kinds(self.weight_kinds)} formats, not {w}"
        if w.kind != "full" and self.weight_bits is not None and w.bits not in self.weight_bits:
            return f"{self.name} quantizes weights only to {_widths(self.weight_bits)} bits, not {w.bits}"
        if a.kind != "full" and a.kind not in self.activation_kinds:
            if not self.activation_kinds:
                return f"{self.name} is weight-only; use an A16 precision"
            return f"{self.name} quantizes activations only to {_kinds(self.activation_kinds)} formats, not {a}"
        if a.kind != "full" and self.activation_bits is not None and a.bits not in self.activation_bits:
            return f"{self.name} quantizes activations only to {_widths(self.activation_bits)} bits, not {a.bits}"
        if self.needs_weight_quant and w.kind == "full":
            return f"{self.name} quantizes weights; with W16 there is nothing for it to do (use rtn or smoothquant)"
        if self.needs_activation_quant and a.kind == "full":
            return f"{self.name} needs quantized activations (e.g. W8A8)"
        if a.kind == "mx" and getattr(self.options, "act_granularity", "token") != "token":
            # block-scaled activations (MX, NVFP4) are scaled per block at run time, never statically
            return f"{a} activations are scaled per block at run time; use act_granularity: token"
        return None

    def quantize(
        self,
        model: GenerativeModel,
        precision: Precision,
        calibration: list[Any],
        loss: DistillLoss | None = None,
        generator: torch.Generator | None = None,
    ) -> QuantReport:
        """Quantize ``model.module`` in place to ``precision`` (through ``apply``); return what was done.

        Without a ``generator``, one seeded with 0 is used, so a direct call is reproducible too.
        """
        if self.needs_calibration and not calibration:
            raise ValueError(f"{self.name} needs calibration batches (got none)")
        started = time.perf_counter()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        report = self.apply(QuantJob(model, precision, list(calibration), loss, gen))
        if not isinstance(report, QuantReport):
            raise TypeError(f"{self.name}.apply returned {type(report).__name__}, not QuantReport")
        report.seconds = time.perf_counter() - started
        return report

    @abstractmethod
    def apply(self, job: QuantJob) -> QuantReport:
        """Quantize ``job.model.module`` in place to ``job.precision``; return what was done."""


def _options_argument(cls: type) -> type[PluginOptions] | None:
    """The options class ``cls`` gave ``Quantizer[...]`` (directly or through a generic base), if any."""
    for base in getattr(cls, "__orig_bases__", ()):
        if (
            get_origin(base) is not None
            and isinstance(get_origin(base), type)
            and issubclass(get_origin(base), Quantizer)
        ):
            args = get_args(base)
            if args and isinstance(args[0], type) and issubclass(args[0], PluginOptions):
                return args[0]
    return None


def _widths(bits: frozenset[int]) -> str:
    return "/".join(str(b) for b in sorted(bits))


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
