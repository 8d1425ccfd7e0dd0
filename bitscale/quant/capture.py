"""Forward hooks that see what flows into ``quant_layers()`` while ``forward_batch`` runs calibration.

The contract exposes layers, not blocks, so everything a quantizer learns about activations
comes from hooks on those layers during ordinary forward passes:

- ``run_calibration``: run the batches with hooks attached, gradients off, hooks always removed.
- ``collect_hessians``: streaming ``H = 2/N * sum x x^T`` per layer (no activation cache), with
  layers that read the *same* input tensor (q/k/v projections) sharing one Hessian.
- ``input_channel_absmax``: per-input-channel max |x| (SmoothQuant statistics).
- ``trace_input_groups``: which layers share an input, and which norm layer produced it.
- ``capture_layer_io``: keep inputs (and outputs) of a *few* named layers, for methods that
  optimise one layer or one group at a time (OmniQuant), subsampled to a row budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bitscale.quant.model import QuantModel

InputHook = Callable[[str, Tensor], None]


def _flat(x: Tensor) -> Tensor:
    """``(..., C)`` -> ``(N, C)`` float32 rows (tokens)."""
    return x.detach().reshape(-1, x.shape[-1]).float()


@contextmanager
def input_hooks(layers: dict[str, nn.Module], fn: InputHook) -> Any:
    """Call ``fn(name, input)`` before every forward of each named layer; remove the hooks on exit."""
    handles = []
    for name, mod in layers.items():
        handles.append(mod.register_forward_pre_hook(lambda _m, args, _n=name: fn(_n, args[0])))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_calibration(model: QuantModel, calibration: Iterable[Any]) -> None:
    """Run every calibration batch through ``forward_batch`` without gradients."""
    with torch.no_grad():
        for batch in calibration:
            model.forward_batch(batch)


# --------------------------------------------------------------------------- Hessians


class _SharedInput:
    """Detects consecutive layers reading the very same input tensor (e.g. q, k, v).

    Only the most recent input is referenced, so nothing like a full-model activation cache
    is ever held (and a freed tensor's address cannot be mistaken for a shared input).
    """

    def __init__(self) -> None:
        self.last: Tensor | None = None
        self.leader: str | None = None

    def leader_of(self, name: str, x: Tensor) -> str:
        if self.last is not None and x is self.last:
            return self.leader  # type: ignore[return-value]
        self.last, self.leader = x, name
        return name

    def reset(self) -> None:
        self.last, self.leader = None, None


def collect_hessians(
    model: QuantModel, layers: dict[str, nn.Module], calibration: Iterable[Any], share: bool = True
) -> dict[str, Tensor]:
    """``H = 2/N X^T X`` (float32, ``(in, in)``) per layer, accumulated batch by batch.

    With ``share``, layers reading the same tensor get the *same* Hessian object (GPTQ may damp
    it in place only through a copy; callers must not mutate it).
    """
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    alias: dict[str, str] = {}
    shared = _SharedInput()

    def hook(name: str, x: Tensor) -> None:
        leader = shared.leader_of(name, x) if share else name
        if leader != name:
            alias[name] = leader
            return
        xf = _flat(x)
        if name not in sums:
            sums[name] = torch.zeros(xf.shape[1], xf.shape[1], device=xf.device, dtype=torch.float32)
            counts[name] = 0
        sums[name].addmm_(xf.t(), xf)
        counts[name] += xf.shape[0]

    with input_hooks(layers, hook), torch.no_grad():
        for batch in calibration:
            model.forward_batch(batch)
            shared.reset()
    out: dict[str, Tensor] = {}
    for name in layers:
        leader = alias.get(name, name)
        if leader not in sums:
            raise RuntimeError(f"layer {name!r} saw no input during calibration: is it used by forward_batch?")
        if leader not in out:
            out[leader] = sums[leader].mul_(2.0 / counts[leader])
        out[name] = out[leader]
    return out


def input_channel_absmax(
    model: QuantModel, layers: dict[str, nn.Module], calibration: Iterable[Any]
) -> dict[str, Tensor]:
    """Per-input-channel ``max |x|`` of each layer over all calibration tokens."""
    amax: dict[str, Tensor] = {}

    def hook(name: str, x: Tensor) -> None:
        m = _flat(x).abs().amax(dim=0)
        amax[name] = m if name not in amax else torch.maximum(amax[name], m)

    with input_hooks(layers, hook):
        run_calibration(model, calibration)
    return amax


# --------------------------------------------------------------------------- input groups


@dataclass
class InputGroup:
    """Layers that read one and the same input tensor, and the norm module that produced it."""

    members: list[str]
    producer: str | None = None  # name of the LayerNorm/RMSNorm-like module whose output it is


def _is_affine_norm(m: nn.Module) -> bool:
    """A norm whose output is ``normalized * weight (+ bias)``: a scale can be folded into it."""
    w = getattr(m, "weight", None)
    kind = type(m).__name__.lower()
    return (
        isinstance(w, nn.Parameter)
        and w.dim() == 1
        and ("norm" in kind)
        and not isinstance(m, nn.modules.batchnorm._BatchNorm)
    )


def trace_input_groups(model: QuantModel, layers: dict[str, nn.Module], batch: Any) -> list[InputGroup]:
    """Run one batch and group layers by shared input; note an affine norm that produced it.

    The producer is only recorded when the layer input *is* the norm's output tensor (no
    modulation, no reshaping in between), so folding a scale into the norm is exact for this
    group. Whether the norm output also feeds anything else cannot be seen from hooks; callers
    that fold must verify the full-precision output afterwards.
    """
    norms = {n: m for n, m in model.module.named_modules() if _is_affine_norm(m)}
    last_norm: dict[str, Any] = {"out": None, "name": None}
    groups: dict[str, InputGroup] = {}
    order: list[str] = []
    shared = _SharedInput()
    handles = []
    for n, m in norms.items():

        def post(_m: nn.Module, _a: Any, out: Any, _n: str = n) -> None:
            if isinstance(out, Tensor):
                last_norm["out"], last_norm["name"] = out, _n

        handles.append(m.register_forward_hook(post))

    def hook(name: str, x: Tensor) -> None:
        if name in groups or any(name in g.members for g in groups.values()):
            return  # only the first call of a layer defines its group
        leader = shared.leader_of(name, x)
        if leader != name:
            groups[leader].members.append(name)
            return
        producer = last_norm["name"] if last_norm["out"] is not None and x is last_norm["out"] else None
        groups[name] = InputGroup([name], producer)
        order.append(name)

    try:
        with input_hooks(layers, hook), torch.no_grad():
            model.forward_batch(batch)
    finally:
        for h in handles:
            h.remove()
    seen = {m for g in groups.values() for m in g.members}
    missing = [n for n in layers if n not in seen]
    return [groups[n] for n in order] + [InputGroup([n]) for n in missing]


# --------------------------------------------------------------------------- layer I/O


@dataclass
class LayerIO:
    """Inputs of one layer (rows ``(N, in)``), subsampled to at most ``max_rows`` tokens."""

    inputs: list[Tensor] = field(default_factory=list)

    def cat(self) -> Tensor:
        return torch.cat(self.inputs, dim=0)


def capture_layer_inputs(
    model: QuantModel,
    layers: dict[str, nn.Module],
    calibration: Iterable[Any],
    max_rows: int,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Input rows of the named layers (a few at a time by design), at most ``max_rows`` each.

    Rows are subsampled uniformly per batch so that memory stays bounded whatever the
    calibration size; only the layers asked for are kept (not a full-model cache).
    """
    io = {n: LayerIO() for n in layers}
    batches = list(calibration)
    per_batch = max(1, max_rows // max(1, len(batches)))

    def hook(name: str, x: Tensor) -> None:
        rows = _flat(x)
        if rows.shape[0] > per_batch:
            idx = torch.randperm(rows.shape[0], generator=generator, device="cpu")[:per_batch].to(rows.device)
            rows = rows[idx]
        io[name].inputs.append(rows.to(x.dtype))

    with input_hooks(layers, hook):
        run_calibration(model, batches)
    return {n: v.cat()[:max_rows] for n, v in io.items()}
