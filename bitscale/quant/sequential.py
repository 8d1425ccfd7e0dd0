"""Layer-by-layer driver for Hessian-based PTQ (GPTQ, GPTVQ) within a memory budget.

The contract gives layers, not blocks, so GPTQ's "block by block with cached block inputs"
is replaced by: take the layers of ``quant_layers()`` in module order, in *chunks* whose
Hessians fit in ``budget_bytes``; for each chunk run the calibration batches once through
``forward_batch`` with hooks that stream ``X^T X`` (no activation is kept), quantize the
chunk's layers, swap them in, free the Hessians, and go on. Later chunks therefore see the
outputs of already-quantized layers, as in GPTQ's sequential mode, and peak memory is the
model plus at most ``budget_bytes`` of Hessians plus one layer's working set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from bitscale.quant.capture import collect_hessians
from bitscale.quant.model import QuantModel
from bitscale.quant.swap import set_submodule

#: Quantize one layer given its Hessian; return the module to put in its place.
LayerFn = Callable[[str, nn.Linear, Tensor], nn.Module]


def model_bytes(model: QuantModel) -> int:
    """Bytes of ``model.module``'s parameters and buffers."""
    tensors = list(model.module.parameters()) + list(model.module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def hessian_chunks(layers: dict[str, nn.Linear], budget_bytes: int) -> list[list[str]]:
    """Consecutive layer names grouped so each group's float32 Hessians fit ``budget_bytes``.

    Every chunk has at least one layer, even one whose Hessian alone exceeds the budget.
    """
    chunks: list[list[str]] = []
    cur: list[str] = []
    used = 0
    for name, lin in layers.items():
        need = lin.in_features**2 * 4
        if cur and used + need > budget_bytes:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(name)
        used += need
    if cur:
        chunks.append(cur)
    return chunks


def quantize_sequentially(
    model: QuantModel,
    calibration: list[Any],
    layer_fn: LayerFn,
    budget_bytes: int,
) -> int:
    """Quantize every layer of ``model.quant_layers()`` with ``layer_fn``; return the number of passes."""
    if not calibration:
        raise ValueError("Hessian-based quantization needs calibration batches (got none)")
    layers = model.quant_layers()
    chunks = hessian_chunks(layers, budget_bytes)
    for chunk in chunks:
        hessians = collect_hessians(model, {n: layers[n] for n in chunk}, calibration)
        with torch.no_grad():
            for name in chunk:
                new = layer_fn(name, layers[name], hessians.pop(name))
                set_submodule(model.module, name, new)
        del hessians
    return len(chunks)
