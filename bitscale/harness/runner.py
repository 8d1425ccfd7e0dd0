"""Run the planned cells not yet in the store on an executor, recording each finished cell.

The runner is the *driver*: it plans what is missing, hands cells to an executor (``local``: one
after another in this process; ``ray``: tasks on a cluster), and records every outcome in the
store as it arrives, one transaction per cell. Executors never write the store. Failure
isolation is the cell's (see ``bitscale.harness.cellwork``): a plugin that raises, produces
NaN/inf, or runs out of memory fails its cell and the grid goes on; bad *input*
(``BitscaleError``) stops the grid. On Ctrl-C the outcomes that already finished are recorded
before outstanding work is cancelled. Tiny-zoo models the cells need that neither ship with
bitscale nor are cached are trained before the grid is planned, by the caller
(``bitscale.zoo.pretrain.plan_trained``: a cell's hash names its weights); a plan whose weights are
untrained is refused here. With the local executor each
cell is claimed on the store while it is computed, so several drivers on one store split a grid.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bitscale.harness.cells import Cell, Plan, pending_cells
from bitscale.harness.cellwork import CellOutcome, resolve_plugins
from bitscale.harness.evaluation.fid import protocol_fingerprint
from bitscale.harness.executors import CellJob, Executor
from bitscale.harness.plugin_loader import PluginSet
from bitscale.harness.store import ResultStore
from bitscale.harness.store.result_store import utcnow
from bitscale.precision import Precision


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
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _run_row(cell: Cell, experiment: str, outcome: CellOutcome) -> dict[str, Any]:
    p = Precision.parse(cell.precision)
    report = outcome.report
    row = dict(
        cell_hash=cell.hash,
        source="measured",
        experiment=experiment,
        family=cell.family,
        size=cell.size,
        method=cell.method,
        loss=cell.loss,
        precision=cell.precision,
        w_bits=p.w_bits,
        a_bits=p.a_bits,
        w_format=str(p.weights),
        a_format=str(p.activations),
        seed=cell.seed,
        num_params=cell.num_params,
        model_bits=float(cell.model_bits),
        compute_bits=float(cell.compute_bits),
        effective_weight_bits=report.effective_weight_bits if report else (16.0 if p.is_full else None),
        status=outcome.status,
        error=outcome.error,
        notes=report.notes if report else None,
        config=cell.config(),
        versions={**cell.versions, "torch": torch.__version__},
        git_sha=git_sha(),
        host=outcome.host or socket.gethostname(),
        device=outcome.device,
        started_at=outcome.started_at,
        finished_at=utcnow(),
        timings=outcome.timings,
        samples=outcome.samples,
    )
    if outcome.protocol is not None:
        row["protocol_fingerprint"] = protocol_fingerprint(outcome.protocol)
    return row


def _record(
    outcome: CellOutcome, cell: Cell, store: ResultStore, experiment: str, summary: RunSummary, force: bool = False
) -> None:
    if outcome.fatal is not None:
        raise outcome.fatal  # bad input: every later cell would fail the same way
    t_store = time.perf_counter()
    protocol = (protocol_fingerprint(outcome.protocol), outcome.protocol) if outcome.protocol is not None else None
    store.record(run=_run_row(cell, experiment, outcome), metrics=outcome.metrics, protocol=protocol, replace_ok=force)
    summary.overhead_seconds.append(time.perf_counter() - t_store)
    summary.ran += 1
    summary.ok += outcome.status == "ok"
    summary.failed += outcome.status == "failed"
    if outcome.status == "failed":
        summary.failures.append((cell.label, outcome.summary or "failed"))
    # One line per cell even without the bar: CI logs and `nohup` runs show where a grid is.
    result = f"FID {outcome.metrics['fid']:.2f}" if outcome.status == "ok" else f"FAILED ({summary.failures[-1][1]})"
    tqdm.write(f"  {cell.label}: {result} ({outcome.timings.get('total', 0.0):.1f} s)", file=sys.stdout)
    sys.stdout.flush()


class _ClaimedJobs:
    """The jobs of ``cells`` for an executor that takes them one at a time (local), each claimed on the store.

    A cell's claim is held from the moment the executor asks for it until it asks for the next one,
    i.e. while the cell is computed and its outcome recorded. Other drivers on the same store
    (another ``bitscale run`` of the grid) skip a claimed cell and come back to it at the end,
    waiting for its claim: they find it done then (or compute it, if its driver died). A cell
    finished meanwhile by another driver is skipped.
    """

    def __init__(
        self,
        cells: list[Cell],
        make: Callable[[Cell], CellJob],
        store: ResultStore,
        summary: RunSummary,
        retry_failed: bool,
        force: bool = False,
    ) -> None:
        self.cells, self.make, self.store, self.summary, self.retry_failed = cells, make, store, summary, retry_failed
        self.force = force  # every cell is computed again, stored or not

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self):
        waiting: list[Cell] = []
        for wait, batch in ((False, self.cells), (True, waiting)):
            for cell in batch:
                with self.store.claim(cell.hash, wait=wait) as mine:
                    if not mine:
                        waiting.append(cell)
                    elif not self.force and self.store.is_done(cell.hash, include_failed=not self.retry_failed):
                        self.summary.skipped_done += 1
                    else:
                        yield self.make(cell)


def run_plan(
    plan: Plan,
    store: ResultStore,
    plugins: PluginSet,
    *,
    experiment: str = "",
    retry_failed: bool = False,
    progress: bool = True,
    device: torch.device | None = None,
    executor: Executor | Callable[[], Executor] | None = None,
    sample_shards: int = 1,
    keep_samples: str | Path | None = None,
    force: bool = False,
) -> RunSummary:
    """Run every cell of ``plan`` not yet in ``store`` on ``executor`` (default: local, in this process).

    ``executor`` may be a factory, called only when some cell is missing (a Ray instance takes seconds
    to start). The runner closes it when done.
    Safe to interrupt and resume at any point. ``sample_shards`` splits each cell's sampling into
    that many tasks (same images for any value); ``keep_samples`` keeps each cell's images as an
    ``.npz`` in that folder and records its path on the run row. ``force`` computes every cell again,
    stored or not, and replaces each stored row with the new one (one transaction per cell).
    """
    if plan.untrained:
        raise ValueError(
            f"{plan.untrained[0].label}: its weights are not trained yet; "
            "train them (bitscale.zoo.pretrain.plan_trained) and plan again before running"
        )
    summary = RunSummary()
    todo = pending_cells(plan, store, experiment, retry_failed, force)
    summary.skipped_done = len(plan.cells) - len(todo)
    if not todo:
        return summary
    if executor is None:
        from bitscale.harness.executors.local import LocalExecutor

        executor = LocalExecutor(device, progress)
    elif not isinstance(executor, Executor):
        executor = executor()
    keep = str(Path(keep_samples).resolve()) if keep_samples is not None else None

    def job(cell: Cell) -> CellJob:
        return CellJob(cell, resolve_plugins(cell, plugins), sample_shards, keep)

    # Claims need an executor that takes cells one at a time; Ray submits them all at once, and a
    # second Ray driver at worst computes a cell twice (the store keeps one row).
    jobs = (
        _ClaimedJobs(todo, job, store, summary, retry_failed, force)
        if getattr(executor, "one_at_a_time", False)
        else [job(c) for c in todo]
    )
    by_hash = {c.hash: c for c in todo}
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress, dynamic_ncols=True)
    current = [""]

    def show(label: str) -> None:
        current[0] = label or current[0]
        bar.set_postfix_str(
            f"{executor.running} running, {executor.queued} queued" + (f" | {current[0][:50]}" if current[0] else "")
        )

    try:
        for outcome in executor.run(jobs, show):
            _record(outcome, by_hash[outcome.cell_hash], store, experiment, summary, force)
            bar.update(1)
    except KeyboardInterrupt:
        for outcome in executor.drain():  # finished while we were interrupted: keep them
            if outcome.fatal is None:
                _record(outcome, by_hash[outcome.cell_hash], store, experiment, summary, force)
        raise
    finally:
        executor.close()
        bar.close()
    return summary
