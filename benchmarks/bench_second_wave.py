"""Second-wave quantizers (quarot, svdquant, ptq4arvg) against rtn/smoothquant/gptq on synthetic layers.

    python benchmarks/bench_second_wave.py [--quick]

1. W4A4 output error (relative MSE on held-out inputs) on ``LinearModel`` layers with outlier
   input channels, seeds 0..2 (mean ± sd over seeds; each seed draws its own layer and data).
2. Quantization time per layer and peak resident memory (each run in a fresh subprocess; the
   high-water mark over the process's baseline after building the layer), on one layer.
3. Inference overhead of QuaRot's online rotation (``TransformLinear`` with a Hadamard) vs a
   plain ``nn.Linear`` and vs a frozen-weight ``QuantLinear``, 1024 tokens, 1 thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

METHODS = {
    "rtn (A: dynamic per token)": ("rtn", {}),
    "rtn (A: static per tensor)": ("rtn", {"act_granularity": "tensor"}),
    "smoothquant": ("smoothquant", {}),
    "gptq": ("gptq", {}),
    "quarot (rtn)": ("quarot", {"weights": "rtn"}),
    "quarot (gptq)": ("quarot", {}),
    "svdquant (g64, rank cap 0.5 bit)": ("svdquant", {}),
    "ptq4arvg (static STWQ)": ("ptq4arvg", {}),
    "ptq4arvg (GPS + shift, A per token)": ("ptq4arvg", {"stwq": False, "dgc": False, "act_granularity": "token"}),
}


def _quantize(name: str, options: dict, shape: tuple[int, int], seed: int, precision: str):
    from bitscale.harness.plugin_loader import load_plugins
    from bitscale.precision import Precision
    from bitscale.testing.toy import LinearModel

    cls = load_plugins(entrypoints=False).quantizers.get(name)
    m = LinearModel(shape[1], shape[0], outlier_channels=max(1, shape[1] // 64), seed=seed)
    cal = m.calibration_batches(8, torch.Generator().manual_seed(seed))
    t = time.perf_counter()
    rep = cls(cls.Options(**options)).quantize(m, Precision.parse(precision), cal,
                                                generator=torch.Generator().manual_seed(seed))
    return m, rep, time.perf_counter() - t


def output_errors(shape, seeds, precision="W4A4") -> dict[str, tuple[float, float, float]]:
    from bitscale.testing.toy import LinearModel

    out = {}
    for label, (name, opts) in METHODS.items():
        errs, bits = [], 0.0
        for seed in seeds:
            m, rep, _ = _quantize(name, opts, shape, seed, precision)
            ref = LinearModel(shape[1], shape[0], outlier_channels=max(1, shape[1] // 64), seed=seed)
            test = m.calibration_batches(8, torch.Generator().manual_seed(1000 + seed))
            with torch.no_grad():
                errs.append(statistics.mean(
                    float((m.forward_batch(b) - ref.forward_batch(b)).pow(2).mean() / ref.forward_batch(b).pow(2).mean())
                    for b in test))
            bits = rep.effective_weight_bits
        out[label] = (statistics.mean(errs), statistics.stdev(errs) if len(errs) > 1 else 0.0, bits)
    return out


def _child(name: str, options: str, rows: int, cols: int) -> None:
    torch.set_num_threads(1)
    from bitscale.testing.toy import LinearModel

    LinearModel(cols, rows, seed=0)  # import and allocate once so the baseline includes them
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, _, secs = _quantize(name, json.loads(options), (rows, cols), 0, "W4A4")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": secs, "peak_mb": (peak - base) / 1024}))


def time_and_memory(shape) -> dict[str, dict[str, float]]:
    out = {}
    for label, (name, opts) in METHODS.items():
        if label in ("rtn (A: static per tensor)", "ptq4arvg (GPS + shift, A per token)"):
            continue
        res = subprocess.run([sys.executable, __file__, "--child", name, json.dumps(opts), str(shape[0]), str(shape[1])],
                             capture_output=True, text=True, check=True)
        out[label] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def rotation_overhead(dim: int, tokens: int, repeats: int) -> dict[str, float]:
    from bitscale.quant.formats import QuantSpec
    from bitscale.quant.hadamard import Rotation
    from bitscale.quant.linear import QuantLinear
    from bitscale.quant.transform import TransformLinear

    torch.manual_seed(0)
    lin = nn.Linear(dim, dim)
    frozen = QuantLinear.from_linear(nn.Linear(dim, dim), weight_spec=QuantSpec("int4", "channel"), reuse_storage=False)
    rot = TransformLinear.from_linear(nn.Linear(dim, dim), rotation=Rotation.hadamard(dim, torch.Generator().manual_seed(0)),
                                      weight_spec=QuantSpec("int4", "channel"))
    x = torch.randn(tokens, dim)

    def med(fn) -> float:
        with torch.no_grad():
            for _ in range(3):
                fn(x)
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn(x)
                ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    base = med(lin)
    return {"linear_ms": base * 1e3, "frozen_ratio": med(frozen) / base, "rotated_ratio": med(rot) / base}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    torch.set_num_threads(1)
    seeds = [0, 1] if args.quick else [0, 1, 2]
    shape = (128, 256)
    print(f"1. W4A4 output error, Linear {shape[1]}->{shape[0]}, {shape[1] // 64} outlier channels (x30), "
          f"8x32 calibration tokens, seeds {seeds}")
    for label, (mean, sd, bits) in output_errors(shape, seeds).items():
        print(f"  {label:38s} {mean:.4f} ± {sd:.4f}   ({bits:.3f} bits/weight)")
    big = (256, 512) if args.quick else (1024, 1024)
    print(f"\n2. quantization time and peak memory, one Linear {big[1]}->{big[0]}, W4A4 (fresh process each)")
    for label, r in time_and_memory(big).items():
        print(f"  {label:38s} {r['seconds']:.2f} s   peak +{r['peak_mb']:.1f} MB")
    print("\n3. online rotation overhead, 1024 tokens (median forward time / nn.Linear)")
    for dim in (1024, 768):
        r = rotation_overhead(dim, 1024, 10 if args.quick else 30)
        print(f"  dim {dim}: nn.Linear {r['linear_ms']:.2f} ms; frozen W4 QuantLinear {r['frozen_ratio']:.2f}x; "
              f"+ online Hadamard {r['rotated_ratio']:.2f}x")


if __name__ == "__main__":
    main()
