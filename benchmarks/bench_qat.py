"""QAT-distill benchmark: student step time and teacher+student memory, relative to plain FP training.

    python benchmarks/bench_qat.py             # ToyModel dim 256, depth 4, 16 x 64 tokens per step
    python benchmarks/bench_qat.py --quick     # small shapes, a few seconds
    python benchmarks/bench_qat.py --dim 512 --depth 8 --batch 32 --seq 128
    python benchmarks/bench_qat.py --model var-tiny/d6   # a registered model (trained if missing)

1. **Step time.** The same loop (``qat.engine.train_student``: forward, distillation loss against
   cached teacher outputs, backward, gradient clipping, AdamW, schedule) runs on the
   full-precision model and on the QAT student, training the same parameters (the weights and
   biases of ``quant_layers()``). The ratio student / FP is the cost of fake quantization
   (weights every forward, activations for A < 16, learnable scales). Best of ``--repeats``.
   Target: below 2x.
2. **Memory.** Each mode runs in a fresh subprocess: resident-set high-water mark (``VmHWM``,
   reset just before the work) above the RSS before the model was built (after a warm-up on a
   throwaway model, so torch's one-time pools are not counted). ``fp``: build the model and
   train it for a few steps. ``qat``: build the model and run ``QAT.quantize`` for the same
   steps (teacher outputs cached, the default); ``qat-no-cache``: with ``teacher_cache_mb=0``,
   so a frozen teacher copy runs at every step. Target: teacher + student below 2.5x of FP
   training memory. CPU only (on CUDA, use ``torch.cuda.max_memory_allocated`` instead).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from typing import Any

import torch

from bitscale.harness.contracts import GenerativeModel
from bitscale.plugins.losses.kl import ForwardKL
from bitscale.plugins.losses.mse import MSE
from bitscale.plugins.quantizers.qat import QAT, QATOptions
from bitscale.plugins.quantizers.qat.engine import build_student, train_student, trainable_groups, training_mode
from bitscale.plugins.quantizers.qat.teacher import TeacherOutputs
from bitscale.precision import Precision
from bitscale.testing.toy import ToyModel


def make_model(args: argparse.Namespace) -> GenerativeModel:
    if args.model:
        from bitscale.harness.plugin_loader import get_plugins

        family_name, _, size = args.model.partition("/")
        family = get_plugins().models.get(family_name)
        return family.build(size or family.sizes[0], family.Options(), torch.device("cpu"))
    return ToyModel(
        args.depth, batch=args.batch, vocab=args.vocab, dim=args.dim, heads=max(1, args.dim // 64), seq=args.seq
    )


def fp_groups(model: GenerativeModel, lr: float) -> list[dict[str, Any]]:
    """The parameters QAT trains by default, in the full-precision model."""
    params = [p for lin in model.quant_layers().values() for p in (lin.weight, lin.bias) if p is not None]
    return [{"params": params, "lr": lr, "weight_decay": 0.0}]


def step_seconds(model, groups, batches, teacher, steps: int, repeats: int) -> float:
    """Best per-step wall time of ``train_student`` over ``repeats`` runs of ``steps`` steps."""
    loss = ForwardKL() if model.style == "language" else MSE()
    opts = QATOptions(steps=steps)
    best = float("inf")
    with training_mode(model.module, groups) as g:
        train_student(model, loss, batches, teacher, g, QATOptions(steps=2), torch.Generator())  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            train_student(model, loss, batches, teacher, g, opts, torch.Generator().manual_seed(0))
            best = min(best, (time.perf_counter() - t) / steps)
    return best


def bench_time(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = make_model(args)
    batches = base.calibration_batches(4, torch.Generator().manual_seed(0))
    teacher = TeacherOutputs(base, batches, budget_mb=1e9, share=False)
    fp = copy.deepcopy(base)
    t_fp = step_seconds(fp, fp_groups(fp, 1e-4), batches, teacher, args.steps, args.repeats)
    rows = [{"mode": "fp", "precision": "W16A16", "step_ms": 1e3 * t_fp, "ratio": 1.0}]
    for prec, learnable in (("W4A16", False), ("W3A16", False), ("W4A16", True), ("W4A8", False), ("W8A8:fp", False)):
        student = copy.deepcopy(base)
        opts = QATOptions(learnable_scales=learnable)
        build_student(student, Precision.parse(prec), batches, opts)
        t = step_seconds(student, trainable_groups(student.module, opts), batches, teacher, args.steps, args.repeats)
        rows.append(
            {"mode": "qat" + ("+scales" if learnable else ""), "precision": prec, "step_ms": 1e3 * t, "ratio": t / t_fp}
        )
    return rows


# --------------------------------------------------------------------------- memory (subprocesses)


def _rss(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run in a fresh process: peak RSS of one mode above the RSS before the model was built."""
    torch.set_num_threads(1)
    warm_args = argparse.Namespace(
        **{**vars(args), "dim": 64, "depth": 1, "vocab": 64, "seq": 16, "batch": 2, "model": None}
    )
    for warm_mode in ("fp", "qat"):  # one-time thread pools, allocator arenas, lazy imports
        _memory_run(warm_mode, warm_args)
    base = _rss("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark
    model_bytes = _memory_run(mode, args)
    return {"mode": mode, "peak_mb": (_rss("VmHWM") - base) / 2**20, "model_mb": model_bytes / 2**20}


def _memory_run(mode: str, args: argparse.Namespace) -> int:
    model = make_model(args)
    model_bytes = sum(p.numel() * p.element_size() for p in model.module.parameters())
    batches = model.calibration_batches(4, torch.Generator().manual_seed(0))
    if mode == "fp":
        # Plain FP training needs no teacher: cross-entropy against fixed random targets stands in
        # for the data loss (same logits, same backward, no second model and no cached outputs).
        groups = fp_groups(model, 1e-4)
        g = torch.Generator().manual_seed(1)
        with training_mode(model.module, groups) as gr:
            opt = torch.optim.AdamW(gr)
            for i in range(args.mem_steps):
                logits = model.forward_batch(batches[i % len(batches)])
                target = torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=g)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    else:
        opts = QATOptions(
            steps=args.mem_steps, share_teacher_cache=False, teacher_cache_mb=0 if mode == "qat-no-cache" else 2048
        )
        loss = ForwardKL() if model.style == "language" else MSE()
        QAT(opts).quantize(
            model, Precision.parse("W4A16"), batches, loss=loss, generator=torch.Generator().manual_seed(0)
        )
    return model_bytes


def bench_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for mode in ("fp", "qat", "qat-no-cache"):
        cmd = [sys.executable, __file__, "--child", mode, *_shape_args(args)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    fp = rows[0]["peak_mb"]
    for r in rows:
        r["vs_fp_training"] = r["peak_mb"] / fp
    return rows


def _shape_args(args: argparse.Namespace) -> list[str]:
    keys = ("dim", "depth", "vocab", "seq", "batch", "mem_steps") + (("model",) if args.model else ())
    return [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="FAMILY/SIZE of a registered model instead of the toy transformer")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mem-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.dim, args.depth, args.seq, args.batch, args.steps, args.repeats = 64, 2, 16, 4, 5, 2
    if args.child:
        print(json.dumps(memory_child(args.child, args)))
        return
    torch.set_num_threads(args.threads)
    from tabulate import tabulate

    shape = (
        args.model
        or f"dim {args.dim}, depth {args.depth}, vocab {args.vocab}, {args.batch} x {args.seq} tokens per step"
    )
    print(f"# QAT step time vs FP training step ({shape}, {args.threads} thread(s))")
    print(tabulate(bench_time(args), headers="keys", floatfmt=".3g", tablefmt="github"))
    if not args.skip_memory:
        print(f"\n# Peak memory above the pre-model RSS, W4A16, forward-kl ({shape})")
        print(tabulate(bench_memory(args), headers="keys", floatfmt=".3g", tablefmt="github"))


if __name__ == "__main__":
    main()
