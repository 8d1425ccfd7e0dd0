"""QAT-distill's options (a module of its own so the engine and the plugin both read it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bitscale.harness.quant_recipe import QuantOptions


class QATOptions(QuantOptions):
    """QAT-distill options. The defaults keep one tiny-zoo cell well under a minute on a CPU.

    Granularity options (``group_size``, symmetry, activation granularity) are ``QuantOptions``'.
    """

    steps: int = Field(default=100, ge=0, description="Optimizer steps (one calibration batch each).")
    lr: float = Field(
        default=0.01,
        gt=0,
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
    scale_lr: float | None = Field(
        default=None, gt=0, description="Learning rate of the scales (same unit); None = lr."
    )
    train: Literal["quant_layers", "all"] = Field(
        default="quant_layers",
        description="'quant_layers': weights/biases of the quantized Linears; 'all': every parameter of the module.",
    )
    train_batches: int | None = Field(
        default=None,
        ge=1,
        description="Draw this many training batches from model.calibration_batches; None = the calibration passed in.",
    )
    teacher_cache_mb: float = Field(default=2048.0, ge=0, description="Memory for cached teacher outputs.")
    share_teacher_cache: bool = Field(
        default=True, description="Reuse the last cell's teacher outputs when model weights and batches match."
    )
