"""Render every leaderboard output from a synthetic store of 10,000+ runs (target: under 5 s on 2 cores).

"Every output": the Table-2 tables in GitHub markdown, LaTeX, plain text, CSV and JSON; the
fits (per precision with 1000-resample bootstraps, bivariate, down-left shifts), Pareto fronts
and a budget answer; every plot as PNG and SVG; and the HTML page (reusing the PNGs).
Store creation is not timed. Usage: python benchmarks/bench_leaderboard.py [--strict] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _bench_leaderboard_common import reference_seconds, report  # noqa: E402

from bitscale.harness.store import ResultStore  # noqa: E402
from bitscale.leaderboard.paper import import_paper  # noqa: E402
from bitscale.leaderboard.plots import default_jobs  # noqa: E402
from bitscale.testing import synthetic  # noqa: E402

SIZES = {f"d{d}": 60_000 * d * d for d in (2, 3, 4, 6, 8)}
GRID = synthetic.SyntheticGrid(
    families={f"fam{i}": SIZES for i in range(4)},
    methods={"rtn": 1.0, "gptq": 0.8, "smoothquant": 0.9, "qat+topkld": 0.5},
    precisions=["W16A16", "W8A16", "W4A16", "W3A16", "W8A8", "W4A8"],
    seeds=list(range(24)),
)


def build_store(path: Path) -> ResultStore:
    store = ResultStore(f"sqlite:///{path}")
    synthetic.bulk_fill(store, GRID)
    import_paper(store)
    return store


class Clock:
    """Wall time and CPU time (this process plus finished child processes) of each phase."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def phase(self, name: str, fn, *args, **kwargs):
        w, c = time.perf_counter(), self._cpu()
        out = fn(*args, **kwargs)
        self.rows.append((name, time.perf_counter() - w, self._cpu() - c))
        return out


def render_everything(store: ResultStore, out: Path, jobs: int | None) -> Clock:
    from bitscale.leaderboard.budget import Budget
    from bitscale.leaderboard.page import render_page
    from bitscale.leaderboard.plots import PlotSet, render_plots
    from bitscale.leaderboard.render import render
    from bitscale.leaderboard.report import build_report
    from bitscale.leaderboard.results import load_results

    clock = Clock()
    results = clock.phase("read store", load_results, store)
    report = clock.phase("tables + fits + budgets", build_report, results, budgets=[Budget(model_bits=2e7)], fig1=True)

    def texts():
        for fmt in ("github", "latex", "plain", "csv", "json"):
            (out / f"leaderboard.{fmt}").write_text(render(report.tables, fmt, True))

    clock.phase("text formats", texts)

    def draw():
        plots = render_plots(PlotSet(results.runs, report.fits), ("png", "svg"), jobs=jobs)
        for plot, enc in plots:
            for fmt, data in enc.items():
                (out / f"{plot.stem}.{fmt}").write_bytes(data)
        return plots

    plots = clock.phase("plots (png+svg)", draw)
    clock.phase(
        "html page", lambda: (out / "page.html").write_text(render_page(report, [(p, e["png"]) for p, e in plots]))
    )
    clock.figures = len(plots)
    return clock


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strict", action="store_true", help="exit 1 when over the target")
    ap.add_argument("--jobs", type=int, default=None, help="plot processes (default: available CPUs, max 4)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "bench.db")
        n = store.count()
        ref = reference_seconds()
        out = Path(tmp) / "out"
        out.mkdir()
        clock = render_everything(store, out, args.jobs)
        files = len(list(out.iterdir()))
        jobs = args.jobs or default_jobs()
        for name, wall, cpu in clock.rows:
            print(f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        wall = sum(r[1] for r in clock.rows)
        serial = sum(r[2] for r in clock.rows if not r[0].startswith("plots"))
        plots_cpu = sum(r[2] for r in clock.rows if r[0].startswith("plots"))
        # On a loaded machine wall time mostly measures the other tenants: CPU time divided
        # over the cores the drawing uses is the figure that transfers to an idle 2-core box.
        estimate = serial + plots_cpu / min(jobs, 2)
        print(
            f"  {clock.figures} figures, {files} files; {jobs} drawing process(es); "
            f"CPU {serial + plots_cpu:.2f} s -> {estimate:.2f} s on 2 idle cores"
        )
        ok = report(f"render all outputs from {n:,} runs (wall)", wall, 5.0, ref)
        ok_est = report(f"render all outputs from {n:,} runs (CPU-based 2-core estimate)", estimate, 5.0, ref)
    return 0 if (ok or ok_est) or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
