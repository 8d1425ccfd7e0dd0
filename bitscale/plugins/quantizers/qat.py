"""QAT-distill: quantization-aware training with the full-precision model as teacher (paper section 3.3).

The student is the model itself with every ``quant_layers()`` Linear swapped for a ``QuantLinear``
that fake-quantizes its weight at every forward (``WeightQuantizer``, straight-through estimator;
LSQ-style learnable scales optional) and its input activations for A < 16. The teacher is the
same model in full precision, frozen. For ``steps`` steps the student minimizes
``loss(student.forward_batch(b), teacher.forward_batch(b))`` over real training batches, with
AdamW and a cosine (or constant) learning-rate schedule; then the fake-quantized weights are
baked in (``QuantLinear.freeze_weight``) so inference costs one plain matmul, exactly like a PTQ
method's output.

Teacher outputs are computed once per batch, before the layers are swapped, and kept (up to
``teacher_cache_mb``); only batches beyond that budget need a frozen teacher copy at every step.
The last model's cache is also kept across cells (``share_teacher_cache``), keyed by a hash of its
weights and batches, so a grid of losses over one model and precision computes the teacher once.

Determinism: the model runs in eval mode (no dropout), and the batch order comes from the
``generator`` the runner passes; nothing reads the global RNG.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from bitscale import DistillLoss, GenerativeModel, Precision, QuantJob, QuantReport, Quantizer, hookimpl
from bitscale.quant.activation import ActQuantizer
from bitscale.quant.formats import QuantSpec, weight_minmax
from bitscale.quant.linear import QuantLinear
from bitscale.harness.quant_recipe import (
    INT_AND_FP,
    QuantOptions,
    activation_spec,
    calibrate_static_activations,
    make_report,
    quant_linears,
    weight_spec,
)
from bitscale.quant.swap import set_submodule


class QATOptions(QuantOptions):
    """QAT-distill options. The defaults keep one tiny-zoo cell well under a minute on a CPU.

    Granularity options (``group_size``, symmetry, activation granularity) are ``QuantOptions``'.
    """

    steps: int = Field(default=100, ge=0, description="Optimizer steps (one calibration batch each).")
    lr: float = Field(
        default=0.01, gt=0,
        description="Peak AdamW learning rate; with lr_unit='grid' a fraction of each layer's weight-grid step.",
    )
    lr_unit: Literal["grid", "absolute"] = Field(
        default="grid",
        description="'grid': lr (and scale_lr) in units of each layer's quantization step, so updates are the "
        "same fraction of the grid at every bit width; 'absolute': plain learning rates.",
    )
    other_lr: float = Field(
        default=1e-5, gt=0, description="With lr_unit='grid': learning rate of parameters without a weight grid."
    )
    schedule: Literal["cosine", "constant"] = Field(default="cosine", description="Learning-rate decay after warm-up.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps from 0 to lr.")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float | None = Field(default=1.0, gt=0, description="Max global gradient norm; None = no clipping.")
    learnable_scales: bool = Field(
        default=False, description="Train weight (and static activation) scales/zero-points too (LSQ-style)."
    )
    scale_lr: float | None = Field(default=None, gt=0, description="Learning rate of the scales (same unit); None = lr.")
    train: Literal["quant_layers", "all"] = Field(
        default="quant_layers",
        description="'quant_layers': weights/biases of the quantized Linears; 'all': every parameter of the module.",
    )
    train_batches: int | None = Field(
        default=None, ge=1,
        description="Draw this many training batches from model.calibration_batches; None = the calibration passed in.",
    )
    teacher_cache_mb: float = Field(default=2048.0, ge=0, description="Memory for cached teacher outputs.")
    share_teacher_cache: bool = Field(
        default=True, description="Reuse the last cell's teacher outputs when model weights and batches match."
    )


class QAT(Quantizer[QATOptions]):
    """Quantization-aware training distilled from the full-precision model (paper section 3.3)."""

    name = "qat"
    trains = True
    weight_kinds = activation_kinds = INT_AND_FP
    description = (
        "QAT with the FP model as teacher and a pluggable distillation loss (STE fake quant, AdamW, cosine)"
    )

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        if job.loss is None:
            raise ValueError("qat trains with a distillation loss; pass one (e.g. forward-kl, topkld, mse)")
        reason = job.loss.applies_to(job.model.style)
        if reason:
            raise ValueError(reason)
        job.loss.prepare(job.model)
        generator = job.generator
        batches = job.model.calibration_batches(opts.train_batches, generator) if opts.train_batches else list(job.calibration)
        if not batches:
            raise ValueError("qat needs at least one training batch (got no calibration batches)")

        teacher = TeacherOutputs(job.model, batches, opts.teacher_cache_mb, opts.share_teacher_cache)
        wspec = build_student(job.model, job.precision, batches, opts)
        with training_mode(job.model.module, trainable_groups(job.model.module, opts)) as groups:
            history = train_student(job.model, job.loss, batches, teacher, groups, opts, generator)
        _freeze(job.model.module)
        cached, reused = teacher.cached, teacher.reused
        teacher.release()

        k = getattr(job.loss, "k", None)
        notes = f"w={wspec}" if wspec else "weights fp16"
        notes += f", loss={job.loss.name}" + (f" (K={k})" if k is not None else "")
        notes += f", {opts.steps} steps, lr={opts.lr:g}{' x grid step' if opts.lr_unit == 'grid' else ''} {opts.schedule}"
        notes += ", teacher outputs reused from the previous cell" if reused else f", teacher cached {cached}/{len(batches)}"
        return make_report(
            job.model, notes=notes, steps=opts.steps, loss_first=history[0] if history else math.nan,
            loss_last=_tail_mean(history), teacher_cached_batches=cached, teacher_reused=float(reused),
        )


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
                lin, weight_spec=wspec, on_the_fly=True, learnable_weight_scale=opts.learnable_scales,
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


def _freeze(module: nn.Module) -> None:
    """Bake fake-quantized weights into plain weights; learned activation scales become buffers."""
    with torch.no_grad():
        for q in quant_linears(module).values():
            q.freeze_weight()
            aq = q.act_quantizer
            if aq is not None and aq.learnable and aq.scale is not None:
                scale, zero = aq.scale.detach(), None if aq.zero is None else torch.round(aq.zero.detach())
                aq.learnable = False
                aq.set_qparams(scale.abs().clamp(min=1e-12), zero)


def _tail_mean(history: list[float], n: int = 10) -> float:
    tail = history[-n:]
    return sum(tail) / len(tail) if tail else math.nan


# --------------------------------------------------------------------------- teacher


class TeacherOutputs:
    """Full-precision outputs per training batch: cached up to a memory budget, else recomputed.

    Built before the student's layers are swapped, so the cached part needs no teacher copy at
    all. If some batches do not fit, a frozen deep copy of ``model.module`` serves them.
    """

    _shared: ClassVar[tuple[str, list[Tensor]] | None] = None

    def __init__(self, model: GenerativeModel, batches: list[Any], budget_mb: float, share: bool) -> None:
        self.model = model
        self.batches = batches
        self.outputs: list[Tensor] = []
        self.reused = False
        self.module: nn.Module | None = None
        key = _fingerprint(model, batches) if share else None
        shared = TeacherOutputs._shared
        if key is not None and shared is not None and shared[0] == key:
            self.outputs, self.reused = list(shared[1]), True
        else:
            TeacherOutputs._shared = None  # free the previous model's outputs before computing new ones
            budget = budget_mb * 2**20
            with torch.no_grad():
                for b in batches:
                    out = model.forward_batch(b).detach()
                    size = out.numel() * out.element_size()
                    if size * (len(self.outputs) + 1) > budget:
                        break
                    self.outputs.append(out)
            if key is not None and len(self.outputs) == len(batches):
                TeacherOutputs._shared = (key, list(self.outputs))
        if len(self.outputs) < len(batches):
            self.module = copy.deepcopy(model.module).requires_grad_(False).eval()

    @property
    def cached(self) -> int:
        return len(self.outputs)

    def get(self, i: int) -> Tensor:
        """Teacher output for batch ``i``."""
        if i < len(self.outputs):
            return self.outputs[i]
        assert self.module is not None
        with torch.no_grad(), _module_swapped(self.model, self.module):
            return self.model.forward_batch(self.batches[i]).detach()

    def release(self) -> None:
        """Drop this cell's references (the shared cache, if any, keeps its own)."""
        self.outputs, self.module = [], None


@contextmanager
def _module_swapped(model: GenerativeModel, module: nn.Module) -> Iterator[None]:
    """Run ``model.forward_batch`` through another network (the frozen teacher copy)."""
    student = model.module
    model.module = module
    try:
        yield
    finally:
        model.module = student


def _fingerprint(model: GenerativeModel, batches: list[Any]) -> str | None:
    """A hash of the model's weights and the batches; ``None`` when a batch cannot be hashed."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in model.module.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, t)
    for b in batches:
        if not _hash_value(h, b):
            return None
    return h.hexdigest()


def _hash_tensor(h: Any, t: Tensor) -> None:
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())


def _hash_value(h: Any, value: Any) -> bool:
    if isinstance(value, Tensor):
        _hash_tensor(h, value)
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}".encode())
        return all(_hash_value(h, v) for v in value)
    elif isinstance(value, dict):
        h.update(f"dict{len(value)}".encode())
        return all(_hash_value(h, k) and _hash_value(h, v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    elif isinstance(value, (int, float, str, bool, type(None))):
        h.update(repr(value).encode())
    else:
        return False
    return True


@hookimpl
def register_quantizers(register):
    """Register QAT-distill."""
    register(QAT)
