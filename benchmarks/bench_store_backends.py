"""Harness overhead per cell on PostgreSQL against SQLite, in one run (issue 14: < 50 ms per cell).

Per cell the runner claims the cell, checks it is not done, and records it (one transaction:
run row, metrics, protocol). Both stores start with 2,000 runs so the done-check looks up a
realistic index, and the PostgreSQL server runs with its default durability (fsync on), as a
shared store would. The server is a throwaway one on 127.0.0.1 (``bitscale.testing.postgres``):
a store on another machine adds one network round trip per statement (about four per cell).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import datetime

from bitscale.harness.store import ResultStore
from bitscale.testing import synthetic
from bitscale.testing.postgres import PostgresUnavailable, TemporaryPostgres

PREFILL = synthetic.SyntheticGrid(
    families={f"fam{i}": {"d1": 100_000, "d2": 200_000, "d4": 400_000, "d8": 800_000} for i in range(6)},
    methods={"rtn": 1.0, "gptq": 0.9, "gptvq": 0.95, "omniquant": 0.92},
    seeds=list(range(4)),
)  # 6 x 4 sizes x (1 + 5 x 4) x 4 seeds = 2,016 runs
CELLS = 200


def per_cell(store: ResultStore) -> tuple[list[float], float]:
    """Seconds of claim + done-check + record for each of ``CELLS`` new cells, and this process's CPU seconds."""
    template = synthetic.records(PREFILL)[5]
    now = datetime(2026, 1, 1)
    times = []
    cpu = time.process_time()
    for i in range(CELLS):
        run = {**template["run"], "cell_hash": f"{i:020x}", "started_at": now, "finished_at": now}
        t = time.perf_counter()
        with store.claim(run["cell_hash"]) as mine:
            assert mine and not store.is_done(run["cell_hash"])
            assert store.record(run=run, metrics={"fid": 10.0 + i, "isc": 2.0}, protocol=template["protocol"])
        times.append(time.perf_counter() - t)
    return times, time.process_time() - cpu


def measure(url: str) -> dict[str, float]:
    t = time.perf_counter()
    store = ResultStore(url)
    migrate = time.perf_counter() - t
    synthetic.bulk_fill(store, PREFILL)
    t = time.perf_counter()
    done = store.done_hashes()
    plan_check = time.perf_counter() - t
    assert len(done) == 2016
    times, cpu = per_cell(store)
    store.dispose()
    return {
        "migrate": migrate,
        "done_hashes": plan_check,
        "mean": statistics.fmean(times),
        "median": statistics.median(times),
        "p95": sorted(times)[int(0.95 * len(times))],
        "cpu": cpu / CELLS,
    }


def main() -> int:
    try:
        server = TemporaryPostgres.start(fast=False)
    except PostgresUnavailable as exc:
        print(f"skipped: {exc}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as d:
            results = {
                "SQLite (WAL file)": measure(f"sqlite:///{d}/bench.db"),
                "PostgreSQL (local TCP)": measure(server.create_database()),
            }
    finally:
        server.stop()
    print(f"{CELLS} cells recorded into stores of 2,016 runs; per cell = claim + done-check + record (ms)")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(
        f"{'backend':24s} {'mean':>7s} {'median':>7s} {'p95':>7s} {'client CPU':>10s} {'migrate':>8s} "
        f"{'done_hashes':>12s}"
    )
    for name, r in results.items():
        print(
            f"{name:24s} {1e3 * r['mean']:7.2f} {1e3 * r['median']:7.2f} {1e3 * r['p95']:7.2f} "
            f"{1e3 * r['cpu']:10.2f} {1e3 * r['migrate']:8.1f} {1e3 * r['done_hashes']:12.2f}"
        )
    sqlite, pg = results.values()
    print(f"PostgreSQL / SQLite per cell: {pg['mean'] / sqlite['mean']:.2f}x (target: PostgreSQL < 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
