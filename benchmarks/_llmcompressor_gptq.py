"""Worker for ``bench_gptq_reference.py``: llm-compressor's GPTQ on one saved layer.

Runs under the *reference* interpreter (a venv with llmcompressor and compressed-tensors;
llmcompressor 0.14 pins torch <= 2.14, so not the project venv) and imports nothing from
bitscale. Loads ``weight`` and ``hessian`` from a safetensors file, then answers one JSON
request per stdin line, so the caller can interleave its own timed runs with these:

    {"run": {"key", "bits", "group_size", "symmetric", "act_order"}, "block_size", "damp"}
        -> {"wall_s", "cpu_s"}   (quantized weight kept under "key")
    {"save": PATH} -> {"versions": ...}   (kept weights written to PATH as safetensors)

Each run computes the weight qparams the way ``GPTQModifier`` does (its default weight
observer, ``memoryless_minmax``, on the original weight) and calls
``llmcompressor.modifiers.gptq.gptq_quantize.quantize_weight``.

    python _llmcompressor_gptq.py LAYER.safetensors THREADS
"""

from __future__ import annotations

import json
import sys
import time

# Replies go to the real stdout; anything the libraries print goes to stderr.
_REPLY, sys.stdout = sys.stdout, sys.stderr

import torch  # noqa: E402
from compressed_tensors.quantization import QuantizationArgs  # noqa: E402
from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight  # noqa: E402
from llmcompressor.observers import Observer  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def run(
    weight: torch.Tensor, hessian: torch.Tensor, args: QuantizationArgs, block_size: int, damp: float
) -> torch.Tensor:
    """Observer qparams from the original weight, then GPTQ (what GPTQModifier does per layer)."""
    observer = Observer.load_from_registry("memoryless_minmax", base_name="weight", args=args)
    observer(weight)
    qp = observer.get_qparams()
    q, _loss, fallback = quantize_weight(
        weight.unsqueeze(0).clone(),  # quantize_weight uses its inputs as scratch buffers
        hessian.unsqueeze(0).clone(),
        qp["scale"].unsqueeze(0),
        qp["zero_point"].unsqueeze(0),
        None,
        args,
        blocksize=block_size,
        percdamp=damp,
    )
    if bool(fallback.any()):
        raise RuntimeError("llm-compressor fell back to RTN (Hessian not positive definite)")
    return q[0]


def _reply(obj: dict) -> None:
    _REPLY.write(json.dumps(obj) + "\n")
    _REPLY.flush()


def main() -> None:
    torch.set_num_threads(int(sys.argv[2]))
    t = load_file(sys.argv[1])
    weight, hessian = t["weight"], t["hessian"]
    kept: dict[str, torch.Tensor] = {}
    _reply({"ready": True, "threads": torch.get_num_threads()})
    for line in sys.stdin:
        req = json.loads(line)
        if "save" in req:
            save_file({k: v.contiguous() for k, v in kept.items()}, req["save"])
            from importlib.metadata import version

            _reply({"versions": {p: version(p) for p in ("torch", "llmcompressor", "compressed-tensors")}})
            continue
        s = req["run"]
        args = QuantizationArgs(
            num_bits=s["bits"],
            type="int",
            symmetric=s["symmetric"],
            strategy="group" if s["group_size"] else "channel",
            group_size=s["group_size"],
            actorder="weight" if s["act_order"] else None,
        )
        wall, cpu = time.perf_counter(), time.process_time()
        kept[s["key"]] = run(weight, hessian, args, req["block_size"], req["damp"])
        _reply({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})


if __name__ == "__main__":
    main()
