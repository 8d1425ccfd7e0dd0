"""QAT-distill's plugin: the ``qat`` quantizer (paper section 3.3), wiring the engine to the job.

The package docstring (``bitscale.plugins.quantizers.qat``) describes the method; the training
itself is ``engine`` and the teacher's cache ``teacher``.
"""

from __future__ import annotations

import math

from bitscale import Quantizer, QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import INT_AND_FP, make_report
from bitscale.plugins.quantizers.qat.engine import (
    build_student,
    freeze_student,
    tail_mean,
    train_student,
    trainable_groups,
    training_mode,
)
from bitscale.plugins.quantizers.qat.options import QATOptions
from bitscale.plugins.quantizers.qat.teacher import TeacherOutputs


class QAT(Quantizer[QATOptions]):
    """Quantization-aware training distilled from the full-precision model (paper section 3.3)."""

    name = "qat"
    trains = True
    weight_kinds = activation_kinds = INT_AND_FP
    description = "QAT with the FP model as teacher and a pluggable distillation loss (STE fake quant, AdamW, cosine)"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        if job.loss is None:
            raise ValueError("qat trains with a distillation loss; pass one (e.g. forward-kl, topkld, mse)")
        reason = job.loss.applies_to(job.model.style)
        if reason:
            raise ValueError(reason)
        job.loss.prepare(job.model)
        generator = job.generator
        batches = (
            job.model.calibration_batches(opts.train_batches, generator)
            if opts.train_batches
            else list(job.calibration)
        )
        if not batches:
            raise ValueError("qat needs at least one training batch (got no calibration batches)")

        teacher = TeacherOutputs(job.model, batches, opts.teacher_cache_mb, opts.share_teacher_cache)
        wspec = build_student(job.model, job.precision, batches, opts)
        with training_mode(job.model.module, trainable_groups(job.model.module, opts)) as groups:
            history = train_student(job.model, job.loss, batches, teacher, groups, opts, generator)
        freeze_student(job.model.module)
        cached, reused = teacher.cached, teacher.reused
        teacher.release()

        k = getattr(job.loss, "k", None)
        notes = f"w={wspec}" if wspec else "weights fp16"
        notes += f", loss={job.loss.name}" + (f" (K={k})" if k is not None else "")
        notes += (
            f", {opts.steps} steps, lr={opts.lr:g}{' x grid step' if opts.lr_unit == 'grid' else ''} {opts.schedule}"
        )
        notes += (
            ", teacher outputs reused from the previous cell" if reused else f", teacher cached {cached}/{len(batches)}"
        )
        return make_report(
            job.model,
            notes=notes,
            steps=opts.steps,
            loss_first=history[0] if history else math.nan,
            loss_last=tail_mean(history),
            teacher_cached_batches=cached,
            teacher_reused=float(reused),
        )


@hookimpl
def register_quantizers(register):
    """Register QAT-distill."""
    register(QAT)
