"""The Ray executor: each missing cell is a Ray task with its own CPU/GPU request; outcomes stream back.

Workers only compute (``bitscale.harness.cellwork``); the driver records each outcome in the store,
exactly as the local executor's are recorded. A worker process that dies (SIGKILL, out of memory,
node lost) is retried by Ray up to ``max_retries`` times, then its cell is recorded as failed with
the reason. Plugin exceptions are not retried: they fail their cell inside the task, as locally.
A cell split into sample shards is N shard tasks plus one task that gathers and scores them.

Ray is imported here only, and this module only when ``--executor ray`` is chosen.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bitscale.harness.cellwork import CellOutcome, ModelCache, draw_shard, execute_cell, finish_cell
from bitscale.harness.errors import BitscaleError
from bitscale.harness.executors import CellJob, Executor
from bitscale.harness.sampling import num_chunks, shard_chunks
from bitscale.harness.store.result_store import utcnow

try:
    import ray
    from ray.exceptions import RayError
except ImportError:  # pragma: no cover - exercised only without the extra
    ray = None

# Environment a worker on another machine needs (cache, device, plugin switches). Never a URL with
# a password (the store's, a test server's): workers do not write results, and Ray keeps a task's
# environment in its control store.
_FORWARDED_PREFIXES = ("BITSCALE_", "TQDM_DISABLE")
_NOT_FORWARDED = ("BITSCALE_STORE", "BITSCALE_TEST_POSTGRES_URL")

# ------------------------------------------------------------------ worker side

_CACHE: ModelCache | None = None  # per worker process: consecutive cells of one model share it


def _worker_cache(threads: int) -> ModelCache:
    global _CACHE
    torch.set_num_threads(threads)  # the CPUs this task asked Ray for, no more
    if _CACHE is None:
        _CACHE = ModelCache(progress=False)
    return _CACHE


def _cell_task(job: CellJob, threads: int) -> CellOutcome:
    return execute_cell(job.cell, job.plugins, _worker_cache(threads), job.keep_samples)


def _shard_task(job: CellJob, threads: int, chunks: range):
    return draw_shard(job.cell, job.plugins, _worker_cache(threads), chunks)


def _finish_task(job: CellJob, threads: int, *parts) -> CellOutcome:
    torch.set_num_threads(threads)
    return finish_cell(job.cell, list(parts), job.keep_samples, job.plugins, _worker_cache(threads))


# ------------------------------------------------------------------ driver side


def check_address(address: str | None) -> None:
    """BitscaleError now, rather than after Ray's minutes of connection retries, when Ray is missing
    or ``address`` names a host:port that accepts no connection."""
    if ray is None:
        raise BitscaleError("--executor ray needs Ray, which is not installed: pip install 'bitscale[ray]'")
    if address in (None, "auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not port.isdigit():
        raise BitscaleError(f"--ray-address {address}: expected 'auto' or [ray://]host:port")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise BitscaleError(
            f"--ray-address {address}: cannot connect ({exc}); is the Ray head running there? "
            "(`ray start --head`), or leave --ray-address out for a local instance"
        ) from None


def _forwarded_env() -> dict[str, str]:
    from bitscale.harness.store.urls import redact

    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(_FORWARDED_PREFIXES) and k not in _NOT_FORWARDED and redact(v) == v
    }
    # The tiny-zoo weights choice is always said (unset means the shipped weights), never inherited
    # from how the cluster was started: the cells' hashes name the weights of the driver's choice,
    # and each worker checks that it loads those (cellwork._check_weights).
    env.setdefault("BITSCALE_ZOO_WEIGHTS", "shipped")
    return env


class RayExecutor(Executor):
    """Cells as Ray tasks on the cluster at ``address`` (``auto``, ``ray://host:port``), or on a
    local Ray instance sized to this machine when ``address`` is None."""

    def __init__(
        self,
        address: str | None = None,
        *,
        threads_per_cell: int = 1,
        gpus_per_cell: float | None = None,
        max_retries: int = 2,
    ) -> None:
        if ray is None:
            raise BitscaleError("--executor ray needs Ray, which is not installed: pip install 'bitscale[ray]'")
        self.threads, self.gpus, self.max_retries = threads_per_cell, gpus_per_cell, max_retries
        t = time.perf_counter()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is not None:
                kwargs["runtime_env"] = {"env_vars": _forwarded_env()}  # a local instance inherits ours
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any connection failure is the user's address
                reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
                if address is None:
                    raise BitscaleError(f"--executor ray: could not start a local Ray instance: {reason}") from None
                raise BitscaleError(
                    f"--ray-address {address}: cannot connect to a Ray cluster: {reason}; start one "
                    "with `ray start --head` or leave --ray-address out for a local instance"
                ) from None
        self.startup_seconds = time.perf_counter() - t
        self._cell = ray.remote(_cell_task)
        self._shard = ray.remote(_shard_task)
        self._finish = ray.remote(_finish_task)
        self._pending: dict[Any, CellJob] = {}  # final ref of each cell -> its job
        self._refs: dict[str, list[Any]] = {}  # cell hash -> every ref of the cell (to cancel)
        self._slots = 1

    def _gpus_for(self, job: CellJob, cluster_gpus: float) -> float:
        if self.gpus is not None:
            return self.gpus
        declared = getattr(job.plugins.family, "gpus_per_cell", None)
        if declared is not None:
            return float(declared)
        return 1.0 if cluster_gpus > 0 else 0.0

    def _submit(self, job: CellJob, gpus: float) -> Any:
        opts = {"num_cpus": self.threads, "num_gpus": gpus, "max_retries": self.max_retries}
        total = num_chunks(job.cell.evaluation["num_samples"], job.cell.evaluation["batch_size"])
        ranges = shard_chunks(total, job.sample_shards)
        if len(ranges) == 1:
            ref = self._cell.options(**opts).remote(job, self.threads)
            self._refs[job.cell.hash] = [ref]
            return ref
        parts = [self._shard.options(**opts).remote(job, self.threads, chunks) for chunks in ranges]
        ref = self._finish.options(**opts).remote(job, self.threads, *parts)
        self._refs[job.cell.hash] = [*parts, ref]
        return ref

    def _lost(self, job: CellJob, exc: Exception) -> CellOutcome:
        reason = (
            f"the Ray worker running this cell was lost {self.max_retries + 1} time(s) (killed, out of memory "
            f"or its node died); Ray's last error: {type(exc).__name__}: {exc}"
        )
        return CellOutcome(job.cell.hash, "failed", utcnow(), error=reason, summary=reason.splitlines()[0][:300])

    def _outcome(self, ref: Any) -> CellOutcome:
        job = self._pending.pop(ref)
        self._refs.pop(job.cell.hash, None)
        try:
            return ray.get(ref)
        except RayError as exc:
            return self._lost(job, exc)

    def _count(self, on_change: Callable[[str], None]) -> None:
        # Ray does not say cheaply which tasks hold a worker; the cluster's size bounds it.
        self.running = min(len(self._pending), self._slots)
        self.queued = len(self._pending) - self.running
        on_change("")

    def run(self, jobs: list[CellJob], on_change: Callable[[str], None] = lambda label: None) -> Iterator[CellOutcome]:
        resources = ray.cluster_resources()
        cluster_gpus = resources.get("GPU", 0.0)
        if self.threads > resources.get("CPU", 0.0):  # Ray would queue such a task forever
            raise BitscaleError(
                f"--threads {self.threads}: each cell asks for {self.threads} CPUs but the Ray "
                f"cluster has {resources.get('CPU', 0.0):g}; lower --threads"
            )
        gpu_slots = math.inf
        requests = [self._gpus_for(job, cluster_gpus) for job in jobs]
        for job, gpus in zip(jobs, requests):  # checked before anything is submitted
            if gpus > cluster_gpus:
                raise BitscaleError(
                    f"{job.cell.label}: needs {gpus:g} GPU(s) per cell but the Ray cluster has "
                    f"{cluster_gpus:g}; pass --gpus-per-cell 0 to run on CPUs"
                )
            if gpus:
                gpu_slots = min(gpu_slots, cluster_gpus // gpus)
        for job, gpus in zip(jobs, requests):
            self._pending[self._submit(job, gpus)] = job
        self._slots = int(max(1, min(resources.get("CPU", 1.0) // self.threads, gpu_slots)))
        self._count(on_change)
        while self._pending:
            ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=1.0)
            for ref in ready:
                outcome = self._outcome(ref)
                self._count(on_change)
                yield outcome

    def drain(self) -> Iterator[CellOutcome]:
        if not self._pending:
            return
        ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)
        for ref in ready:
            yield self._outcome(ref)

    def close(self) -> None:
        for refs in self._refs.values():
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)  # force: a running cell stops now, not after its minutes of work
                except Exception:  # noqa: BLE001 - already finished or already gone
                    pass
        self._pending.clear()
        self._refs.clear()
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
