"""QuantLinear fake-quant forward overhead vs a plain ``nn.Linear``.

    python benchmarks/bench_quant_linear.py [--quick] [--device cuda]

Modes, all on the same ``Linear(in -> out)`` and the same input ``(tokens, in)``:
  - ``frozen W``        : PTQ result, weight stored already fake-quantized (what RTN/GPTQ/... install)
  - ``frozen W + A8 tok``: plus dynamic per-token int8 activation fake-quant
  - ``frozen W + A8 static``: plus static per-tensor int8 activation fake-quant
  - ``on-the-fly W4 g128``: QAT mode, weight fake-quantized at every forward
  - ``smoothed + A8 tok``: SmoothQuant's in-layer division kept, plus per-token A8
Reports median time per forward and the ratio to ``nn.Linear``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec
from bitscale.quant.linear import QuantLinear


def _median_time(fn, x: torch.Tensor, repeats: int, device: torch.device) -> float:
    times = []
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(inp: int, out: int, tokens: int, repeats: int, device: torch.device) -> list[tuple[str, float, float]]:
    torch.manual_seed(0)
    lin = nn.Linear(inp, out).to(device)
    x = torch.randn(tokens, inp, device=device)
    a8 = QuantSpec("int8", "token")
    static = ActQuantizer(QuantSpec("int8", "tensor")).to(device)
    static.observe()
    static(x)
    static.freeze()
    modes = {
        "nn.Linear": lin,
        "frozen W": QuantLinear.from_linear(lin, weight_spec=QuantSpec("int4", "channel")),
        "frozen W + A8 tok": QuantLinear.from_linear(
            lin, weight_spec=QuantSpec("int4", "channel"), act_quantizer=ActQuantizer(a8)
        ),
        "frozen W + A8 static": QuantLinear.from_linear(
            lin, weight_spec=QuantSpec("int4", "channel"), act_quantizer=static
        ),
        "on-the-fly W4 g128": QuantLinear.from_linear(
            lin, weight_spec=QuantSpec("int4", "group", 128), on_the_fly=True
        ),
        "smoothed + A8 tok": QuantLinear.from_linear(
            lin,
            weight_spec=QuantSpec("int8", "channel"),
            smooth=torch.rand(inp, device=device) + 0.5,
            act_quantizer=ActQuantizer(a8),
        ),
    }
    base = _median_time(lin, x, repeats, device)
    rows = []
    for name, m in modes.items():
        t = base if m is lin else _median_time(m, x, repeats, device)
        rows.append((name, t * 1e3, t / base))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = [(1024, 1024, 256)] if args.quick else [(1024, 4096, 1024), (4096, 1024, 1024)]
    print("| shape (in->out, tokens) | mode | ms / forward | x nn.Linear |")
    print("|---|---|---|---|")
    for inp, out, tokens in shapes:
        for name, ms, ratio in bench(inp, out, tokens, 5 if args.quick else 20, device):
            print(f"| {inp}->{out}, {tokens} | {name} | {ms:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
