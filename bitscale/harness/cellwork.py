"""What a worker does for one cell: build, quantize, sample, score; the same code under every executor.

The unit is a cell (``execute_cell``) or, for big cells, a shard of its sample chunks
(``draw_shard``) whose results one ``finish_cell`` gathers and scores once. Everything these
functions take and return is plain picklable data, so an executor may run them in this process
or ship them to another machine. They never touch the store: the driver records outcomes.

A plugin that raises, produces NaN/inf, or runs out of memory fails its cell (``status="failed"``
with the traceback). Bad *input* (``BitscaleError``) is carried back as ``fatal`` so the driver
stops the grid, since every later cell would fail the same way.
"""

from __future__ import annotations

import copy
import hashlib
import os
import platform
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from bitscale.harness.contracts import GenerativeModel, ModelFamily, QuantReport
from bitscale.harness.errors import BitscaleError
from bitscale.harness.planner import PROTOCOL_VERSION, Cell, fp_twin
from bitscale.harness.plugin_loader import PluginSet
from bitscale.harness.progress import progress_bars
from bitscale.harness.sampling import num_chunks, sample_chunks
from bitscale.harness.store.result_store import utcnow
from bitscale.precision import Precision


@dataclass(frozen=True)
class CellPlugins:
    """The plugin objects one cell uses, resolved by the driver so a worker needs no plugin loading."""

    family: ModelFamily
    quantizer: type | None = None
    loss: type | None = None


def resolve_plugins(cell: Cell, plugins: PluginSet) -> CellPlugins:
    family = plugins.models.get(cell.family)
    if Precision.parse(cell.precision).is_full:
        return CellPlugins(family)
    return CellPlugins(
        family, plugins.quantizers.get(cell.method), plugins.losses.get(cell.loss) if cell.loss else None
    )


@dataclass
class CellOutcome:
    """A finished cell as the driver records it: ``ok`` with metrics, or ``failed`` with the reason."""

    cell_hash: str
    status: str  # "ok" | "failed"
    started_at: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    protocol: dict[str, Any] | None = None
    report: QuantReport | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # the traceback (or the executor's reason), stored with the run
    summary: str | None = None  # one line of it, for the console
    host: str | None = None
    device: str | None = None
    samples: str | None = None  # path of the kept samples (.npz), when asked for
    fatal: BitscaleError | None = None  # bad input: the driver stops the grid with this error


#: The protocol's ``coupling`` of a model that declares none: all its randomness comes from the chunk's generator,
#: so a quantized model and its twin share it as far as they consume it alike (DiT: the same initial noise).
CHUNK_GENERATOR = "chunk-generator"


@dataclass
class SampleShard:
    """One shard's images of a cell, plus what scoring needs to know about the model."""

    chunks: range
    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    sampler: dict[str, Any]
    report: QuantReport | None
    timings: dict[str, float]
    weights_digest: str  # every shard must have sampled the same quantized weights
    host: str
    device: str
    started_at: datetime
    coupling: str | None = None  # the model's ``coupling`` (or CHUNK_GENERATOR): part of the protocol


def default_device() -> torch.device:
    wanted = os.environ.get("BITSCALE_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class ModelCache:
    """Keeps the last full-precision model so cells of the same model do not rebuild it."""

    def __init__(self, device: torch.device | None = None, progress: bool = True) -> None:
        self.device, self.progress = device or default_device(), progress
        self.key: tuple | None = None
        self.model: GenerativeModel | None = None

    def fresh(self, cell: Cell, family: ModelFamily) -> GenerativeModel:
        key = (cell.family, cell.size, repr(sorted(cell.model_options.items())))
        if key != self.key:
            self.model = None  # free the previous one first
            opts = family.Options.model_validate(cell.model_options)
            _check_weights(cell, family, opts)
            with progress_bars(self.progress):  # building may train a missing tiny-zoo model
                self.model, self.key = family.build(cell.size, opts, self.device), key
        return copy.deepcopy(self.model)  # quantizers edit in place; keep the original pristine


def _check_weights(cell: Cell, family: ModelFamily, opts: Any) -> None:
    """The weights this process would load are the ones the cell's hash names (``versions["weights"]``).

    A Ray worker on another machine with its own cache, or one whose zoo-weights setting differs
    from the driver's, would otherwise measure other weights under this cell's hash.
    """
    planned = cell.versions.get("weights")
    if planned is None:
        return
    here = family.weights_id(cell.size, opts)
    if here != planned:
        raise BitscaleError(
            f"{cell.label}: {socket.gethostname()} would load other weights than the grid was planned with "
            f"({here or 'none trained here'} instead of {planned}); give every worker the driver's BITSCALE_CACHE "
            "folder (shared) or use the shipped tiny-zoo weights"
        )


def _check_finite(model: GenerativeModel) -> None:
    # Parameters must be finite; buffers may hold -inf by design (attention masks), but never NaN.
    for name, p in model.module.named_parameters():
        if not torch.isfinite(p).all():
            raise FloatingPointError(f"the quantized model has NaN/inf values in parameter {name}")
    for name, b in model.module.named_buffers():
        if b.is_floating_point() and torch.isnan(b).any():
            raise FloatingPointError(f"the quantized model has NaN values in buffer {name}")


def _weights_digest(model: GenerativeModel) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def quantized_model(
    cell: Cell, plugins: CellPlugins, cache: ModelCache
) -> tuple[GenerativeModel, QuantReport | None, dict[str, float]]:
    """The cell's model, quantized to its precision (deterministic given the cell's seed)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    torch.manual_seed(cell.seed)  # quantizers that use the global RNG stay reproducible
    model = cache.fresh(cell, plugins.family)
    timings["build"] = time.perf_counter() - t
    precision = Precision.parse(cell.precision)
    report = None
    if not precision.is_full:
        t = time.perf_counter()
        q_cls = plugins.quantizer
        quantizer = q_cls(q_cls.Options.model_validate(cell.quantizer_options))
        loss = None
        if plugins.loss is not None:
            loss = plugins.loss(plugins.loss.Options.model_validate(cell.loss_options))
        gen = torch.Generator().manual_seed(cell.seed)
        calib = model.calibration_batches(cell.evaluation["calibration_batches"], gen)
        report = quantizer.quantize(model, precision, calib, loss=loss, generator=gen)
        if not isinstance(report, QuantReport):
            raise TypeError(f"{cell.method}.quantize returned {type(report).__name__}, not QuantReport")
        _check_finite(model)
        timings["quantize"] = time.perf_counter() - t
    return model, report, timings


def _draw(cell: Cell, plugins: CellPlugins, cache: ModelCache, chunks: range | None, digest: bool) -> SampleShard:
    started = utcnow()
    model, report, timings = quantized_model(cell, plugins, cache)
    n, bs = cell.evaluation["num_samples"], cell.evaluation["batch_size"]
    chunks = chunks if chunks is not None else range(num_chunks(n, bs))
    t = time.perf_counter()
    images, labels = sample_chunks(model, n, bs, cell.seed, chunks)
    timings["sample"] = time.perf_counter() - t
    return SampleShard(
        chunks,
        images,
        labels,
        model.dataset,
        dict(model.sampler),
        report,
        timings,
        _weights_digest(model) if digest else "",
        socket.gethostname(),
        device_description(model.device),
        started,
        getattr(model, "coupling", None) or CHUNK_GENERATOR,
    )


#: What draws the images of a cell's W16A16 twin when its features are not cached: (twin cell) -> images, labels.
TwinDraw = Callable[[Cell], tuple[torch.Tensor, torch.Tensor]]


def _twin_drawer(plugins: CellPlugins | None, cache: ModelCache | None) -> TwinDraw | None:
    if plugins is None:
        return None

    def draw(twin: Cell) -> tuple[torch.Tensor, torch.Tensor]:
        model, _, _ = quantized_model(twin, CellPlugins(plugins.family), cache or ModelCache(progress=False))
        n, bs = twin.evaluation["num_samples"], twin.evaluation["batch_size"]
        return sample_chunks(model, n, bs, twin.seed, range(num_chunks(n, bs)))

    return draw


def _paired_features_name(cell_hash: str, reference_hash: str) -> str:
    return f"paired/{reference_hash}/{cell_hash}"


def _save_paired_features(cell: Cell, ref: Any, feats: Any, labels: torch.Tensor) -> None:
    """Keep a W16A16 cell's FID-layer features: its quantized cells are scored against them (paired metrics)."""
    from bitscale.harness.artifacts import cache as files

    name = _paired_features_name(cell.hash, ref.reference_hash)
    with files.locked(name):
        files.save_artifact(
            name,
            {"features": torch.as_tensor(feats), "labels": labels.cpu()},
            {"cell": cell.hash, "reference": ref.reference_hash, "count": len(labels)},
        )


def _twin_features(cell: Cell, ref: Any, draw: TwinDraw | None) -> tuple[Any, torch.Tensor] | None:
    """(features, labels) of ``cell``'s W16A16 twin: cached by the twin's run, else drawn now (same seed, labels
    and noise); None when neither is possible (a sharded cell finished without its plugins)."""
    from bitscale.harness.artifacts import cache as files
    from bitscale.harness.evaluation.fid import score_with_features

    twin = fp_twin(cell)
    found = files.load_artifact(_paired_features_name(twin.hash, ref.reference_hash))
    if found is not None:
        return found[0]["features"].double().numpy(), found[0]["labels"]
    if draw is None:
        return None
    images, labels = draw(twin)
    _, feats = score_with_features(images, ref, seed=twin.seed)
    _save_paired_features(twin, ref, feats, labels)
    return feats, labels


def _score(
    cell: Cell, shards: list[SampleShard], keep_samples: str | None, draw_twin: TwinDraw | None = None
) -> tuple[dict, dict, str | None, float]:
    from bitscale.harness.evaluation.fid import fid_reference, score_with_features
    from bitscale.harness.evaluation.paired import paired_metrics
    from bitscale.harness.evaluation.references import reference_for

    digests = {s.weights_digest for s in shards}
    if len(digests) > 1:
        # Shards re-quantize independently; a non-deterministic quantizer would score a mix of models.
        raise RuntimeError(
            f"the {len(shards)} sample shards quantized to different weights; the quantizer is "
            "not deterministic on this hardware, so run this cell with --sample-shards 1"
        )
    shards = sorted(shards, key=lambda s: s.chunks.start)
    images = torch.cat([s.images for s in shards])
    labels = torch.cat([s.labels for s in shards])
    t = time.perf_counter()
    ref = reference_for(shards[0].dataset)
    metrics, feats = score_with_features(images, ref, seed=cell.seed)
    if Precision.parse(cell.precision).is_full:
        _save_paired_features(cell, ref, feats, labels)
    else:
        twin = _twin_features(cell, ref, draw_twin)
        if twin is not None:
            if not torch.equal(twin[1], labels):
                raise RuntimeError("the W16A16 twin drew other labels than this cell; paired metrics need the same")
            metrics.update(paired_metrics(feats, twin[0], labels.numpy(), fid_reference(ref), seed=cell.seed))
    protocol = {
        "dataset": shards[0].dataset,
        "reference": ref.reference_hash,
        "feature_extractor": ref.feature_extractor,
        "num_samples": len(images),
        "labels": "balanced",
        "sampler": shards[0].sampler,
        "seed": cell.seed,
        "coupling": shards[0].coupling,
        "protocol_version": PROTOCOL_VERSION,
    }
    path = None
    if keep_samples is not None:
        from bitscale.harness.samples import write_samples

        path = str(write_samples(Path(keep_samples), images, labels))
    return metrics, protocol, path, time.perf_counter() - t


def _failed(cell: Cell, started: datetime, exc: BaseException, timings: dict[str, float]) -> CellOutcome:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return CellOutcome(
        cell.hash,
        "failed",
        started,
        timings=timings,
        error=traceback.format_exc(),
        summary=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
        host=socket.gethostname(),
        device=device_description(default_device()),
    )


def _finish(
    cell: Cell, shards: list[SampleShard], keep_samples: str | None, t0: float | None, draw_twin: TwinDraw | None = None
) -> CellOutcome:
    """Score gathered shards. ``t0``: when the (unsharded) cell started; None sums the shards' compute."""
    metrics, protocol, path, t_eval = _score(cell, shards, keep_samples, draw_twin)
    timings: dict[str, float] = {}
    for s in shards:  # compute summed over shards: what the cell cost, wherever it ran
        for k, v in s.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    timings["evaluate"] = t_eval
    timings["total"] = time.perf_counter() - t0 if t0 is not None else sum(timings.values())
    if len(shards) > 1:
        timings["shards"] = float(len(shards))
    started = min(s.started_at for s in shards)
    return CellOutcome(
        cell.hash,
        "ok",
        started,
        metrics,
        protocol,
        shards[0].report,
        timings,
        host=shards[0].host,
        device=shards[0].device,
        samples=path,
    )


def execute_cell(cell: Cell, plugins: CellPlugins, cache: ModelCache, keep_samples: str | None = None) -> CellOutcome:
    """Run one whole cell; never raises for a plugin's fault (see the module docstring)."""
    started, t0 = utcnow(), time.perf_counter()
    try:
        return _finish(
            cell, [_draw(cell, plugins, cache, None, digest=False)], keep_samples, t0, _twin_drawer(plugins, cache)
        )
    except BitscaleError as exc:
        return CellOutcome(cell.hash, "failed", started, fatal=exc)
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - a failing plugin fails its cell only
        return _failed(cell, started, exc, {"total": time.perf_counter() - t0})


def draw_shard(cell: Cell, plugins: CellPlugins, cache: ModelCache, chunks: range) -> SampleShard | CellOutcome:
    """One shard of a cell's samples, or the cell's failed outcome when the plugin failed."""
    started, t0 = utcnow(), time.perf_counter()
    try:
        return _draw(cell, plugins, cache, chunks, digest=True)
    except BitscaleError as exc:
        return CellOutcome(cell.hash, "failed", started, fatal=exc)
    except (Exception, MemoryError) as exc:  # noqa: BLE001
        return _failed(cell, started, exc, {"total": time.perf_counter() - t0})


def finish_cell(
    cell: Cell,
    parts: list[SampleShard | CellOutcome],
    keep_samples: str | None = None,
    plugins: CellPlugins | None = None,
    cache: ModelCache | None = None,
) -> CellOutcome:
    """Gather the shards of a cell and score them once; the first failed shard fails the cell.
    With ``plugins`` a quantized cell whose W16A16 twin's features are not cached here draws the twin."""
    started, t0 = utcnow(), time.perf_counter()
    for part in parts:
        if isinstance(part, CellOutcome):
            return part
    try:
        return _finish(cell, parts, keep_samples, None, _twin_drawer(plugins, cache))  # type: ignore[arg-type]
    except BitscaleError as exc:
        return CellOutcome(cell.hash, "failed", started, fatal=exc)
    except (Exception, MemoryError) as exc:  # noqa: BLE001
        return _failed(cell, started, exc, {"total": time.perf_counter() - t0})
