"""SVDQuant (Li et al., 2025): smooth, then absorb the hardest part of the weight in a 16-bit low-rank branch.

1. SmoothQuant-style migration ``X / s``, ``W diag(s)`` (only with quantized activations; folded
   into a producing norm when exact, else kept in the layer), so activation outliers move into
   the weights.
2. Per layer, the smoothed weight ``W'`` is split into a rank-``r`` branch ``U V`` (truncated SVD,
   kept in 16 bits, fed the unquantized smoothed input) and a residual ``W' - U V`` rounded with
   RTN; with ``iters > 1`` the branch is refitted to what rounding left and the best split kept.
3. Activations are quantized on the main (residual) path only.

The branch costs ``16 r (in + out)`` bits per layer, counted in the effective bits. The headline
setting is W4A4 with int4 weights in groups of 64 (the default ``group_size``).
"""

from __future__ import annotations

import torch
from pydantic import Field

from bitscale import QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import (
    QuantOptions,
    ScalarQuantizer,
    act_quantizer,
    calibrate_static_activations,
    make_report,
    quantized_weight_spec,
)
from bitscale.quant.formats import fake_quant_weight, weight_storage_bits
from bitscale.quant.linear import QuantLinear
from bitscale.quant.lowrank import LowRankLinear, lowrank_bits, lowrank_quantize
from bitscale.quant.smoothing import smooth_model
from bitscale.quant.swap import set_submodule


class SVDQuantOptions(QuantOptions):
    """SVDQuant options; weights default to groups of 64 (the paper's W4A4 setting)."""

    group_size: int | None = Field(default=64, gt=0, description="Weight group size (SVDQuant: 64).")
    rank: int = Field(default=32, ge=0, description="Rank of the 16-bit branch (SVDQuant's default 32).")
    max_branch_bits: float = Field(
        default=0.5,
        ge=0,
        description="Cap the rank so the 16-bit branch costs at most this many bits per weight (rank 32 costs "
        "0.25 bits on a 4096x4096 layer but 12 bits on a 64x64 tiny one).",
    )
    iters: int = Field(
        default=1, ge=1, description="Alternating refits of the branch to the rounding error (1 = plain SVD)."
    )
    alpha: float = Field(
        default=0.5, ge=0, le=1, description="Smoothing migration strength (with quantized activations)."
    )
    fold_into_norm: bool = Field(default=True, description="Fold the smoothing into a producing norm when exact.")
    fp_check_rtol: float = Field(default=1e-3, gt=0, description="Allowed relative FP change after smoothing.")


def branch_rank_cap(shape: tuple[int, int], max_bits: float) -> int:
    """Largest rank whose 16-bit branch costs at most ``max_bits`` per weight of a ``shape`` layer."""
    out, inp = shape
    return min(out, inp, int(max_bits * out * inp // lowrank_bits(out, inp, 1)))


class SVDQuant(ScalarQuantizer[SVDQuantOptions]):
    """Smoothing + 16-bit low-rank branch + quantized residual (RTN)."""

    name = "svdquant"
    needs_weight_quant = True
    description = "SVDQuant: smoothing, rank-r 16-bit SVD branch, quantized residual (W4A4 g64)"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        done: dict[str, float] = {}
        if job.precision.activations.kind != "full":
            if not job.calibration:
                raise ValueError("svdquant with quantized activations needs calibration batches for smoothing")
            smoothed = smooth_model(job.model, job.calibration, opts.alpha, opts.fold_into_norm, opts.fp_check_rtol)
            done = {k: float(v) for k, v in smoothed.items()}
        spec = quantized_weight_spec(job.precision.weights, opts)
        ranks, errs = [], []
        with torch.no_grad():
            for name, lin in job.model.quant_layers().items():
                if not isinstance(lin, QuantLinear):
                    lin = QuantLinear.from_linear(lin)
                shape = (lin.out_features, lin.in_features)
                rank = min(opts.rank, branch_rank_cap(shape, opts.max_branch_bits))
                split = lowrank_quantize(lin.weight.detach(), rank, lambda r: fake_quant_weight(r, spec), opts.iters)
                new = LowRankLinear.from_transform(lin, split, weight_storage_bits(shape, spec), str(spec))
                new.act_quantizer = act_quantizer(job.precision, self.options)
                set_submodule(job.model.module, name, new)
                ranks.append(rank)
                errs.append(min(split.errors))
        calibrate_static_activations(job.model, job.calibration)
        notes = (
            f"w={spec} residual, ranks {min(ranks)}-{max(ranks)} (16-bit branch, counted), "
            f"{int(done.get('folded', 0))}/{int(done.get('groups', 0))} smoothing groups folded into norms"
        )
        return make_report(
            job.model, notes=notes, mean_residual_error=sum(errs) / len(errs), max_rank=float(max(ranks)), **done
        )


@hookimpl
def register_quantizers(register):
    """Register SVDQuant."""
    register(SVDQuant)
