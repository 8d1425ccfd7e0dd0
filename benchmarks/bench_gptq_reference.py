"""bitscale's GPTQ against llm-compressor's on the same layer: output error and wall time.

    python benchmarks/bench_gptq_reference.py                      # 1024x4096, 128 sequences
    python benchmarks/bench_gptq_reference.py --quick              # 256x512, seconds
    python benchmarks/bench_gptq_reference.py --act-order          # also act-order rows
    python benchmarks/bench_gptq_reference.py --grid sym           # symmetric rows only
    python benchmarks/bench_gptq_reference.py --layer 256x512 --sequences 128 --tokens 32 --outliers 8
    python benchmarks/bench_gptq_reference.py --reference-python /path/to/python

llm-compressor 0.14 pins torch <= 2.14, so it lives in its own venv (default
``.venv-gptq-ref/bin/python``; install command in docs/quantizers.md; without it this
benchmark prints how to make it and exits 0). One ``Linear(4096 -> 1024)`` with correlated
inputs (``LinearModel``: ``x = z @ mix + noise``), Hessian from 128 calibration sequences x 64
tokens (``--layer``, ``--sequences``, ``--tokens``, ``--outliers`` change the layer). Weight and
Hessian go to a safetensors file; a worker under the reference interpreter (``benchmarks/_llmcompressor_gptq.py``) runs llm-compressor's ``quantize_weight``
on it with qparams from its ``memoryless_minmax`` observer, as ``GPTQModifier`` does. The two
sides run alternately (reference first on even repeats, bitscale first on odd ones), so a
change in machine load hits both.

Matched settings: the same int grids (asymmetric min-max; symmetric over all 2^b codes,
scale max|w| / ((2^b - 1)/2)), damping 0.01 x mean diag H, block size 128, the same torch
thread count. Symmetric rows also show bitscale's restricted grid (codes +-(2^(b-1)-1)), which
the reference does not have. llm-compressor fixes group scales from the original weight before
the GPTQ loop, so bitscale runs with ``static_groups=True`` (the same algorithm); bitscale's
default (group scales from the error-updated weights, as the original GPTQ code) is reported
alongside.

Output error ``||X W^T - X Wq^T||^2 / ||X W^T||^2`` on held-out inputs; "differing" is the
fraction of quantized weights that are not equal (to 1e-5 x max|W|) between the two. Times:
median of ``--repeats`` runs, Hessian given (not timed); bitscale's include its qparams, the
reference's its observer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tabulate import tabulate

from bitscale.quant.capture import collect_hessians
from bitscale.quant.formats import QuantSpec, fake_quant_weight
from bitscale.quant.gptq import gptq_quantize
from bitscale.testing.toy import LinearModel

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = ROOT / ".venv-gptq-ref" / "bin" / "python"
WORKER = Path(__file__).resolve().parent / "_llmcompressor_gptq.py"
BLOCK_SIZE, DAMP = 128, 0.01
INSTALL = "python3.11 -m venv .venv-gptq-ref && .venv-gptq-ref/bin/pip install llmcompressor==0.14.0.1"


class Reference:
    """The llm-compressor worker process: one request per line, one JSON reply per line."""

    def __init__(self, python: str, layer: Path, threads: int, log: Path) -> None:
        self._log, self._log_file = log, log.open("w")
        self._p = subprocess.Popen(
            [python, str(WORKER), str(layer), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        self.threads = self._read()["threads"]

    def ask(self, req: dict) -> dict:
        self._p.stdin.write(json.dumps(req) + "\n")
        self._p.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self._p.stdout.readline()
        if not line:
            sys.exit(f"the reference worker died:\n{self._log.read_text()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        self._p.stdin.close()
        self._p.wait()
        self._p.stdout.close()
        self._log_file.close()


def _err(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor) -> float:
    return float((x @ (wq - w).T).pow(2).sum() / (x @ w.T).pow(2).sum())


GRIDS = {"asym": (False,), "sym": (True,), "both": (False, True)}


def _settings(act_order: bool, grid: str) -> list[dict]:
    runs = []
    for symmetric in GRIDS[grid]:
        for ao in (False, True) if act_order else (False,):
            for bits in (3, 4):
                for gs in (None, 128):
                    key = (
                        f"int{bits}_{'g' + str(gs) if gs else 'channel'}_{'sym' if symmetric else 'asym'}"
                        f"{'_actorder' if ao else ''}"
                    )
                    runs.append({"key": key, "bits": bits, "group_size": gs, "act_order": ao, "symmetric": symmetric})
    return runs


def _spec(r: dict, restricted: bool = False) -> QuantSpec:
    gs = r["group_size"]
    return QuantSpec(f"int{r['bits']}", "group" if gs else "channel", gs, r["symmetric"], restricted)


def _shape(text: str) -> tuple[int, int]:
    try:
        out_f, in_f = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected OUTxIN, e.g. 256x512") from None
    if out_f <= 0 or in_f <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: both sizes must be positive")
    return out_f, in_f


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    return parse


def bench(rows: int, cols: int, n_seq: int, seq: int, args: argparse.Namespace) -> tuple[list[dict], dict]:
    m = LinearModel(cols, rows, seq=seq, outlier_channels=args.outliers)
    h = collect_hessians(m, m.quant_layers(), m.calibration_batches(n_seq, torch.Generator().manual_seed(1)))["0"]
    x = m.inputs(16, torch.Generator().manual_seed(2)).reshape(-1, cols)
    w = m.linear.weight.detach().clone()
    runs = _settings(args.act_order, args.grid)
    with tempfile.TemporaryDirectory() as d:
        save_file({"weight": w.contiguous(), "hessian": h.contiguous()}, str(Path(d, "layer.safetensors")))
        ref = Reference(args.reference_python, Path(d, "layer.safetensors"), args.threads, Path(d, "worker.log"))
        ours: dict[str, torch.Tensor] = {}
        times: dict[str, dict[str, list[float]]] = {}
        for r in runs:
            t = times[r["key"]] = {"ours_wall": [], "ours_cpu": [], "ref_wall": [], "ref_cpu": []}
            for rep in range(args.repeats):
                for side in ("ref", "ours") if rep % 2 == 0 else ("ours", "ref"):
                    if side == "ref":
                        got = ref.ask({"run": r, "block_size": BLOCK_SIZE, "damp": DAMP})
                    else:
                        wall, cpu = time.perf_counter(), time.process_time()
                        ours[r["key"]] = gptq_quantize(
                            w, h, _spec(r), BLOCK_SIZE, DAMP, act_order=r["act_order"], static_groups=True
                        ).weight
                        got = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
                    t[f"{side}_wall"].append(got["wall_s"])
                    t[f"{side}_cpu"].append(got["cpu_s"])
        info = ref.ask({"save": str(Path(d, "reference.safetensors"))})
        info["threads"] = ref.threads
        ref.close()
        theirs = load_file(str(Path(d, "reference.safetensors")))
    out = []
    for r in runs:
        k, spec = r["key"], _spec(r)
        e_ours, e_ref = _err(w, ours[k], x), _err(w, theirs[k], x)
        med = {name: statistics.median(v) for name, v in times[k].items()}
        row = {
            "setting": k,
            "err_bitscale": e_ours,
            "err_llmcompressor": e_ref,
            "rel_diff": (e_ours - e_ref) / e_ref,
            "differing": float(((ours[k] - theirs[k]).abs() > 1e-5 * w.abs().max()).float().mean()),
            "err_rtn": _err(w, fake_quant_weight(w, spec), x),
            "err_bitscale_default": None,
            "err_bitscale_restricted": None,
            **{f"{name}_s": v for name, v in med.items()},
            "wall_ratio": med["ours_wall"] / med["ref_wall"],
            "cpu_ratio": med["ours_cpu"] / med["ref_cpu"],
            "all_s": times[k],
        }
        if r["group_size"] and not r["act_order"]:  # bitscale's default group parameters (lazy, from updated weights)
            row["err_bitscale_default"] = _err(w, gptq_quantize(w, h, spec, BLOCK_SIZE, DAMP).weight, x)
        if r["symmetric"]:  # bitscale's restricted symmetric grid, which the reference lacks
            restricted = gptq_quantize(
                w, h, _spec(r, restricted=True), BLOCK_SIZE, DAMP, act_order=r["act_order"], static_groups=True
            ).weight
            row["err_bitscale_restricted"] = _err(w, restricted, x)
        out.append(row)
    return out, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--reference-python",
        default=None,
        help=f"interpreter with llmcompressor installed (default: {DEFAULT_REFERENCE})",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both sides (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per setting and side; the median is reported")
    ap.add_argument("--act-order", action="store_true", help="also run with activation ordering")
    ap.add_argument(
        "--grid",
        choices=sorted(GRIDS),
        default="both",
        help="int grids to compare: asymmetric, symmetric (all 2^b codes, as compressed-tensors), or both (default)",
    )
    ap.add_argument("--quick", action="store_true", help="256x512 layer, 16 sequences x 32 tokens, 1 repeat")
    ap.add_argument(
        "--layer",
        type=_shape,
        default=None,
        metavar="OUTxIN",
        help="layer shape, e.g. 256x512 (default 1024x4096; 256x512 with --quick)",
    )
    ap.add_argument(
        "--sequences", type=_count(1), default=None, help="calibration sequences (default 128; 16 with --quick)"
    )
    ap.add_argument("--tokens", type=_count(1), default=None, help="tokens per sequence (default 64; 32 with --quick)")
    ap.add_argument(
        "--outliers", type=_count(0), default=0, help="input channels with 30x the activation scale (default 0)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.reference_python is None:
        if not DEFAULT_REFERENCE.exists():
            print(f"skipped: no reference interpreter at {DEFAULT_REFERENCE}; make one with\n    {INSTALL}")
            return
        args.reference_python = str(DEFAULT_REFERENCE)
    elif not Path(args.reference_python).exists():
        sys.exit(f"no interpreter at {args.reference_python}")
    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats = 1
    out_f, in_f = args.layer or ((256, 512) if args.quick else (1024, 4096))
    n_seq = args.sequences or (16 if args.quick else 128)
    seq = args.tokens or (32 if args.quick else 64)
    rows, info = bench(out_f, in_f, n_seq, seq, args)
    if args.json:
        print(
            json.dumps({"rows": rows, "reference": info, "threads": args.threads, "torch": torch.__version__}, indent=1)
        )
        return
    table = [
        [
            r["setting"],
            f"{r['err_bitscale']:.5f}",
            f"{r['err_llmcompressor']:.5f}",
            f"{r['rel_diff']:+.3%}",
            f"{r['differing']:.3%}",
            f"{r['err_rtn']:.5f}",
            "" if r["err_bitscale_default"] is None else f"{r['err_bitscale_default']:.5f}",
            ""
            if r["err_bitscale_restricted"] is None
            else f"{r['err_bitscale_restricted']:.5f} ({r['err_bitscale_restricted'] / r['err_llmcompressor']:.2f}x)",
            f"{r['ours_wall_s']:.2f}",
            f"{r['ref_wall_s']:.2f}",
            f"{r['wall_ratio']:.2f}",
            f"{r['cpu_ratio']:.2f}",
        ]
        for r in rows
    ]
    headers = [
        "setting",
        "err bitscale",
        "err llm-compressor",
        "rel. diff",
        "differing",
        "err RTN",
        "err bitscale default groups",
        "err bitscale restricted (vs ref)",
        "bitscale s",
        "llm-compressor s",
        "wall ratio",
        "CPU ratio",
    ]
    print(tabulate(table, headers=headers, tablefmt="github"))
    v = info["versions"]
    print(
        f"\nlayer {out_f}x{in_f}, {n_seq}x{seq} calibration tokens, {args.outliers} outlier channels; "
        f"threads {args.threads} here, {info['threads']} in the reference; median of {args.repeats}, interleaved; "
        f"bitscale: torch {torch.__version__}; reference: torch {v['torch']}, llmcompressor {v['llmcompressor']}, "
        f"compressed-tensors {v['compressed-tensors']}"
    )


if __name__ == "__main__":
    main()
