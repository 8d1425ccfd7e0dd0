"""Run an analysis end to end: validate, reuse a stored result or compute it, store numbers and figures.

Each ``run_*`` returns ``(StoredAnalysis, reused)``. Bad input (unknown family, size, layer,
quantizer; a precision that does not parse; a family without generation phases) raises
``BitscaleError`` before anything is computed or written.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bitscale
from bitscale.analysis import activations, errors, noise, plots
from bitscale.analysis.models import Loaded, ModelSpec, check_spec, labels_for, load
from bitscale.analysis.store import StoredAnalysis, analysis_hash, find, save
from bitscale.harness.errors import ConfigError
from bitscale.harness.plugin_loader import get_plugins

#: A computation: the loaded models to (numbers for result.json, arrays for arrays.npz, figures by stem).
Compute = Callable[[Loaded], tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]


def _provenance(spec: ModelSpec) -> dict[str, Any]:
    """What identifies the code and weights, known before anything is built (part of the hash)."""
    plugins = get_plugins()
    family = check_spec(spec, plugins)
    opts = family.Options.model_validate(spec.model_options)
    versions = {
        "bitscale": bitscale.__version__,
        "family": plugins.version_of(plugins.models.entry(spec.family).plugin),
    }
    if spec.method and spec.precision and not _is_full(spec.precision):
        versions["quantizer"] = plugins.version_of(plugins.quantizers.entry(spec.method).plugin)
    return {"versions": versions, "weights": family.weights_id(spec.size, opts)}


def _is_full(precision: str) -> bool:
    from bitscale.precision import Precision

    return Precision.parse(precision).is_full


def _title(spec: ModelSpec) -> str:
    q = "" if _is_full(spec.precision) else f" {spec.method} {spec.precision}"
    return f"{spec.family} {spec.size}{q}"


def execute(
    kind: str,
    spec: ModelSpec,
    params: dict[str, Any],
    root: Path,
    compute: Compute,
    force: bool = False,
    need_quantized: bool = False,
) -> tuple[StoredAnalysis, bool]:
    """Reuse the stored analysis of this config and weights, or compute and store it."""
    check_spec(spec, need_quantized=need_quantized)
    prov = _provenance(spec)
    config = {"model": spec.resolved(), **params}
    digest = analysis_hash(kind, config, prov)
    if not force and (found := find(root, digest)) is not None:
        return found, True
    from bitscale.harness.runner import git_sha

    t = time.perf_counter()
    torch.manual_seed(spec.seed)
    loaded = load(spec, need_quantized=need_quantized)
    numbers, arrays, figures = compute(loaded)
    provenance = {
        **loaded.provenance,
        **prov,
        "git_sha": git_sha(),
        "host": socket.gethostname(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t, 2),
        "torch": torch.__version__,
    }
    document = {
        "kind": kind,
        "hash": digest,
        "title": _title(spec),
        "config": config,
        "provenance": provenance,
        "result": numbers,
    }

    def write_files(folder: Path) -> None:
        if arrays:
            np.savez_compressed(folder / "arrays.npz", **arrays)
        for stem, fig in figures.items():
            plots.write(fig, folder, stem)

    return save(root, digest, document, write_files), False


def run_errors(spec: ModelSpec, num_samples: int, root: Path, force: bool = False) -> tuple[StoredAnalysis, bool]:
    """Fig. 2 for the quantized model of ``spec`` against its full-precision twin."""

    def compute(m: Loaded):
        labels = labels_for(m.fp, num_samples)
        res = errors.analyze_errors(m.fp, m.quantized, labels, spec.seed)
        return res, {}, {"errors": plots.errors_figure(res, _title(spec))}

    return execute("errors", spec, {"num_samples": num_samples}, root, compute, force, need_quantized=True)


def run_noise(
    spec: ModelSpec,
    num_samples: int,
    snrs: list[float],
    step: int | None,
    accumulation_snr: float,
    fraction: float,
    root: Path,
    force: bool = False,
) -> tuple[StoredAnalysis, bool]:
    """Fig. 3a (noise at one step, swept SNR) and Fig. 3b (noise in the first ``fraction`` of steps)."""
    if len(snrs) < 3:
        raise ConfigError(f"--snr needs at least 3 values for a correlation, got {len(snrs)}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction must be in (0, 1], got {fraction}")

    def compute(m: Loaded):
        model = m.quantized or m.fp
        labels = labels_for(model, num_samples)
        n, step_labels = noise.num_steps(model, labels, spec.seed)
        at = n // 2 if step is None else step
        if not 0 <= at < n:
            raise ConfigError(f"--step {at}: {spec.family} {spec.size} generates in steps 0..{n - 1}")
        tol = noise.noise_tolerance(model, labels, spec.seed, snrs, at)
        acc = noise.accumulation(model, labels, spec.seed, accumulation_snr, fraction)
        title = _title(spec)
        figs = {
            "noise-tolerance": plots.noise_figure(tol, title),
            "accumulation": plots.accumulation_figure(acc, step_labels, title),
        }
        return {"tolerance": tol, "accumulation": acc, "step_labels": step_labels}, {}, figs

    params = {
        "num_samples": num_samples,
        "snr_db": snrs,
        "step": step,
        "accumulation_snr_db": accumulation_snr,
        "fraction": fraction,
    }
    return execute("noise-tolerance", spec, params, root, compute, force)


def run_activations(
    spec: ModelSpec, num_samples: int, kinds: list[str], blocks: list[int] | None, root: Path, force: bool = False
) -> tuple[StoredAnalysis, bool]:
    """Fig. 4 / 11-16: input activations of ``kinds`` x ``blocks`` over the generation steps."""

    def compute(m: Loaded):
        model = m.quantized or m.fp
        layers = activations.resolve_layers(model, spec.family, kinds, blocks)
        res = activations.collect(model, labels_for(model, num_samples), spec.seed, layers)
        arrays = {key: lay.pop("channel_absmax") for key, lay in res["layers"].items()}
        figs = plots.activation_figures(
            {**res, "layers": {k: {**v, "channel_absmax": arrays[k]} for k, v in res["layers"].items()}}, _title(spec)
        )
        return res, arrays, figs

    return execute(
        "activations", spec, {"num_samples": num_samples, "kinds": kinds, "blocks": blocks}, root, compute, force
    )
