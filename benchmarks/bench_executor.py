"""Executor speed: the quick grid (18 cells) on the local executor vs Ray with 2 one-thread workers.

Targets (issue 14): on 2 cores, ``--executor ray`` with two one-thread workers reaches >= 1.7x the
cells/s of the local executor (one thread), measured in the same run; Ray's start-up and its
per-cell overhead reported (target < 0.2 s per cell). Both runs use the same cache (tiny-zoo
weights already trained, reference statistics already computed: run ``bitscale zoo train`` and
one quick grid first) and a fresh store each, so they compute exactly the same 18 cells.

Per-cell overhead is given two ways: the round trip of an empty Ray task (what Ray adds to any
task), and the whole-run overhead ``(wall x workers - sum of the cells' own compute) / cells``,
which also counts worker start-up (each worker imports torch and loads its models) and the
idle tail when fewer cells than workers remain; it is measured with fresh workers and again on
the same instance with warm ones (the steady state of a long grid).

    python benchmarks/bench_executor.py [--cells N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("BITSCALE_NO_ENTRYPOINTS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from bitscale.cli.run import _load  # noqa: E402
from bitscale.harness.planner import plan_grid  # noqa: E402
from bitscale.harness.plugin_loader import get_plugins  # noqa: E402
from bitscale.harness.runner import run_plan  # noqa: E402
from bitscale.harness.store import ResultStore  # noqa: E402


def _grid(limit: int | None):
    exp, source = _load(None)
    plan = plan_grid(exp, get_plugins(), source)
    if limit:
        plan.cells = plan.cells[:limit]
    return plan


def _run(plan, executor=None) -> tuple[float, float, float]:
    """(wall seconds, summed cell compute seconds, summed model-build seconds) of the plan on a fresh store."""
    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(f"sqlite:///{d}/bench.db")
        t = time.perf_counter()
        summary = run_plan(plan, store, get_plugins(), progress=False, executor=executor)
        wall = time.perf_counter() - t
        runs = store.runs()
        compute = sum(r.timings.get("total", 0.0) for r in runs)
        build = sum(r.timings.get("build", 0.0) for r in runs)
        store.dispose()
    if summary.failed:
        sys.exit(f"bench_executor: {summary.failed} cell(s) failed: {summary.failures[:2]}")
    return wall, compute, build


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=None, help="only the first N cells of the quick grid")
    args = ap.parse_args()
    try:
        import ray
    except ImportError:
        print("bench_executor: skipped, Ray is not installed (pip install 'bitscale[ray]')")
        return 0
    from bitscale.harness.executors.ray_executor import RayExecutor

    plan = _grid(args.cells)
    n = len(plan.cells)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; {n} cells")

    torch.set_num_threads(1)  # the local executor as `bitscale run --threads 1` runs it
    wall_l, compute_l, build_l = _run(plan)
    print(
        f"local : {wall_l:7.1f} s  {n / wall_l:.3f} cells/s  (cells' own compute {compute_l:.1f} s, "
        f"of it model builds {build_l:.1f} s)"
    )

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t
    try:
        wall_r, compute_r, build_r = _run(plan, RayExecutor(None, threads_per_cell=1))
        # Again on the same instance: workers have imported torch and bitscale, as in a long grid.
        wall_w, compute_w, build_w = _run(plan, RayExecutor(None, threads_per_cell=1))
        noop = ray.remote(num_cpus=1)(lambda: None)
        ray.get([noop.remote() for _ in range(20)])  # warm
        t = time.perf_counter()
        ray.get([noop.remote() for _ in range(200)])
        per_task = (time.perf_counter() - t) / 200
        t = time.perf_counter()
        for _ in range(50):
            ray.get(noop.remote())
        round_trip = (time.perf_counter() - t) / 50
    finally:
        ray.shutdown()
    workers = 2
    overhead = (wall_r * workers - compute_r) / n
    print(
        f"ray   : {wall_r:7.1f} s  {n / wall_r:.3f} cells/s  (cells' own compute {compute_r:.1f} s, of it model "
        f"builds {build_r:.1f} s), start-up {startup:.1f} s"
    )
    print(
        f"ratio : {wall_l / wall_r:.2f}x cells/s without start-up, {wall_l / (wall_r + startup):.2f}x with it "
        "(target >= 1.7x)"
    )
    print(
        f"ray, warm workers: {wall_w:7.1f} s  {n / wall_w:.3f} cells/s  (cells' own compute {compute_w:.1f} s, "
        f"of it model builds {build_w:.1f} s); ratio {wall_l / wall_w:.2f}x"
    )
    print(
        f"ray per-task overhead: empty task {per_task * 1e3:.1f} ms in a batch, {round_trip * 1e3:.1f} ms one at a time"
    )
    print(
        f"whole-run overhead per cell: {overhead:.2f} s with fresh workers, "
        f"{(wall_w * workers - compute_w) / n:.2f} s with warm ones (target < 0.2 s)"
    )
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
