"""The models an analysis looks at: a family's full-precision model and, optionally, its quantized twin.

The twin is made exactly as a grid cell makes it (same calibration batches from the seed, the
quantizer's own options), so an analysis of ``rtn W4A8`` looks at the model that cell scores.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ValidationError

import bitscale
from bitscale.harness.contracts import GenerativeModel, ModelFamily
from bitscale.harness.errors import BitscaleError, ConfigError
from bitscale.harness.plugin_loader import PluginSet, get_plugins
from bitscale.precision import Precision


@dataclass(frozen=True)
class ModelSpec:
    """Which model (and which quantization of it) to analyse; every field is part of the analysis hash."""

    family: str
    size: str
    model_options: dict[str, Any] = field(default_factory=dict)
    method: str | None = None  # a registered quantizer; None with a full precision
    precision: str = "W16A16"
    quantizer_options: dict[str, Any] = field(default_factory=dict)
    calibration_batches: int = 8
    seed: int = 0

    def resolved(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "size": self.size,
            "model_options": self.model_options,
            "method": self.method,
            "precision": Precision.parse(self.precision).label,
            "quantizer_options": self.quantizer_options,
            "calibration_batches": self.calibration_batches,
            "seed": self.seed,
        }


@dataclass
class Loaded:
    """The full-precision model, the quantized one (or None) and where they came from."""

    fp: GenerativeModel
    quantized: GenerativeModel | None
    provenance: dict[str, Any]


def check_spec(spec: ModelSpec, plugins: PluginSet | None = None, need_quantized: bool = False) -> ModelFamily:
    """Validate names, size and precision before anything is built (bad input: one-line error)."""
    plugins = plugins or get_plugins()
    family = plugins.models.get(spec.family)
    try:
        family.Options.model_validate(spec.model_options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise ConfigError(f"{spec.family} model option {where}: {err['msg']}") from None
    if spec.size not in family.sizes:
        raise ConfigError(f"{spec.family} has no size {spec.size!r}; sizes are {', '.join(family.sizes)}")
    try:
        precision = Precision.parse(spec.precision)
    except ValueError as exc:
        raise ConfigError(f"--precision: {exc}") from None
    if need_quantized and precision.is_full:
        raise ConfigError(
            "this analysis compares a quantized model with its full-precision twin: "
            "give a quantized --precision such as W4A8"
        )
    if not precision.is_full:
        if spec.method is None:
            raise ConfigError(f"--precision {precision.label} needs a quantizer: pass --method (e.g. rtn)")
        q_cls = plugins.quantizers.get(spec.method)
        reason = q_cls(q_cls.Options.model_validate(spec.quantizer_options)).unsupported_reason(precision)
        if reason:
            raise ConfigError(f"{spec.method} cannot run {precision.label}: {reason}")
    return family


def load(
    spec: ModelSpec, device: torch.device | None = None, plugins: PluginSet | None = None, need_quantized: bool = False
) -> Loaded:
    """Build the family's model of ``spec.size`` and, for a quantized precision, its quantized copy."""
    plugins = plugins or get_plugins()
    family = check_spec(spec, plugins, need_quantized)
    opts = family.Options.model_validate(spec.model_options)
    fp = family.build(spec.size, opts, device or torch.device("cpu"))
    if not fp.exposes_phases:
        raise BitscaleError(
            f"not supported: {spec.family} does not expose generation phases "
            "(see docs/analysis.md, 'For plugin authors')"
        )
    versions = {
        "bitscale": bitscale.__version__,
        "family": plugins.version_of(plugins.models.entry(spec.family).plugin),
    }
    quantized, report = None, None
    precision = Precision.parse(spec.precision)
    if not precision.is_full:
        q_cls = plugins.quantizers.get(spec.method)
        versions["quantizer"] = plugins.version_of(plugins.quantizers.entry(spec.method).plugin)
        torch.manual_seed(spec.seed)  # quantizers that use the global RNG stay reproducible (as in cells)
        quantized = copy.deepcopy(fp)
        gen = torch.Generator().manual_seed(spec.seed)
        calib = quantized.calibration_batches(spec.calibration_batches, gen)
        report = q_cls(q_cls.Options.model_validate(spec.quantizer_options)).quantize(
            quantized, precision, calib, generator=gen
        )
    provenance = {
        "versions": versions,
        "weights": family.weights_id(spec.size, opts),
        "sampler": dict(fp.sampler),
        "style": fp.style,
        "effective_weight_bits": report.effective_weight_bits if report else None,
    }
    return Loaded(fp, quantized, provenance)


def labels_for(model: GenerativeModel, num_samples: int) -> torch.Tensor:
    """``num_samples`` labels cycling through the classes (the same in every analysis of the model)."""
    return torch.arange(num_samples) % model.num_classes
