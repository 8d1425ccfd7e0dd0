"""Peak memory of each quantizer while quantizing a toy transformer.

    python benchmarks/bench_gptq.py            # 24-block ToyModel (72.9 MB of fp32 weights)
    python benchmarks/bench_gptq.py --quick    # 2 blocks, a few seconds

GPTQ's output error and wall time against an established implementation (llm-compressor)
are in ``bench_gptq_reference.py``.

Each quantizer runs in a fresh subprocess: resident-set high-water mark (``VmHWM``, reset
just before quantizing) above the RSS before the model was built (after a warm-up run on a
throwaway model, so torch's one-time thread pools and arenas are not counted), divided by
the model's parameter bytes. Calibration batches are token ids (negligible). The target is
< 2x model size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_MEM_CHILD = r"""
import json, sys, torch
torch.set_num_threads(1)
from bitscale.precision import Precision
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
from bitscale.testing.toy import ToyModel
# warm the runtime (thread pools, allocator arenas, lazy kernels) on a throwaway model, so the
# baseline below is "torch ready" and the peak measures the model and the quantizer only
warm = ToyModel(vocab=256, dim=64, depth=1, seq=64)
cls(cls.Options(steps=2) if name == "omniquant" else cls.Options()).quantize(
    warm, Precision.parse(precision), warm.calibration_batches(2, torch.Generator()))
del warm
base = rss("VmRSS")
model = ToyModel(vocab=256, dim=dim, depth=depth, seq=64)
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
    for name, precision in [
        ("rtn", "W4A16"),
        ("gptq", "W4A16"),
        ("gptvq", "W3A16"),
        ("smoothquant", "W8A8"),
        ("omniquant", "W4A16"),
    ]:
        # Large allocations straight from mmap, so freed tensors leave the RSS at once and the
        # high-water mark tracks live memory, not glibc heap fragmentation.
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        res = subprocess.run(
            [sys.executable, "-c", _MEM_CHILD, name, precision, str(dim), str(depth)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if res.returncode != 0:
            rows.append({"quantizer": name, "error": res.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes (CI smoke run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    mem = bench_memory(128, 2) if args.quick else bench_memory(256, 24)
    if args.json:
        print(json.dumps({"memory": mem}, indent=1))
        return
    print("| quantizer | precision | model MB | peak / model size |")
    print("|---|---|---|---|")
    for r in mem:
        if "error" in r:
            print(f"| {r['quantizer']} | error: {r['error']} | | |")
        else:
            print(f"| {r['quantizer']} | {r['precision']} | {r['model_mb']:.1f} | {r['peak_over_model']:.2f} |")


if __name__ == "__main__":
    main()
