"""GPTVQ: Hessian-aware vector quantization (paper Appendix A.3, Eq. 14); activations, if any, RTN."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from bitscale import Quantizer, QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import ActOptions, act_quantizer, calibrate_static_activations, make_report
from bitscale.plugins.quantizers.gptvq.kernel import codebook_overhead, gptvq_quantize
from bitscale.quant.linear import QuantLinear
from bitscale.quant.sequential import model_bytes, quantize_sequentially

# Codebooks beyond 2^12 centroids make k-means and assignment slow for no gain: use a smaller dim.
_MAX_INDEX_BITS = 12


class GPTVQOptions(ActOptions):
    """GPTVQ options. ``W{b}`` means ``b`` index bits per weight: ``2^(b*dim)`` centroids per codebook.

    Defaults: 2-D vectors, codebooks per 128-column block x (16384 / 128) rows, fp16 entries
    (all counted in the effective bits), 10 k-means iterations, 1% damping.
    """

    dim: int = Field(default=2, ge=1, le=4, description="Vector length (columns quantized together).")
    block_size: int = Field(default=128, gt=0, description="Columns per block (and per codebook group).")
    codebook_weights: int = Field(
        default=16384, gt=0, description="Weights per codebook (sets the rows in a group): the overhead knob."
    )
    damp: float = Field(default=0.01, gt=0, description="Diagonal damping, a fraction of mean(diag(H)).")
    kmeans_iters: int = Field(default=10, ge=0, description="Lloyd iterations of the weighted k-means init.")
    max_codebook_overhead: float = Field(
        default=0.5,
        ge=0,
        description="Per layer, the largest dim <= `dim` whose fp16 codebooks cost at most this many bits per "
        "weight (and with at most 2^12 centroids) is used, else dim 1: small layers cannot afford 2-D codebooks.",
    )
    hessian_memory_fraction: float = Field(default=0.25, gt=0, description="Hessians held at once / model size.")


def pick_dim(rows: int, cols: int, bits: int, opts: GPTVQOptions) -> int:
    """Largest vector length within the codebook-overhead budget (1 if none is)."""
    for d in range(opts.dim, 0, -1):
        if (
            cols % d == 0
            and bits * d <= _MAX_INDEX_BITS
            and codebook_overhead(rows, cols, bits, d, opts.block_size, opts.codebook_weights)
            <= opts.max_codebook_overhead
        ):
            return d
    return 1


class GPTVQ(Quantizer[GPTVQOptions]):
    """GPTVQ: GPTQ with vector codebooks; effective bits include the fp16 codebooks."""

    name = "gptvq"
    # The weight precision is an index width, not a number format: only integer widths apply.
    weight_kinds = frozenset({"int"})
    needs_weight_quant = True
    activation_kinds = frozenset({"int", "fp"})
    description = "GPTVQ (Hessian-weighted vector quantization, k-means codebooks per group)"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        gen = job.generator
        bits = job.precision.w_bits
        codebooks = 0
        dims: dict[int, int] = {}

        def layer_fn(name: str, lin: nn.Linear, h: Tensor) -> nn.Module:
            nonlocal codebooks
            d = pick_dim(lin.out_features, lin.in_features, bits, opts)
            res = gptvq_quantize(
                lin.weight, h, bits, d, opts.block_size, opts.codebook_weights, opts.damp, opts.kmeans_iters, gen
            )
            codebooks += res.num_codebooks
            dims[res.dim] = dims.get(res.dim, 0) + 1
            q = QuantLinear.from_linear(
                lin, weight=res.weight, act_quantizer=act_quantizer(job.precision, opts), storage_bits=res.storage_bits
            )
            q.weight_label = f"vq{res.dim}d:{res.codebook_size}c"
            return q

        passes = quantize_sequentially(
            job.model, job.calibration, layer_fn, int(opts.hessian_memory_fraction * model_bytes(job.model))
        )
        calibrate_static_activations(job.model, job.calibration)
        used = ", ".join(f"{n} layer(s) {d}-D ({2 ** (bits * d)} centroids)" for d, n in sorted(dims.items()))
        notes = f"VQ: {used}; {codebooks} fp16 codebooks"
        return make_report(job.model, notes=notes, codebooks=codebooks, calibration_passes=passes)


@hookimpl
def register_quantizers(register):
    """Register GPTVQ."""
    register(GPTVQ)
