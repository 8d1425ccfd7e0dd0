"""QuaRot (Ashkboos et al., 2024): rotate inputs with randomized Hadamards, then quantize.

1. Affine norms feeding a group of layers get their weight/bias folded into those layers
   (``bitscale.quant.norms``); undone if the full-precision output changes (the norm fed more).
2. Every group of layers reading one input gets one randomized Hadamard ``R`` (seeded from the
   cell's generator; sizes that are not powers of two: Kronecker with a random orthogonal odd
   factor, see ``bitscale.quant.hadamard``). The weight side ``W R`` is fused into the stored
   weight; the input side ``x R`` is applied online by the layer (a fast Walsh-Hadamard
   transform), since the plugin contract exposes layers, not the residual stream QuaRot's
   reference rotates once at the embeddings (see docs/quantizers.md).
3. The full-precision output is checked unchanged; then weights are rounded with RTN or GPTQ
   (on the rotated Hessian ``R^T H R``), and activations quantized after the rotation.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from bitscale import GenerativeModel, QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import (
    QuantOptions,
    ScalarQuantizer,
    act_quantizer,
    calibrate_static_activations,
    make_report,
    weight_spec,
)
from bitscale.quant.capture import trace_input_groups
from bitscale.quant.gptq import gptq_quantize
from bitscale.quant.hadamard import Rotation
from bitscale.quant.norms import fold_norms
from bitscale.quant.sequential import model_bytes, quantize_sequentially
from bitscale.quant.swap import set_submodule
from bitscale.quant.transform import TransformLinear


class QuaRotOptions(QuantOptions):
    """QuaRot options. Defaults: GPTQ weights (QuaRot's headline), per-token activations."""

    weights: Literal["gptq", "rtn"] = Field(default="gptq", description="How the rotated weights are rounded.")
    fold_norms: bool = Field(default=True, description="Fold affine norm weights into the linears reading them.")
    damp: float = Field(default=0.01, gt=0, description="GPTQ diagonal damping (fraction of mean diag H).")
    block_size: int = Field(default=128, gt=0, description="GPTQ lazy-update block.")
    hessian_memory_fraction: float = Field(default=0.25, gt=0, description="GPTQ Hessians held at once / model size.")
    fp_check_rtol: float = Field(
        default=1e-4, gt=0, description="Allowed relative change of the FP output by the rotations."
    )


def relative_change(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def rotate_model(
    model: GenerativeModel,
    calibration: list[Any],
    generator: torch.Generator | None,
    fold: bool = True,
    rtol: float = 1e-4,
) -> dict[str, float]:
    """Install unquantized ``TransformLinear``s with one online Hadamard per input group; check FP output."""
    layers = model.quant_layers()
    batch = calibration[0] if calibration else None
    groups = trace_input_groups(model, layers, batch) if batch is not None else None
    reference = None
    if batch is not None:
        with torch.no_grad():
            reference = model.forward_batch(batch).float()
    folded = 0
    if fold and groups is not None:
        folds = fold_norms(model.module, groups, layers)
        with torch.no_grad():
            if folds and relative_change(model.forward_batch(batch).float(), reference) > rtol:
                folds.undo()  # some norm also fed something else
        folded = len(folds)
    members = [g.members for g in groups] if groups is not None else [[n] for n in layers]
    with torch.no_grad():
        for names in members:
            rot = Rotation.hadamard(layers[names[0]].in_features, generator)
            for n in names:
                set_submodule(model.module, n, TransformLinear.from_linear(layers[n], rotation=rot))
        change = relative_change(model.forward_batch(batch).float(), reference) if batch is not None else 0.0
    if change > rtol:
        raise RuntimeError(f"the rotations changed the full-precision output by {change:.2e} (> {rtol})")
    return {"groups": float(len(members)), "norms_folded": float(folded), "fp_change": change}


class QuaRot(ScalarQuantizer[QuaRotOptions]):
    """Randomized Hadamard input rotations (online), norm folding, then RTN or GPTQ weights."""

    name = "quarot"
    description = "QuaRot: randomized Hadamard rotations (norms folded), then RTN/GPTQ weights"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        if opts.weights == "gptq" and not job.calibration:
            raise ValueError("quarot with GPTQ weights needs calibration batches (or set weights: rtn)")
        done = rotate_model(job.model, job.calibration, job.generator, opts.fold_norms, opts.fp_check_rtol)
        spec = weight_spec(job.precision.weights, opts)
        passes = 0
        if opts.weights == "rtn" or spec is None:
            for q in job.model.quant_layers().values():
                assert isinstance(q, TransformLinear)
                if spec is not None:
                    q.quantize_weight_(spec)
                q.act_quantizer = act_quantizer(job.precision, opts)
        else:

            def layer_fn(name: str, lin: nn.Linear, h: Tensor) -> nn.Module:
                assert isinstance(lin, TransformLinear)
                res = gptq_quantize(lin.weight, lin.input_hessian(h), spec, opts.block_size, opts.damp)
                lin.set_quantized_weight(res.weight, spec)
                lin.act_quantizer = act_quantizer(job.precision, opts)
                return lin

            passes = quantize_sequentially(
                job.model, job.calibration, layer_fn, int(opts.hessian_memory_fraction * model_bytes(job.model))
            )
        calibrate_static_activations(job.model, job.calibration)
        notes = (
            f"w={spec} ({opts.weights}), {int(done['groups'])} rotated input groups, "
            f"{int(done['norms_folded'])} norms folded, online Hadamard on every quantized layer"
        )
        return make_report(job.model, notes=notes, calibration_passes=passes, **done)


@hookimpl
def register_quantizers(register):
    """Register QuaRot."""
    register(QuaRot)
