"""Experiment files: a pydantic v2 schema loaded from YAML, with one-line errors naming file and field.

Example::

    name: quick
    models:
      - family: var-tiny          # or just "var-tiny": every size
        sizes: [d2, d4]
    quantizers: [rtn]             # or {name: gptq, options: {group_size: 128}}
    losses: [topkld]              # crossed only with training quantizers
    precisions: [W16A16, W8A16, W4A16, W3A16, W8A8, W4A8]
    seeds: [0]
    budget: {model_bits: 2.0e7}   # keep cells with N_params x w_bits <= 2e7
    evaluation: {num_samples: 2000, calibration_batches: 8}   # num_samples: per family when left out
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bitscale.harness.errors import ConfigError
from bitscale.precision import Precision

#: Longest experiment name: the store's ``runs.experiment`` column. PostgreSQL enforces it after a
#: cell has been computed, SQLite never; checking it here treats every backend the same.
MAX_NAME_LENGTH = 200
#: Seeds are stored as 32-bit integers (PostgreSQL's INTEGER) and seed torch's generators.
MAX_SEED = 2**31 - 1

Seed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    family: str
    sizes: list[str] | None = None  # None: every size the family offers
    options: dict[str, Any] = Field(default_factory=dict)


class PluginSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


def _named(value: Any, key: str) -> Any:
    return {key: value} if isinstance(value, str) else value


class Budget(_Strict):
    """Upper limits on the paper's total model bits (MT) and total compute bits (CT); None = no limit."""

    model_bits: float | None = Field(default=None, gt=0)
    compute_bits: float | None = Field(default=None, gt=0)


class EvaluationSpec(_Strict):
    # None: each family's own ``default_num_samples``, the count at which its W16A16 FID varies by
    # <= 3% between seeds (measured: docs/design.md, "Measurement protocol").
    num_samples: int | None = Field(default=None, ge=10, le=1_000_000)
    calibration_batches: int = Field(default=8, ge=1, le=10_000)
    batch_size: int = Field(default=250, ge=1)


class Experiment(_Strict):
    name: str = Field(default="experiment", min_length=1, max_length=MAX_NAME_LENGTH)
    models: list[ModelSpec] = Field(min_length=1)
    quantizers: list[PluginSpec] = Field(default_factory=list)
    losses: list[PluginSpec] = Field(default_factory=list)
    precisions: list[str] = Field(default_factory=lambda: ["W16A16"], min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    budget: Budget = Field(default_factory=Budget)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)

    @field_validator("models", mode="before")
    @classmethod
    def _models_shorthand(cls, v: Any) -> Any:
        return [_named(m, "family") for m in v] if isinstance(v, list) else v

    @field_validator("quantizers", "losses", mode="before")
    @classmethod
    def _plugins_shorthand(cls, v: Any) -> Any:
        return [_named(m, "name") for m in v] if isinstance(v, list) else v

    @field_validator("precisions")
    @classmethod
    def _precisions_parse(cls, v: list[str]) -> list[str]:
        out = []
        for i, text in enumerate(v):
            try:
                out.append(Precision.parse(str(text)).label)
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        return list(dict.fromkeys(out))  # de-duplicate, keep order

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, v: list[int]) -> list[int]:
        return list(dict.fromkeys(v))  # `seeds: [0, 0]` is one seed: the same cell twice is one cell

    @model_validator(mode="after")
    def _needs_quantizer(self) -> Experiment:
        if any(not Precision.parse(p).is_full for p in self.precisions) and not self.quantizers:
            raise ValueError("quantized precisions are listed but no quantizers; add e.g. `quantizers: [rtn]`")
        return self

    def parsed_precisions(self) -> list[Precision]:
        return [Precision.parse(p) for p in self.precisions]


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line: ``FILE: FIELD: reason`` for the first error (and a count of the rest)."""
    errs = exc.errors()
    first = errs[0]
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})" if len(errs) > 1 else ""
    return f"{source}: {_loc(first['loc'])}: {msg}{more}"


def parse_experiment(data: Any, source: str) -> Experiment:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping with at least `models:`, got {type(data).__name__}"
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML file; ConfigError (exit 2) names the file and field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: experiment file not found (run `bitscale run` without a file for the quick grid)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the experiment file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: malformed YAML: {where}{problem}") from None
    except (ValueError, RecursionError) as exc:  # PyYAML's own: a date like 2024-13-45, nesting too deep
        raise ConfigError(f"{p}: malformed YAML: {type(exc).__name__}: {str(exc)[:200]}") from None
    return parse_experiment(data, str(p))
