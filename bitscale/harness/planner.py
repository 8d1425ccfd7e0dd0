"""Expand an experiment into cells: models x sizes x quantizers x (losses) x precisions x seeds.

Every cell gets a content hash of its resolved config, the versions of the plugins it uses and
the evaluation protocol; the store skips cells whose hash is already there, which is what makes
a grid resumable after Ctrl-C or ``kill -9``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bitscale.hashing import json_digest
from bitscale.harness.config import Experiment, format_validation_error
from bitscale.harness.contracts import PluginOptions
from bitscale.harness.errors import ConfigError, PluginError
from bitscale.harness.plugin_loader import PluginSet
from bitscale.precision import Precision, compute_bits, model_bits

# Bump when the evaluation procedure changes meaning. 2: each sample chunk (batch) draws from its own
# stream seeded by (cell seed, chunk index), so a cell can be sampled in shards (bitscale.harness.sampling).
# 3: token models draw every token from coupled Gumbel noise keyed by (seed, sample index, position)
# (bitscale.harness.noise), and quantized cells are scored against their W16A16 twin (paired metrics).
PROTOCOL_VERSION = 3
FULL_PRECISION_METHOD = "fp16"


@dataclass(frozen=True)
class Cell:
    family: str
    size: str
    method: str  # quantizer name, or "fp16" for the W16A16 reference
    loss: str | None
    precision: str  # canonical label
    seed: int
    model_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    quantizer_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    loss_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    num_params: int = 0
    versions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    evaluation: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    hash: str = ""

    @property
    def label(self) -> str:
        loss = f"+{self.loss}" if self.loss else ""
        return f"{self.family}/{self.size} {self.precision} {self.method}{loss} seed={self.seed}"

    @property
    def model_bits(self) -> int:
        return model_bits(self.num_params, Precision.parse(self.precision))

    @property
    def compute_bits(self) -> int:
        return compute_bits(self.num_params, Precision.parse(self.precision))

    def config(self) -> dict[str, Any]:
        """The resolved configuration that the hash covers (also stored with the run)."""
        return {
            "family": self.family, "size": self.size, "method": self.method, "loss": self.loss,
            "precision": self.precision, "seed": self.seed, "model_options": self.model_options,
            "quantizer_options": self.quantizer_options, "loss_options": self.loss_options,
            "versions": self.versions, "evaluation": self.evaluation, "protocol_version": PROTOCOL_VERSION,
        }


def cell_hash(config: dict[str, Any]) -> str:
    return json_digest(config, 20)


#: ``versions["weights"]`` of a cell whose model's weights are not trained yet (``weights_id`` is None):
#: such a plan is for listing only; train the weights (``bitscale.zoo.pretrain.plan_trained``) and plan again.
UNTRAINED = "untrained"


@dataclass
class Plan:
    cells: list[Cell]
    skipped: list[tuple[str, str]]  # (cell label, why it was not scheduled)

    @property
    def untrained(self) -> list[Cell]:
        """Cells whose hashes are provisional: their model's weights are still to be trained."""
        return [c for c in self.cells if c.versions.get("weights") == UNTRAINED]


def _options(cls: type, raw: dict, where: str, source: str) -> PluginOptions:
    options_cls = getattr(cls, "Options", PluginOptions)
    try:
        return options_cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"{source}: {where}")) from None


def _lookup(registry, name: str, where: str, source: str):
    try:
        return registry.entry(name)
    except PluginError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None


def plan_grid(exp: Experiment, plugins: PluginSet, source: str = "experiment") -> Plan:
    """Every runnable cell of ``exp``; ConfigError when a name or option is wrong or nothing fits."""
    evaluation = exp.evaluation.model_dump()
    quantizers = []
    for i, q in enumerate(exp.quantizers):
        entry = _lookup(plugins.quantizers, q.name, f"quantizers[{i}].name", source)
        opts = _options(entry.obj, q.options, f"quantizers[{i}].options", source)
        quantizers.append((entry, opts))
    losses = []
    for i, spec in enumerate(exp.losses):
        entry = _lookup(plugins.losses, spec.name, f"losses[{i}].name", source)
        opts = _options(entry.obj, spec.options, f"losses[{i}].options", source)
        losses.append((entry, opts))
    if losses and not any(e.obj.trains for e, _ in quantizers):
        raise ConfigError(f"{source}: losses: distillation losses need a training quantizer (e.g. qat) in `quantizers`")
    for i, (entry, _) in enumerate(quantizers):
        if entry.obj.trains and not losses:
            raise ConfigError(f"{source}: quantizers[{i}]: {entry.name} trains with a distillation loss; list one in `losses`")

    cells: list[Cell] = []
    skipped: list[tuple[str, str]] = []
    budget_drops: list[tuple[int, int, str]] = []
    precisions = exp.parsed_precisions()
    for mi, spec in enumerate(exp.models):
        fam_entry = _lookup(plugins.models, spec.family, f"models[{mi}].family", source)
        family = fam_entry.obj
        fam_opts = _options(type(family), spec.options, f"models[{mi}].options", source)
        sizes = spec.sizes if spec.sizes is not None else list(family.sizes)
        # The resolved count goes into the cell: its hash and its stored protocol say how many were drawn.
        fam_evaluation = {**evaluation, "num_samples": evaluation["num_samples"] or family.default_num_samples}
        for si, size in enumerate(sizes):
            if size not in family.sizes:
                raise ConfigError(f"{source}: models[{mi}].sizes[{si}]: {spec.family} has no size {size!r}; "
                                  f"choose from {', '.join(family.sizes)}")
        for size in sizes:
            n_params = family.num_params(size, fam_opts)
            base_versions = {"bitscale": _bitscale_version(), "model": plugins.version_of(fam_entry.plugin)}
            # The weights a cell is measured on are part of its identity: other weights, other cells.
            weights = family.weights_id(size, fam_opts)
            if weights is None or weights:
                base_versions["weights"] = UNTRAINED if weights is None else weights
            for prec in precisions:
                combos: list[tuple[str, Any, Any, Any, Any]] = []
                if prec.is_full:
                    combos.append((FULL_PRECISION_METHOD, None, None, None, None))
                else:
                    for q_entry, q_opts in quantizers:
                        if q_entry.obj.trains:
                            combos.extend((q_entry.name, q_entry, q_opts, l_entry, l_opts) for l_entry, l_opts in losses)
                        else:
                            combos.append((q_entry.name, q_entry, q_opts, None, None))
                for seed in exp.seeds:
                    for method, q_entry, q_opts, l_entry, l_opts in combos:
                        versions = dict(base_versions)
                        label = f"{spec.family}/{size} {prec.label} {method}" + (f"+{l_entry.name}" if l_entry else "")
                        if q_entry is not None:
                            reason = q_entry.obj(q_opts).unsupported_reason(prec)
                            if reason:
                                skipped.append((label, reason))
                                continue
                            versions["quantizer"] = plugins.version_of(q_entry.plugin)
                        if l_entry is not None:
                            reason = l_entry.obj(l_opts).applies_to(family.style)
                            if reason:
                                skipped.append((label, reason))
                                continue
                            versions["loss"] = plugins.version_of(l_entry.plugin)
                        mt, ct = model_bits(n_params, prec), compute_bits(n_params, prec)
                        b = exp.budget
                        if (b.model_bits is not None and mt > b.model_bits) or (
                            b.compute_bits is not None and ct > b.compute_bits
                        ):
                            budget_drops.append((mt, ct, label))
                            continue
                        cell = Cell(
                            family=spec.family, size=size, method=method,
                            loss=l_entry.name if l_entry else None, precision=prec.label, seed=seed,
                            model_options=fam_opts.model_dump(mode="json"),
                            quantizer_options=q_opts.model_dump(mode="json") if q_opts is not None else {},
                            loss_options=l_opts.model_dump(mode="json") if l_opts is not None else {},
                            num_params=n_params, versions=versions, evaluation=fam_evaluation,
                        )
                        cells.append(_with_hash(cell))
    if not cells:
        raise ConfigError(_empty_reason(source, exp, skipped, budget_drops))
    # A model or size listed twice plans the same cell twice: run it once.
    unique = list({c.hash: c for c in cells}.values())
    return Plan(unique, skipped)


def fp_twin(cell: Cell) -> Cell:
    """The W16A16 cell that ``cell`` is paired with: same model, options, size, seed and evaluation settings,
    no quantizer or loss. (The W16A16 cell a grid plans for that size and seed, hash for hash.)"""
    from dataclasses import replace

    versions = {k: v for k, v in cell.versions.items() if k not in ("quantizer", "loss")}
    twin = replace(cell, method=FULL_PRECISION_METHOD, loss=None, precision=Precision.parse("W16A16").label,
                   quantizer_options={}, loss_options={}, versions=versions, hash="")
    return _with_hash(twin)


def _with_hash(cell: Cell) -> Cell:
    from dataclasses import replace

    return replace(cell, hash=cell_hash(cell.config()))


def _bitscale_version() -> str:
    import bitscale

    return f"bitscale=={bitscale.__version__}"


def _empty_reason(source: str, exp: Experiment, skipped, budget_drops) -> str:
    if budget_drops:
        mt, ct, label = min(budget_drops)
        b = exp.budget
        limits = ", ".join(f"{k} <= {v:.3g}" for k, v in (("model_bits", b.model_bits), ("compute_bits", b.compute_bits))
                           if v is not None)
        return (f"{source}: budget: no cell fits {limits}; the smallest is {label} with model_bits={mt:.3g}, "
                f"compute_bits={ct:.3g}; raise the budget or add smaller models/precisions")
    if skipped:
        label, reason = skipped[0]
        return f"{source}: no runnable cell: every combination is unsupported, e.g. {label}: {reason}"
    return f"{source}: the grid is empty"


def shard_of(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` (1-based) of ``count``: those whose hash is ``index - 1`` modulo ``count``.

    A function of each cell's hash alone, not of the cells still missing when a job starts, so
    ``count`` jobs started at any times (a Slurm job array) cover the grid exactly once.
    """
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {index}/{count}: shards are numbered 1 to {count}")
    return [c for c in cells if int(c.hash, 16) % count == index - 1]
