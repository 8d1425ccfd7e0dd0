"""Executors: where a grid's cells run. The runner owns planning and the store; an executor only computes.

``Executor.run(jobs)`` yields one ``CellOutcome`` per job, in whatever order cells finish; the
driver records each as it arrives. ``local`` (the default) runs cells one after another in this
process; ``ray`` runs each cell as a Ray task (``bitscale[ray]``), imported only when chosen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bitscale.harness.cellwork import CellOutcome, CellPlugins
from bitscale.harness.planner import Cell


@dataclass(frozen=True)
class CellJob:
    """One missing cell to compute: the cell, its resolved plugins, how to split its sampling."""

    cell: Cell
    plugins: CellPlugins
    sample_shards: int = 1
    keep_samples: str | None = None  # folder for the cell's samples (.npz), or None


class Executor(ABC):
    """Computes cells; never writes the store."""

    #: Cells computing now and cells waiting for a worker (for the progress bar).
    running: int = 0
    queued: int = 0

    @abstractmethod
    def run(self, jobs: list[CellJob], on_change: Callable[[str], None] = lambda label: None) -> Iterator[CellOutcome]:
        """Yield one outcome per job as cells finish; ``on_change(label)`` when a cell starts or counts change."""

    def drain(self) -> Iterator[CellOutcome]:
        """After an interrupt: outcomes already finished but not yet yielded (so none is lost)."""
        return iter(())

    def close(self) -> None:
        """Cancel whatever is still outstanding and release resources."""
