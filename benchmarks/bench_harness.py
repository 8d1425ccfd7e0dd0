"""Harness speed: planning 10,000 cells, rendering a leaderboard from 10,000 stored runs, per-cell overhead.

Targets (issue 2): planning and rendering each under 2 s on 2 CPU cores; bookkeeping under
50 ms per cell. Absolute times are printed together with a same-run reference workload (a fixed
SHA-256 + JSON loop) so figures from a noisy shared machine can be compared as ratios.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import tempfile
import time
import types
from datetime import datetime

os.environ.setdefault("BITSCALE_NO_ENTRYPOINTS", "1")

from bitscale import hookimpl  # noqa: E402
from bitscale.harness.config import parse_experiment  # noqa: E402
from bitscale.harness.planner import plan_grid  # noqa: E402
from bitscale.harness.plugin_loader import load_plugins  # noqa: E402
from bitscale.harness.store import ResultStore  # noqa: E402
from bitscale.harness.store.schema import Metric, Run  # noqa: E402
from bitscale.leaderboard.render import render  # noqa: E402
from bitscale.leaderboard.table import build_tables  # noqa: E402
from bitscale.precision import Precision  # noqa: E402
from bitscale.testing.toy import ToyFamily  # noqa: E402


def reference_workload() -> float:
    """A fixed CPU workload (hash 20,000 small JSON documents): the yardstick for ratios."""
    t = time.perf_counter()
    for i in range(20_000):
        hashlib.sha256(json.dumps({"i": i, "x": [1, 2, 3], "s": "abc"}, sort_keys=True).encode()).hexdigest()
    return time.perf_counter() - t


def bench_plan() -> tuple[float, int]:
    mod = types.ModuleType("toyplug")
    mod.register_models = hookimpl(lambda register: register(ToyFamily()))
    ps = load_plugins([("toyplug", mod)], entrypoints=False)
    # The first meta-device build imports torch's meta kernels (a one-time cost per process,
    # reported separately): warm it up so the figure measures planning itself.
    t = time.perf_counter()
    ToyFamily().num_params("d1", ToyFamily.Options())
    bench_plan.warmup = time.perf_counter() - t
    exp = parse_experiment(
        {
            "models": [{"family": "toy"}],
            "quantizers": ["rtn", "gptq"],
            "precisions": ["W16A16", "W8A16", "W6A16", "W5A16", "W4A16", "W3A16", "W2A16"],
            "seeds": list(range(240)),
        },
        "bench",
    )
    t = time.perf_counter()
    plan = plan_grid(exp, ps)
    return time.perf_counter() - t, len(plan.cells)


def fill_store(store: ResultStore, n: int) -> None:
    rng = random.Random(0)
    precisions = ["W16A16", "W8A16", "W4A16", "W3A16", "W8A8", "W4A8"]
    now = datetime(2026, 1, 1)
    with store.session() as s, s.begin():
        for i in range(n):
            p = Precision.parse(precisions[i % len(precisions)])
            method = "fp16" if p.is_full else ["rtn", "gptq", "gptvq", "omniquant"][i % 4]
            run = Run(
                cell_hash=f"h{i}",
                source="measured",
                experiment="bench",
                family=f"fam{i % 5}",
                size=f"d{2 * (1 + i % 4)}",
                method=method,
                loss=None,
                precision=p.label,
                w_bits=p.w_bits,
                a_bits=p.a_bits,
                w_format=str(p.weights),
                a_format=str(p.activations),
                seed=i // 240,
                num_params=10**6,
                model_bits=1e6 * p.w_bits,
                compute_bits=1e6 * p.w_bits * p.a_bits,
                effective_weight_bits=p.w_bits + 0.1,
                status="ok",
                config={},
                versions={},
                started_at=now,
                finished_at=now,
                timings={},
                protocol_fingerprint=None,
            )
            run.metrics = [Metric(name="fid", value=rng.uniform(5, 50)), Metric(name="isc", value=rng.uniform(1, 9))]
            s.add(run)


def bench_render(n: int = 10_000) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(f"sqlite:///{d}/b.db")
        fill_store(store, n)
        t = time.perf_counter()
        text = render(build_tables(store.frame(), "fid"), "github")
        elapsed = time.perf_counter() - t
        assert "fam0" in text
        store.dispose()
    return elapsed


def bench_record(n: int = 50) -> float:
    """Mean seconds to record one finished cell (one transaction: run + metrics + protocol)."""
    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(f"sqlite:///{d}/b.db")
        now = datetime(2026, 1, 1)
        t = time.perf_counter()
        for i in range(n):
            store.record(
                run=dict(
                    cell_hash=f"h{i}",
                    source="measured",
                    experiment="b",
                    family="f",
                    size="s",
                    method="rtn",
                    loss=None,
                    precision="W4A16",
                    w_bits=4,
                    a_bits=16,
                    w_format="int4",
                    a_format="fp16",
                    seed=0,
                    num_params=1,
                    model_bits=4.0,
                    compute_bits=64.0,
                    effective_weight_bits=4.1,
                    status="ok",
                    config={"a": 1},
                    versions={},
                    started_at=now,
                    finished_at=now,
                    timings={},
                    protocol_fingerprint="p",
                ),
                metrics={"fid": 1.0, "isc": 2.0},
                protocol=("p", {"x": 1}),
            )
        elapsed = (time.perf_counter() - t) / n
        store.dispose()
    return elapsed


def main() -> int:
    ref = reference_workload()
    plan_s, cells = bench_plan()
    render_s = bench_render()
    record_s = bench_record()
    rows = [
        ("reference workload", ref, 1.0, "-"),
        ("one-time meta-device warm-up", bench_plan.warmup, bench_plan.warmup / ref, "-"),
        (f"plan {cells:,} cells", plan_s, plan_s / ref, "< 2 s"),
        ("render leaderboard, 10,000 runs", render_s, render_s / ref, "< 2 s"),
        ("record one cell (store transaction)", record_s, record_s / ref, "< 0.05 s"),
        ("plan + hash per cell", plan_s / cells, plan_s / cells / ref, "< 0.05 s"),
    ]
    print(f"{'benchmark':40s} {'seconds':>10s} {'x reference':>12s}  target")
    for name, s, r, target in rows:
        print(f"{name:40s} {s:10.4f} {r:12.3f}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
