"""Expand an experiment into cells: models x sizes x quantizers x (losses) x precisions x seeds.

Every cell gets a content hash of its resolved config, the versions of the plugins it uses and
the evaluation protocol; the store skips cells whose hash is already there, which is what makes
a grid resumable after Ctrl-C or ``kill -9``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# The plan's data types live in the torch-free ``cells`` module (a stored plan is read without plugins).
from bitscale.harness.cells import (  # noqa: F401 - re-exported: callers import them from the planner
    FULL_PRECISION_METHOD,
    PROTOCOL_VERSION,
    UNTRAINED,
    Cell,
    Plan,
    bitscale_version,
    cell_hash,
    fp_twin,
    shard_of,
    with_hash,
)
from bitscale.harness.config import Experiment, format_validation_error
from bitscale.harness.contracts import PluginOptions
from bitscale.harness.errors import ConfigError, PluginError
from bitscale.harness.plugin_loader import PluginSet
from bitscale.precision import compute_bits, model_bits


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
            raise ConfigError(
                f"{source}: quantizers[{i}]: {entry.name} trains with a distillation loss; list one in `losses`"
            )

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
                raise ConfigError(
                    f"{source}: models[{mi}].sizes[{si}]: {spec.family} has no size {size!r}; "
                    f"choose from {', '.join(family.sizes)}"
                )
        for size in sizes:
            n_params = family.num_params(size, fam_opts)
            base_versions = {"bitscale": bitscale_version(), "model": plugins.version_of(fam_entry.plugin)}
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
                            combos.extend(
                                (q_entry.name, q_entry, q_opts, l_entry, l_opts) for l_entry, l_opts in losses
                            )
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
                            family=spec.family,
                            size=size,
                            method=method,
                            loss=l_entry.name if l_entry else None,
                            precision=prec.label,
                            seed=seed,
                            model_options=fam_opts.model_dump(mode="json"),
                            quantizer_options=q_opts.model_dump(mode="json") if q_opts is not None else {},
                            loss_options=l_opts.model_dump(mode="json") if l_opts is not None else {},
                            num_params=n_params,
                            versions=versions,
                            evaluation=fam_evaluation,
                        )
                        cells.append(with_hash(cell))
    if not cells:
        raise ConfigError(_empty_reason(source, exp, skipped, budget_drops))
    # A model or size listed twice plans the same cell twice: run it once.
    unique = list({c.hash: c for c in cells}.values())
    return Plan(unique, skipped)


def _empty_reason(source: str, exp: Experiment, skipped, budget_drops) -> str:
    if budget_drops:
        mt, ct, label = min(budget_drops)
        b = exp.budget
        limits = ", ".join(
            f"{k} <= {v:.3g}"
            for k, v in (("model_bits", b.model_bits), ("compute_bits", b.compute_bits))
            if v is not None
        )
        return (
            f"{source}: budget: no cell fits {limits}; the smallest is {label} with model_bits={mt:.3g}, "
            f"compute_bits={ct:.3g}; raise the budget or add smaller models/precisions"
        )
    if skipped:
        label, reason = skipped[0]
        return f"{source}: no runnable cell: every combination is unsupported, e.g. {label}: {reason}"
    return f"{source}: the grid is empty"
