"""Train tiny-zoo units in worker processes, a shared stage before the sizes trained on it.

Each unit is trained by exactly one process, on one thread, from its own seed, so the weights
are the same whatever the number of processes; the cache's file locks still guard against
other ``bitscale`` processes training the same artifact. The longest chain of work starts first
(a shared stage counts the longest size that waits for it), which keeps both cores busy to the end.
With one job the units are trained here, in the same order, with progress bars.

A failing unit is reported with its traceback as soon as it fails; the units that wait for it
are not started, the others go on, and ``TrainingFailed`` names them all at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from bitscale.harness.progress import progress_bars
from bitscale.harness.threads import single_thread
from bitscale.zoo.units import TrainingUnit


class TrainingFailed(RuntimeError):
    """Some units failed (or waited for one that failed); the message names their artifacts."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _describe(artifact: str, manifest: dict[str, Any]) -> str:
    """One line per trained artifact: its final loss and training time (or that another process trained it)."""
    if manifest.get("loaded"):
        return f"{artifact}: trained by another process meanwhile; loaded"
    return f"{artifact}: final loss {manifest.get('final_loss', float('nan')):.4f} ({manifest.get('seconds', 0):.1f} s)"


def train_units(
    units: Sequence[TrainingUnit], jobs: int, progress: bool = True, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Train ``units`` in ``jobs`` processes; return {artifact: manifest}. Raises ``TrainingFailed``."""
    unique: dict[str, TrainingUnit] = {}
    for unit in units:  # an artifact is trained once, by its first unit (sampler options may differ, not weights)
        unique.setdefault(unit.artifact, unit)
    units = list(unique.values())
    priority = _priorities(units)
    waiting = sorted(units, key=lambda u: priority[u.artifact], reverse=True)  # stable: ties keep their order
    jobs = max(1, min(jobs, len(waiting)))
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}  # artifact -> why
    running: dict[Future, TrainingUnit] = {}
    pool = (
        _InProcess()
        if jobs == 1
        else ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(os.getpid(),)
        )
    )
    broken = False  # a worker died: the pool takes no more work
    try:
        while waiting or running:
            for unit in [u for u in waiting if broken or u.after in failed]:
                waiting.remove(unit)
                failed[unit.artifact] = f"not trained: {'a worker process died' if broken else unit.after + ' failed'}"
            blocked = {u.artifact for u in waiting} | {u.artifact for u in running.values()}
            for unit in [u for u in waiting if u.after not in blocked][: jobs - len(running)]:
                waiting.remove(unit)
                log(f"training {unit.artifact}")
                running[pool.submit(_train, unit, progress and jobs == 1)] = unit
            if not running:  # what still waits names a unit that is not there to finish
                failed.update({u.artifact: f"not trained: waits for {u.after}, which is not trained" for u in waiting})
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = running.pop(future)
                try:
                    ok, result = future.result()
                except BrokenProcessPool:  # killed (out of memory?) or crashed outside Python
                    ok, result, broken = (
                        False,
                        "BrokenProcessPool: its worker process died (see above; killed for memory?)",
                        True,
                    )
                if ok:
                    done[unit.artifact] = result
                    log(_describe(unit.artifact, result))
                else:
                    failed[unit.artifact] = result.strip().splitlines()[-1]
                    print(f"bitscale: training {unit.artifact} failed:\n{result}", file=sys.stderr, flush=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        raise TrainingFailed("; ".join(f"{a}: {why}" for a, why in failed.items()))
    return done


def _priorities(units: Sequence[TrainingUnit]) -> dict[str, float]:
    """{artifact: its unit's cost plus that of the longest chain waiting for it}."""
    memo: dict[str, float] = {}

    def chain(unit: TrainingUnit) -> float:
        if unit.artifact not in memo:
            memo[unit.artifact] = unit.cost + max((chain(u) for u in units if u.after == unit.artifact), default=0.0)
        return memo[unit.artifact]

    return {u.artifact: chain(u) for u in units}


def _start_worker(parent: int) -> None:
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(1)  # one core per worker: loading and sampling too, not only the training loops


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this worker when its parent dies, however it dies (``kill -9`` too).

    Without it a killed ``bitscale`` leaves its workers re-parented to PID 1, each holding its
    memory and blocked forever on a queue nobody reads. The signal follows the parent *thread*
    that started the worker: ``train_units`` submits (and so spawns) from the thread that waits
    for the results. Linux only (``prctl``); elsewhere an idle worker exits when it finds the
    pool's pipe closed, a busy one after its unit.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def _train(unit: TrainingUnit, progress: bool) -> tuple[bool, Any]:
    """(True, manifest), or (False, traceback text): plain values, whatever the exception was."""
    try:
        with progress_bars(progress), single_thread():
            return True, dict(unit.train() or {})
    except Exception:  # noqa: BLE001 - reported with the artifact's name by the caller
        return False, traceback.format_exc()


class _InProcess:
    """The pool interface for one job: trains at submit, here, with no worker start-up."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass
