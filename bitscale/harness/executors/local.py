"""The local executor: cells one after another in this process (bitscale's behaviour without Ray).

Sample shards change nothing here: drawing every chunk in one pass gives the same images as any
split (see ``bitscale.harness.sampling``), so a local run is the reference for every executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from bitscale.harness.cellwork import CellOutcome, ModelCache, execute_cell
from bitscale.harness.executors import CellJob, Executor


class LocalExecutor(Executor):
    #: Asks for the next job only after the previous one's outcome was recorded (the runner claims
    #: each cell on the store for exactly that long).
    one_at_a_time = True

    def __init__(self, device: torch.device | None = None, progress: bool = True) -> None:
        self.cache = ModelCache(device, progress)

    def run(
        self, jobs: Sequence[CellJob], on_change: Callable[[str], None] = lambda label: None
    ) -> Iterator[CellOutcome]:
        for i, job in enumerate(jobs):
            self.running, self.queued = 1, len(jobs) - i - 1
            on_change(job.cell.label)
            yield execute_cell(job.cell, job.plugins, self.cache, job.keep_samples)
        self.running = self.queued = 0
