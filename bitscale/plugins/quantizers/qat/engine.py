"""QAT-distill's training engine: the student's fake-quantized layers, its parameter groups, the loop.

``build_student`` swaps ``quant_layers()`` for on-the-fly fake-quantized ``QuantLinear``s,
``trainable_groups`` gives AdamW one parameter group per layer (learning rates in units of the
layer's weight grid), ``train_student`` runs the optimisation against the ``TeacherOutputs``,
and ``freeze_student`` bakes the result into plain weights. The plugin (``plugin.QAT``) only
wires these together and writes the report.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from bitscale import DistillLoss, GenerativeModel, Precision
from bitscale.harness.quant_recipe import activation_spec, calibrate_static_activations, quant_linears, weight_spec
from bitscale.plugins.quantizers.qat.options import QATOptions
from bitscale.plugins.quantizers.qat.teacher import TeacherOutputs
from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec, weight_minmax
from bitscale.quant.linear import QuantLinear
from bitscale.quant.swap import set_submodule

# --------------------------------------------------------------------------- student


def build_student(
    model: GenerativeModel, precision: Precision, batches: list[Any], opts: QATOptions
) -> QuantSpec | None:
    """Swap ``quant_layers()`` for on-the-fly fake-quantized ``QuantLinear``s; return the weight spec.

    Static (per-tensor) activation ranges are calibrated on ``batches`` right away, so training
    starts from exactly what RTN would produce.
    """
    wspec = weight_spec(precision.weights, opts)
    aspec = activation_spec(precision.activations, opts)
    with torch.no_grad():
        for name, lin in model.quant_layers().items():
            aq = None if aspec is None else ActQuantizer(aspec, learnable=opts.learnable_scales)
            q = QuantLinear.from_linear(
                lin,
                weight_spec=wspec,
                on_the_fly=True,
                learnable_weight_scale=opts.learnable_scales,
                act_quantizer=aq,
            )
            set_submodule(model.module, name, q)
    calibrate_static_activations(model, batches)
    return wspec


def trainable_groups(module: nn.Module, opts: QATOptions) -> list[dict[str, Any]]:
    """AdamW parameter groups, one per quantized layer (its weight and bias, then its scales).

    With ``lr_unit="grid"`` a layer's learning rate is ``lr`` times its weight-grid step: Adam
    moves a parameter by about the learning rate per step whatever the gradient's size, so this
    keeps every update the same small fraction of the grid at 3 bits and at 8 bits (a fixed rate
    that suits W3 would jump across several W8 grid points per step). Learned activation scales
    are measured in their own step (the scale itself). Parameters without a grid (weights kept
    in 16 bits, other parameters with ``train="all"``) use ``other_lr``.
    """
    grid = opts.lr_unit == "grid"
    scale_lr = opts.scale_lr if opts.scale_lr is not None else opts.lr
    groups: list[dict[str, Any]] = []
    taken: set[int] = set()
    for q in quant_linears(module).values():
        step = grid_step(q)
        lr = (opts.lr * step if step is not None else opts.other_lr) if grid else opts.lr
        params = [p for p in (q.weight, q.bias) if p is not None]
        groups.append({"params": params, "lr": lr, "weight_decay": opts.weight_decay})
        for sub, sub_step in ((q.weight_quantizer, step), (q.act_quantizer, None)):
            scales = [] if sub is None else list(sub.parameters())
            if not scales:
                continue
            if sub_step is None:  # an activation scale is its own grid step
                sub_step = float(sub.scale.detach().abs().mean()) if sub.scale is not None else None
            slr = (scale_lr * sub_step if sub_step is not None else opts.other_lr) if grid else scale_lr
            groups.append({"params": scales, "lr": slr, "weight_decay": 0.0})
        taken.update(id(p) for g in groups for p in g["params"])
    if opts.train == "all":
        rest = [p for p in module.parameters() if id(p) not in taken]
        if rest:
            groups.append({"params": rest, "lr": opts.other_lr if grid else opts.lr, "weight_decay": opts.weight_decay})
    return groups


def grid_step(q: QuantLinear) -> float | None:
    """Mean spacing of ``q``'s weight grid (min-max range over levels; uniform-equivalent for fp)."""
    wq = q.weight_quantizer
    if wq is None:
        return None
    lo, hi = weight_minmax(q.weight.detach(), wq.spec)
    span = hi.clamp(min=0) - lo.clamp(max=0)  # the grid always contains zero (see formats)
    return float(span.mean()) / (2**wq.spec.bits - 1)


# --------------------------------------------------------------------------- training


def train_student(
    model: GenerativeModel,
    loss: DistillLoss,
    batches: list[Any],
    teacher: TeacherOutputs,
    groups: list[dict[str, Any]],
    opts: QATOptions,
    generator: torch.Generator,
) -> list[float]:
    """Run the optimisation loop; return the loss of every step."""
    if opts.steps == 0:
        return []
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, opts))
    params = [p for g in groups for p in g["params"]]
    history: list[float] = []
    order: list[int] = []
    for step in range(opts.steps):
        if not order:  # a fresh permutation per pass over the data, from the cell's generator
            order = torch.randperm(len(batches), generator=generator).tolist()
        i = order.pop()
        value = loss(model.forward_batch(batches[i]), teacher.get(i))
        if not torch.isfinite(value):
            raise FloatingPointError(f"qat: {loss.name} loss is {float(value)} at step {step}; lower lr?")
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if opts.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
        optimizer.step()
        schedule.step()
        history.append(float(value.detach()))
    return history


def lr_factor(step: int, opts: QATOptions) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine to ``min_lr_ratio`` (or constant)."""
    if step < opts.warmup_steps:
        return (step + 1) / opts.warmup_steps
    if opts.schedule == "constant":
        return 1.0
    span = max(1, opts.steps - opts.warmup_steps)
    progress = min(1.0, (step - opts.warmup_steps) / span)
    return opts.min_lr_ratio + (1 - opts.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@contextmanager
def training_mode(module: nn.Module, groups: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Only the trained parameters require grad, the module is in eval mode; both restored after."""
    flags = {id(p): p.requires_grad for p in module.parameters()}
    was_training = module.training
    trained = {id(p) for g in groups for p in g["params"]}
    for p in module.parameters():
        p.requires_grad_(id(p) in trained)
    module.eval()  # no dropout: deterministic, and the student sees what the teacher saw
    try:
        yield groups
    finally:
        for p in module.parameters():
            p.requires_grad_(flags.get(id(p), False))
            p.grad = None
        module.train(was_training)


def freeze_student(module: nn.Module) -> None:
    """Bake fake-quantized weights into plain weights; learned activation scales become buffers."""
    with torch.no_grad():
        for q in quant_linears(module).values():
            q.freeze_weight()
            aq = q.act_quantizer
            if aq is not None and aq.learnable and aq.scale is not None:
                scale, zero = aq.scale.detach(), None if aq.zero is None else torch.round(aq.zero.detach())
                aq.learnable = False
                aq.set_qparams(scale.abs().clamp(min=1e-12), zero)


def tail_mean(history: list[float], n: int = 10) -> float:
    tail = history[-n:]
    return sum(tail) / len(tail) if tail else math.nan
