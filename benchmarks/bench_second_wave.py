"""Second-wave quantizers (quarot, svdquant, ptq4arvg) against rtn/smoothquant/gptq on synthetic layers.

    python benchmarks/bench_second_wave.py [--quick]

1. W4A4 output error (relative MSE on held-out inputs), seeds 0..2 (mean ± sd over seeds; each
   seed draws its own layer and data), under both activation schemes so that no comparison
   mixes them: static (one calibrated scale per tensor; ptq4arvg: per token group, STWQ) and
   dynamic per token. Two synthetic layers:
   a. ``LinearModel``: outlier input channels (x30), 32 tokens with no position structure;
   b. ``TokenGroupLinearModel``: the same plus VAR's token structure (a x20 first "sink" token,
      per-scale-level gains 4 -> 0.5 over 130 tokens), what PTQ4ARVG's STWQ targets.
2. Quantization time per layer (median of 3 fresh processes) and peak resident memory (the
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

STATIC, DYNAMIC = {"act_granularity": "tensor"}, {"act_granularity": "token"}
#: label -> (quantizer, options under static activations, options under dynamic per-token ones)
METHODS = {
    "rtn": ("rtn", STATIC, DYNAMIC),
    "smoothquant": ("smoothquant", STATIC, DYNAMIC),
    "gptq": ("gptq", STATIC, DYNAMIC),
    "quarot (rtn)": ("quarot", {"weights": "rtn", **STATIC}, {"weights": "rtn", **DYNAMIC}),
    "quarot (gptq)": ("quarot", STATIC, DYNAMIC),
    "svdquant (g64, rank cap 0.5 bit)": ("svdquant", STATIC, DYNAMIC),
    # static: the method as published (STWQ); dynamic: STWQ swapped for per-token scales
    "ptq4arvg (GPS + STWQ + DGC)": ("ptq4arvg", {}, {"stwq": False, **DYNAMIC}),
    "ptq4arvg, gps: false (SmoothQuant factors)": (
        "ptq4arvg",
        {"gps": False},
        {"gps": False, "stwq": False, **DYNAMIC},
    ),
    "ptq4arvg, dgc: false": ("ptq4arvg", {"dgc": False}, {"dgc": False, "stwq": False, **DYNAMIC}),
}
#: label -> (quantizer, options, precision) for the time and memory table
COST = {
    "rtn": ("rtn", {}, "W4A4"),
    "rtn, w=mxfp4,a=mxfp8": ("rtn", {}, "w=mxfp4,a=mxfp8"),
    "rtn, w=nvfp4,a=nvfp4": ("rtn", {}, "w=nvfp4,a=nvfp4"),
    "gptq": ("gptq", {}, "W4A4"),
    "smoothquant": ("smoothquant", {}, "W4A4"),
    "quarot (rtn)": ("quarot", {"weights": "rtn"}, "W4A4"),
    "quarot (gptq)": ("quarot", {}, "W4A4"),
    "svdquant (g64, rank cap 0.5 bit)": ("svdquant", {}, "W4A4"),
    "ptq4arvg (GPS + STWQ + DGC)": ("ptq4arvg", {}, "W4A4"),
}
LAYERS = ("outlier channels", "outlier channels + VAR token groups")


def _layer(kind: str, shape: tuple[int, int], seed: int):
    from bitscale.testing.toy import LinearModel, TokenGroupLinearModel

    cls = TokenGroupLinearModel if kind == LAYERS[1] else LinearModel
    return cls(shape[1], shape[0], outlier_channels=max(1, shape[1] // 64), seed=seed)


def _quantize(name: str, options: dict, shape: tuple[int, int], seed: int, precision: str, kind: str = LAYERS[0]):
    from bitscale.harness.plugin_loader import load_plugins
    from bitscale.precision import Precision

    cls = load_plugins(entrypoints=False).quantizers.get(name)
    m = _layer(kind, shape, seed)
    cal = m.calibration_batches(8, torch.Generator().manual_seed(seed))
    t = time.perf_counter()
    rep = cls(cls.Options(**options)).quantize(
        m, Precision.parse(precision), cal, generator=torch.Generator().manual_seed(seed)
    )
    return m, rep, time.perf_counter() - t


def _error(name: str, opts: dict, shape, seed: int, precision: str, kind: str) -> tuple[float, float]:
    m, rep, _ = _quantize(name, opts, shape, seed, precision, kind)
    ref = _layer(kind, shape, seed)
    test = ref.calibration_batches(8, torch.Generator().manual_seed(1000 + seed))
    with torch.no_grad():
        err = statistics.mean(
            float((m.forward_batch(b) - ref.forward_batch(b)).pow(2).mean() / ref.forward_batch(b).pow(2).mean())
            for b in test
        )
    return err, rep.effective_weight_bits


def output_errors(
    shape, seeds, kind: str, precision="W4A4"
) -> dict[str, tuple[tuple[float, float], tuple[float, float], float]]:
    """label -> ((mean, sd) static, (mean, sd) dynamic, bits/weight)."""
    out = {}
    for label, (name, static, dynamic) in METHODS.items():
        cells, bits = [], 0.0
        for opts in (static, dynamic):
            runs = [_error(name, opts, shape, seed, precision, kind) for seed in seeds]
            errs = [e for e, _ in runs]
            cells.append((statistics.mean(errs), statistics.stdev(errs) if len(errs) > 1 else 0.0))
            bits = runs[0][1]
        out[label] = (cells[0], cells[1], bits)
    return out


def _child(name: str, options: str, precision: str, rows: int, cols: int) -> None:
    torch.set_num_threads(1)
    _layer(LAYERS[0], (rows, cols), 0)  # import and allocate once so the baseline includes them
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, _, secs = _quantize(name, json.loads(options), (rows, cols), 0, precision)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": secs, "peak_mb": (peak - base) / 1024}))


def time_and_memory(shape, repeats: int) -> dict[str, dict[str, float]]:
    """label -> median seconds and median peak MB over ``repeats`` fresh processes."""
    out = {}
    for label, (name, opts, precision) in COST.items():
        runs = []
        for _ in range(repeats):
            res = subprocess.run(
                [sys.executable, __file__, "--child", name, json.dumps(opts), precision, str(shape[0]), str(shape[1])],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out[label] = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "peak_mb")}
    return out


def rotation_overhead(dim: int, tokens: int, repeats: int) -> dict[str, float]:
    from bitscale.quant.formats import QuantSpec
    from bitscale.quant.hadamard import Rotation
    from bitscale.quant.linear import QuantLinear
    from bitscale.quant.transform import TransformLinear

    torch.manual_seed(0)
    lin = nn.Linear(dim, dim)
    frozen = QuantLinear.from_linear(nn.Linear(dim, dim), weight_spec=QuantSpec("int4", "channel"), reuse_storage=False)
    rot = TransformLinear.from_linear(
        nn.Linear(dim, dim),
        rotation=Rotation.hadamard(dim, torch.Generator().manual_seed(0)),
        weight_spec=QuantSpec("int4", "channel"),
    )
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
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.child[2], int(args.child[3]), int(args.child[4]))
        return
    torch.set_num_threads(1)
    seeds = [0, 1] if args.quick else [0, 1, 2]
    shape = (128, 256)
    for kind in LAYERS:
        print(
            f"1. W4A4 relative output MSE, Linear {shape[1]}->{shape[0]}, {kind} ({shape[1] // 64} outlier "
            f"channels x30), 8 calibration sequences, seeds {seeds}"
        )
        print("| method | static activations | dynamic per-token activations | bits/weight |")
        print("|---|---|---|---|")
        for label, (st, dy, bits) in output_errors(shape, seeds, kind).items():
            print(f"| {label} | {st[0]:.4f} ± {st[1]:.4f} | {dy[0]:.4f} ± {dy[1]:.4f} | {bits:.3f} |", flush=True)
        print()
    big = (256, 512) if args.quick else (1024, 1024)
    repeats = 1 if args.quick else 3
    print(
        f"2. quantization time and peak memory, one Linear {big[1]}->{big[0]} (outlier channels), "
        f"median of {repeats} fresh processes"
    )
    for label, r in time_and_memory(big, repeats).items():
        print(f"| {label} | {r['seconds']:.2f} s | +{r['peak_mb']:.1f} MB |", flush=True)
    print("\n3. online rotation overhead, 1024 tokens (median forward time / nn.Linear)")
    for dim in (1024, 768):
        r = rotation_overhead(dim, 1024, 10 if args.quick else 30)
        print(
            f"  dim {dim}: nn.Linear {r['linear_ms']:.2f} ms; frozen W4 QuantLinear {r['frozen_ratio']:.2f}x; "
            f"+ online Hadamard {r['rotated_ratio']:.2f}x"
        )


if __name__ == "__main__":
    main()
