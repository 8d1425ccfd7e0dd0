"""Run planned cells in-process, one after another, recording each finished cell in the store.

Failure isolation: a plugin that raises, produces NaN/inf, or runs out of memory fails its cell
(stored with the traceback) and the grid goes on. Bad *input* (``BitscaleError``, e.g. a missing
checkpoint file) stops the grid with a clear message instead, since every later cell would fail
the same way. Nothing is written for a cell until it has finished. Tiny-zoo models the cells need
that neither ship with bitscale nor are cached are trained first, one process per core
(``plan_trained``: a cell's hash names its weights, so they are trained before the grid is planned).
"""

from __future__ import annotations

import copy
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bitscale.harness.contracts import GenerativeModel, QuantReport
from bitscale.harness.errors import BitscaleError
from bitscale.harness.evaluation.fid import protocol_fingerprint, score
from bitscale.harness.evaluation.references import reference_for
from bitscale.harness.config import Experiment
from bitscale.harness.planner import PROTOCOL_VERSION, Cell, Plan, plan_grid
from bitscale.harness.plugins import PluginSet
from bitscale.harness.precision import Precision
from bitscale.harness.store import ResultStore
from bitscale.harness.store.result_store import utcnow
from bitscale.zoo.progress import progress_bars


@dataclass
class RunSummary:
    ran: int = 0
    ok: int = 0
    failed: int = 0
    skipped_done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell label, last error line)
    overhead_seconds: list[float] = field(default_factory=list)


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the bitscale source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def default_device() -> torch.device:
    wanted = os.environ.get("BITSCALE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """``n`` labels cycling over the classes (FID protocols sample an equal number per class)."""
    return torch.arange(n) % num_classes


def sample_images(model: GenerativeModel, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """``n`` uint8 (N, 3, H, W) samples with balanced labels, in batches, from one generator seeded with ``seed``."""
    labels = balanced_labels(n, model.num_classes)
    gen = torch.Generator(device=model.device if model.device.type != "meta" else "cpu").manual_seed(seed)
    images = []
    model.module.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            out = model.sample(labels[i : i + batch_size].to(model.device), gen)
            if out.dtype != torch.uint8 or out.dim() != 4 or out.shape[1] != 3:
                raise TypeError(f"sample() must return uint8 (B, 3, H, W), got {out.dtype} {tuple(out.shape)}")
            images.append(out.cpu())
    return torch.cat(images)


class _ModelCache:
    """Keeps the last full-precision model so cells of the same model do not rebuild it."""

    def __init__(self, plugins: PluginSet, device: torch.device, progress: bool = True) -> None:
        self.plugins, self.device, self.progress = plugins, device, progress
        self.key: tuple | None = None
        self.model: GenerativeModel | None = None

    def fresh(self, cell: Cell) -> GenerativeModel:
        key = (cell.family, cell.size, repr(sorted(cell.model_options.items())))
        if key != self.key:
            self.model = None  # free the previous one first
            family = self.plugins.models.get(cell.family)
            opts = family.Options.model_validate(cell.model_options)
            with progress_bars(self.progress):  # building may train a missing tiny-zoo model
                self.model, self.key = family.build(cell.size, opts, self.device), key
        return copy.deepcopy(self.model)  # quantizers edit in place; keep the original pristine


def plan_trained(exp: Experiment, plugins: PluginSet, source: str, progress: bool = True) -> Plan:
    """``plan_grid``, after training the tiny-zoo weights its cells need and the cache lacks.

    A cell's hash names the weights it is measured on (their files' hash), which exist only
    once trained; shipped weights need no training, so with them this is one plan.
    """
    plan = plan_grid(exp, plugins, source)
    if plan.untrained and pretrain_missing(plan.untrained, plugins, progress):
        plan = plan_grid(exp, plugins, source)
    if plan.untrained:
        raise BitscaleError(f"{source}: {plan.untrained[0].label}: its model's weights could not be trained "
                            "(see the errors above)")
    return plan


def pretrain_missing(cells: list[Cell], plugins: PluginSet, progress: bool = True) -> bool:
    """Train the tiny-zoo models ``cells`` need and the cache lacks, in one process per core, before any cell.

    Serial training inside ``build`` would leave every core but one idle for minutes. Families
    that cannot say what they lack (no ``training_units``) still train inside ``build``.
    Returns True when something was trained.
    """
    from bitscale.zoo.parallel import TrainingFailed, train_units, usable_cores
    from bitscale.zoo.units import units_for

    wanted: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}  # (family, options) -> (options, sizes)
    for cell in cells:
        family = plugins.models.get(cell.family)
        if getattr(family, "trainable", False) and hasattr(family, "training_units"):
            key = (cell.family, repr(sorted(cell.model_options.items())))
            sizes = wanted.setdefault(key, (cell.model_options, []))[1]
            if cell.size not in sizes:
                sizes.append(cell.size)
    units = []
    for (name, _), (options, sizes) in wanted.items():
        family = plugins.models.get(name)
        units += units_for(family, sizes, family.Options.model_validate(options))
    if not units:
        return False
    tqdm.write(f"training {len(units)} missing tiny-zoo artifact(s) first", file=sys.stdout)
    try:
        train_units(units, usable_cores(), progress, log=lambda line: tqdm.write(f"  {line}", file=sys.stdout))
    except TrainingFailed as exc:
        # Not fatal: the cells of these models train them again in ``build`` and fail with the traceback.
        tqdm.write(f"bitscale: warning: tiny-zoo training failed: {exc}", file=sys.stderr)
    return True


def _check_finite(model: GenerativeModel) -> None:
    # Parameters must be finite; buffers may hold -inf by design (attention masks), but never NaN.
    for name, p in model.module.named_parameters():
        if not torch.isfinite(p).all():
            raise FloatingPointError(f"the quantized model has NaN/inf values in parameter {name}")
    for name, b in model.module.named_buffers():
        if b.is_floating_point() and torch.isnan(b).any():
            raise FloatingPointError(f"the quantized model has NaN values in buffer {name}")


def run_cell(cell: Cell, plugins: PluginSet, cache: _ModelCache) -> tuple[dict[str, float], dict, QuantReport | None,
                                                                          dict[str, float]]:
    """Quantize, sample and score one cell; returns (metrics, protocol details, report, timings)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    torch.manual_seed(cell.seed)  # quantizers that use the global RNG stay reproducible
    model = cache.fresh(cell)
    timings["build"] = time.perf_counter() - t
    precision = Precision.parse(cell.precision)
    report = None
    if not precision.is_full:
        t = time.perf_counter()
        q_cls = plugins.quantizers.get(cell.method)
        quantizer = q_cls(q_cls.Options.model_validate(cell.quantizer_options))
        loss = None
        if cell.loss:
            l_cls = plugins.losses.get(cell.loss)
            loss = l_cls(l_cls.Options.model_validate(cell.loss_options))
        gen = torch.Generator().manual_seed(cell.seed)
        calib = model.calibration_batches(cell.evaluation["calibration_batches"], gen)
        report = quantizer.quantize(model, precision, calib, loss=loss, generator=gen)
        if not isinstance(report, QuantReport):
            raise TypeError(f"{cell.method}.quantize returned {type(report).__name__}, not QuantReport")
        _check_finite(model)
        timings["quantize"] = time.perf_counter() - t

    t = time.perf_counter()
    n = cell.evaluation["num_samples"]
    images = sample_images(model, n, cell.evaluation["batch_size"], cell.seed)
    timings["sample"] = time.perf_counter() - t

    t = time.perf_counter()
    ref = reference_for(model.dataset)
    metrics = score(images, ref, seed=cell.seed)
    timings["evaluate"] = time.perf_counter() - t
    protocol = {
        "dataset": model.dataset, "reference": ref.reference_hash, "feature_extractor": ref.feature_extractor,
        "num_samples": n, "labels": "balanced", "sampler": model.sampler, "seed": cell.seed,
        "protocol_version": PROTOCOL_VERSION,
    }
    return metrics, protocol, report, timings


def _run_row(cell: Cell, experiment: str, status: str, started, timings: dict[str, float],
             report: QuantReport | None, error: str | None, device: torch.device) -> dict[str, Any]:
    p = Precision.parse(cell.precision)
    return dict(
        cell_hash=cell.hash, source="measured", experiment=experiment, family=cell.family, size=cell.size,
        method=cell.method, loss=cell.loss, precision=cell.precision, w_bits=p.w_bits, a_bits=p.a_bits,
        w_format=str(p.weights), a_format=str(p.activations), seed=cell.seed, num_params=cell.num_params,
        model_bits=float(cell.model_bits), compute_bits=float(cell.compute_bits),
        effective_weight_bits=report.effective_weight_bits if report else (16.0 if p.is_full else None),
        status=status, error=error, notes=report.notes if report else None, config=cell.config(),
        versions={**cell.versions, "torch": torch.__version__}, git_sha=git_sha(), host=socket.gethostname(),
        device=device_description(device), started_at=started, finished_at=utcnow(), timings=timings,
    )


def _claimed(cells: list[Cell], store: ResultStore, summary: RunSummary, retry_failed: bool):
    """Yield the cells to compute, each while holding its claim on the store (until the next one is asked for).

    Other drivers on the same store (another ``bitscale run`` of the grid) skip a claimed cell and
    come back to it at the end, waiting for its claim: they find it done then (or compute it, if its
    driver died). A cell finished meanwhile by another driver is skipped.
    """
    waiting: list[Cell] = []
    for wait, batch in ((False, cells), (True, waiting)):
        for cell in batch:
            with store.claim(cell.hash, wait=wait) as mine:
                if not mine:
                    waiting.append(cell)
                elif store.is_done(cell.hash, include_failed=not retry_failed):
                    summary.skipped_done += 1
                else:
                    yield cell


def run_plan(plan: Plan, store: ResultStore, plugins: PluginSet, *, experiment: str = "", retry_failed: bool = False,
             progress: bool = True, device: torch.device | None = None) -> RunSummary:
    """Run every cell of ``plan`` not yet in ``store``. Safe to interrupt and resume at any point."""
    if plan.untrained:
        raise ValueError(f"{plan.untrained[0].label}: its weights are not trained yet; "
                         "train them (pretrain_missing) and plan again before running")
    device = device or default_device()
    summary = RunSummary()
    store.include(experiment, (c.hash for c in plan.cells))  # shared cells count for this experiment too
    done = store.done_hashes(include_failed=not retry_failed)
    todo = [c for c in plan.cells if c.hash not in done]
    summary.skipped_done = len(plan.cells) - len(todo)
    pretrain_missing(todo, plugins, progress)
    cache = _ModelCache(plugins, device, progress)
    bar = tqdm(_claimed(todo, store, summary, retry_failed), total=len(todo), desc="cells", unit="cell",
               disable=not progress or not todo, dynamic_ncols=True)
    for cell in bar:
        bar.set_postfix_str(cell.label[:60])
        started, t0 = utcnow(), time.perf_counter()
        metrics: dict[str, float] = {}
        protocol = None
        report = None
        timings: dict[str, float] = {}
        try:
            metrics, details, report, timings = run_cell(cell, plugins, cache)
            protocol = (protocol_fingerprint(details), details)
            status, error = "ok", None
        except BitscaleError:
            raise
        except (Exception, MemoryError) as exc:  # noqa: BLE001 - a failing plugin fails its cell only
            status, error = "failed", traceback.format_exc()
            summary.failures.append((cell.label, f"{type(exc).__name__}: {exc}".splitlines()[0][:300]))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        compute = time.perf_counter() - t0
        timings["total"] = compute
        t_store = time.perf_counter()
        row = _run_row(cell, experiment, status, started, timings, report, error, device)
        if protocol is not None:
            row["protocol_fingerprint"] = protocol[0]
        store.record(run=row, metrics=metrics, protocol=protocol)
        summary.overhead_seconds.append(time.perf_counter() - t_store)
        summary.ran += 1
        summary.ok += status == "ok"
        summary.failed += status == "failed"
        # One line per cell even without the bar: CI logs and `nohup` runs show where a grid is.
        result = f"FID {metrics['fid']:.2f}" if status == "ok" else f"FAILED ({summary.failures[-1][1]})"
        tqdm.write(f"  {cell.label}: {result} ({compute:.1f} s)", file=sys.stdout)
        sys.stdout.flush()
    return summary
