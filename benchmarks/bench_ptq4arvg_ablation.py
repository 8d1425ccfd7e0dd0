"""PTQ4ARVG ablation on var-tiny: each of GPS, STWQ, DGC alone and together, at W8A8/W6A6/W4A4.

    python benchmarks/bench_ptq4arvg_ablation.py [--size d2] [--seeds 0 1 2]

Metric: relative MSE of the teacher-forced logits against full precision, on 4 held-out batches
of 32 real digits (fixed), mean ± sd over calibration seeds (each seed draws its own 2 x 32
calibration images and, with DGC, its own candidate pool). "off" for a part means: SmoothQuant
alpha=0.5 factors instead of GPS (the shift is always on), static per-tensor activations instead
of STWQ, the given calibration batches instead of DGC. Rows are grouped by activation scheme
(static: per tensor or per token group; dynamic: per token) so that no comparison mixes the two.
Not an FID: a cheap, paired proxy.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

VARIANTS = {
    "none (shift + SmoothQuant, static per tensor)": {"gps": False, "stwq": False, "dgc": False},
    "+ GPS": {"gps": True, "stwq": False, "dgc": False},
    "+ STWQ": {"gps": False, "stwq": True, "dgc": False},
    "+ DGC": {"gps": False, "stwq": False, "dgc": True},
    "GPS + STWQ": {"gps": True, "stwq": True, "dgc": False},
    "GPS + STWQ + DGC": {"gps": True, "stwq": True, "dgc": True},
    # the same smoothing under dynamic per-token activations, to compare with per-token baselines
    "shift + SmoothQuant, dynamic per token": {"gps": False, "stwq": False, "dgc": False, "act_granularity": "token"},
    "shift + GPS, dynamic per token": {"gps": True, "stwq": False, "dgc": False, "act_granularity": "token"},
}
BASELINES = {
    "rtn (static per tensor)": ("rtn", {"act_granularity": "tensor"}),
    "smoothquant (static per tensor)": ("smoothquant", {"act_granularity": "tensor"}),
    "rtn (dynamic per token)": ("rtn", {}),
    "smoothquant (dynamic per token)": ("smoothquant", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="d2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--precisions", nargs="+", default=["W8A8", "W6A6", "W4A4"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    from bitscale.harness.plugin_loader import load_plugins
    from bitscale.precision import Precision

    plugins = load_plugins(entrypoints=False)
    fam = plugins.models.get("var-tiny")
    base = fam.build(args.size, fam.Options(), torch.device("cpu"))
    test = base.calibration_batches(4, torch.Generator().manual_seed(12345))
    with torch.no_grad():
        ref = [base.forward_batch(b).float() for b in test]
    rows = {**{k: ("ptq4arvg", v) for k, v in VARIANTS.items()}, **BASELINES}
    print(f"var-tiny {args.size}; relative logit MSE (mean ± sd over seeds {args.seeds})")
    print("| variant | " + " | ".join(args.precisions) + " |")
    print("|---|" + "---|" * len(args.precisions))
    for label, (name, opts) in rows.items():
        cells = []
        for prec in args.precisions:
            errs = []
            for seed in args.seeds:
                m = copy.deepcopy(base)
                cal = m.calibration_batches(2, torch.Generator().manual_seed(seed))
                cls = plugins.quantizers.get(name)
                cls(cls.Options(**opts)).quantize(
                    m, Precision.parse(prec), cal, generator=torch.Generator().manual_seed(seed)
                )
                with torch.no_grad():
                    errs.append(
                        statistics.mean(
                            float((m.forward_batch(b).float() - r).pow(2).mean() / r.pow(2).mean())
                            for b, r in zip(test, ref)
                        )
                    )
            cells.append(
                f"{statistics.mean(errs):.3g} ± {statistics.stdev(errs):.2g}" if len(errs) > 1 else f"{errs[0]:.3g}"
            )
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
