"""GPTQ benchmark: wall time per layer vs the reference, output error, and peak memory.

    python benchmarks/bench_gptq.py            # 1024x4096 layer, 128 calibration sequences
    python benchmarks/bench_gptq.py --quick    # small shapes, a few seconds

1. One ``Linear(4096 -> 1024)`` with correlated inputs (``LinearModel``), Hessian from 128
   calibration sequences. Times ``bitscale.quant.gptq.gptq_quantize`` against the reference
   (``gptq_reference.gptq_algorithm1``: the GPTQ paper's Algorithm 1 written plainly; no
   packaged GPTQ installs next to torch 2.15 here, see that module) and reports the output
   error ``||X (Wq - W)^T||^2 / ||X W^T||^2`` of each and of RTN on held-out inputs.
2. Peak memory of each quantizer on a ``ToyTransformer``, each run in a fresh subprocess:
   resident-set high-water mark (``VmHWM``, reset just before quantizing) above the RSS before
   the model was built (after a warm-up run on a throwaway model, so torch's one-time thread
   pools and arenas are not counted), divided by the model's parameter bytes. Calibration batches are token
   ids (negligible). The target is < 2x model size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from bitscale.quant.capture import collect_hessians
from bitscale.quant.formats import QuantSpec, fake_quant_weight
from bitscale.quant.gptq import gptq_quantize
from bitscale.quant.gptq_reference import gptq_algorithm1
from bitscale.quant.toy import LinearModel


def _err(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor) -> float:
    return float((x @ (wq - w).T).pow(2).sum() / (x @ w.T).pow(2).sum())


def _time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_layer(rows: int, cols: int, n_seq: int, seq: int, repeats: int) -> list[dict]:
    m = LinearModel(cols, rows, seq=seq)
    t = time.perf_counter()
    h = collect_hessians(m, m.quant_layers(), m.calibration_batches(n_seq, torch.Generator().manual_seed(1)))["0"]
    t_h = time.perf_counter() - t
    x = m.inputs(16, torch.Generator().manual_seed(2)).reshape(-1, cols)
    w = m.linear.weight.detach()
    out = []
    for bits in (3, 4):
        for gs in (None, 128):
            spec = QuantSpec(f"int{bits}", "group" if gs else "channel", gs)
            t_ours, q = _time(lambda: gptq_quantize(w, h, spec).weight, repeats)
            t_ref, r = _time(lambda: gptq_algorithm1(w, h, spec), repeats)
            e_ours, e_ref, e_rtn = _err(w, q, x), _err(w, r, x), _err(w, fake_quant_weight(w, spec), x)
            out.append(
                {
                    "shape": f"{rows}x{cols}",
                    "spec": str(spec),
                    "hessian_s": round(t_h, 3),
                    "gptq_s": round(t_ours, 3),
                    "reference_s": round(t_ref, 3),
                    "time_ratio": round(t_ours / t_ref, 3),
                    "err_gptq": e_ours,
                    "err_reference": e_ref,
                    "err_rel_diff": abs(e_ours - e_ref) / e_ref,
                    "err_rtn": e_rtn,
                }
            )
    return out


_MEM_CHILD = r"""
import json, sys, torch
torch.set_num_threads(1)
from bitscale.harness.precision import Precision
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
name, precision, dim, depth = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import importlib
mod = importlib.import_module(f"bitscale.plugins.quantizers.{name}")
got = []
mod.register_quantizers(register=got.append)
cls = got[0]
from bitscale.quant.toy import ToyTransformer
# warm the runtime (thread pools, allocator arenas, lazy kernels) on a throwaway model, so the
# baseline below is "torch ready" and the peak measures the model and the quantizer only
warm = ToyTransformer(vocab=256, dim=64, depth=1, seq=64)
cls(cls.Options(steps=2) if name == "omniquant" else cls.Options()).quantize(
    warm, Precision.parse(precision), warm.calibration_batches(2, torch.Generator()))
del warm
base = rss("VmRSS")
model = ToyTransformer(vocab=256, dim=dim, depth=depth, seq=64)
calib = model.calibration_batches(16, torch.Generator().manual_seed(0))
model_bytes = sum(p.numel() * p.element_size() for p in model.module.parameters())
# fewer optimisation iterations than the defaults: they change time, not the memory profile
fast = {"omniquant": {"steps": 20}, "gptvq": {"kmeans_iters": 3}}
opts = cls.Options(**fast.get(name, {}))
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark
cls(opts).quantize(model, Precision.parse(precision), calib)
peak = rss("VmHWM")
print(json.dumps({"quantizer": name, "precision": precision, "model_mb": model_bytes / 2**20,
                  "peak_over_model": (peak - base) / model_bytes}))
"""


def bench_memory(dim: int, depth: int) -> list[dict]:
    rows = []
    for name, precision in [("rtn", "W4A16"), ("gptq", "W4A16"), ("gptvq", "W3A16"), ("smoothquant", "W8A8"), ("omniquant", "W4A16")]:
        # Large allocations straight from mmap, so freed tensors leave the RSS at once and the
        # high-water mark tracks live memory, not glibc heap fragmentation.
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        res = subprocess.run(
            [sys.executable, "-c", _MEM_CHILD, name, precision, str(dim), str(depth)],
            capture_output=True, text=True, check=False, env=env,
        )
        if res.returncode != 0:
            rows.append({"quantizer": name, "error": res.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes (CI smoke run)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-layer", action="store_true", help="only the memory part")
    ap.add_argument("--skip-memory", action="store_true", help="only the layer part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    layer = [] if args.skip_layer else (bench_layer(256, 512, 16, 32, 1) if quick else bench_layer(1024, 4096, 128, 64, 2))
    mem = [] if args.skip_memory else (bench_memory(128, 2) if quick else bench_memory(256, 24))
    if args.json:
        print(json.dumps({"layer": layer, "memory": mem}, indent=1))
        return
    print("| layer | weights | GPTQ s | reference s | ratio | err GPTQ | err ref | rel. diff | err RTN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in layer:
        print(
            f"| {r['shape']} | {r['spec']} | {r['gptq_s']} | {r['reference_s']} | {r['time_ratio']} | "
            f"{r['err_gptq']:.5f} | {r['err_reference']:.5f} | {r['err_rel_diff']:.2%} | {r['err_rtn']:.5f} |"
        )
    if layer:
        print(f"\nHessian collection: {layer[0]['hessian_s']} s\n")
    print("| quantizer | precision | model MB | peak / model size |")
    print("|---|---|---|---|")
    for r in mem:
        if "error" in r:
            print(f"| {r['quantizer']} | error: {r['error']} | | |")
        else:
            print(f"| {r['quantizer']} | {r['precision']} | {r['model_mb']:.1f} | {r['peak_over_model']:.2f} |")


if __name__ == "__main__":
    main()
