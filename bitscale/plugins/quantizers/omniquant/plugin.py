"""OmniQuant: learnable weight clipping + learnable equivalent transformation (paper Eq. 9-11)."""

from __future__ import annotations

import torch
from pydantic import Field

from bitscale import Quantizer, QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import (
    INT_AND_FP,
    QuantOptions,
    act_quantizer,
    activation_spec,
    calibrate_static_activations,
    make_report,
    weight_spec,
)
from bitscale.plugins.quantizers.omniquant.kernel import OmniGroup, optimize_group
from bitscale.quant.capture import InputGroup, capture_layer_inputs, trace_input_groups
from bitscale.quant.linear import QuantLinear
from bitscale.quant.sequential import model_bytes
from bitscale.quant.swap import set_submodule


class OmniQuantOptions(QuantOptions):
    """OmniQuant options. Defaults: OmniQuant's learning rates, LET only with quantized activations."""

    steps: int = Field(
        default=100, ge=0, description="Adam steps per layer group (at most; stops when the loss plateaus)."
    )
    lr_lwc: float = Field(default=1e-2, gt=0, description="Learning rate of the clipping logits (LWC).")
    lr_let: float = Field(default=5e-3, gt=0, description="Learning rate of the LET scale (log) and shift.")
    let: bool | None = Field(
        default=None, description="Learnable equivalent transformation; None = on iff activations are quantized."
    )
    alpha: float = Field(default=0.5, ge=0, le=1, description="SmoothQuant alpha used to initialise the LET scale.")
    max_rows: int = Field(default=4096, gt=0, description="Calibration tokens kept per layer group (subsampled).")
    batch_rows: int = Field(default=1024, gt=0, description="Tokens per Adam step.")
    capture_memory_fraction: float = Field(
        default=0.25, gt=0, description="Captured inputs held at once, as a fraction of the model's size."
    )


def _chunks(groups: list[InputGroup], widths: dict[str, int], rows: int, budget: int) -> list[list[InputGroup]]:
    """Consecutive groups whose captured inputs (rows x in x 4 bytes) fit the budget together."""
    out: list[list[InputGroup]] = []
    cur: list[InputGroup] = []
    used = 0
    for g in groups:
        need = rows * widths[g.members[0]] * 4
        if cur and used + need > budget:
            out.append(cur)
            cur, used = [], 0
        cur.append(g)
        used += need
    return out + ([cur] if cur else [])


class OmniQuant(Quantizer[OmniQuantOptions]):
    """OmniQuant, per group of layers sharing an input, against captured inputs."""

    name = "omniquant"
    weight_kinds = activation_kinds = INT_AND_FP
    needs_weight_quant = True
    needs_calibration = True
    description = "OmniQuant (learnable weight clipping + equivalent transformation), per layer group"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        gen = job.generator
        wspec = weight_spec(job.precision.weights, opts)
        aspec = activation_spec(job.precision.activations, opts)
        let = opts.let if opts.let is not None else aspec is not None
        layers = job.model.quant_layers()
        groups = trace_input_groups(job.model, layers, job.calibration[0])
        widths = {n: lin.in_features for n, lin in layers.items()}
        budget = int(opts.capture_memory_fraction * model_bytes(job.model))
        before = after = 0.0
        passes = 0
        for chunk in _chunks(groups, widths, opts.max_rows, budget):
            leaders = {g.members[0]: layers[g.members[0]] for g in chunk}
            inputs = capture_layer_inputs(job.model, leaders, job.calibration, opts.max_rows, gen)
            passes += 1
            for g in chunk:
                x = inputs.pop(g.members[0])
                members = [layers[n] for n in g.members]
                stats = {}
                if let:
                    stats = {"act_absmax": x.abs().amax(0), "act_min": x.amin(0), "act_max": x.amax(0)}
                og = OmniGroup(members, wspec, aspec, let, alpha=opts.alpha, **stats)
                res = optimize_group(og, x, opts.steps, opts.lr_lwc, opts.lr_let, opts.batch_rows, gen)
                before += res.loss_before
                after += res.loss_after
                with torch.no_grad():
                    for i, (n, lin) in enumerate(zip(g.members, members)):
                        q = QuantLinear.from_linear(
                            lin,
                            weight=res.weights[i],
                            weight_spec=wspec,
                            act_quantizer=act_quantizer(job.precision, opts),
                        )
                        q.bias.copy_(res.biases[i].to(q.bias.dtype)) if q.bias is not None else None
                        if res.smooth is not None:
                            q.smooth = res.smooth.to(q.weight.dtype)
                            q.shift = res.shift.to(q.weight.dtype)
                            if q.bias is None:  # a shift needs a bias to compensate in
                                q.bias = torch.nn.Parameter(res.biases[i].to(q.weight.dtype))
                        set_submodule(job.model.module, n, q)
        calibrate_static_activations(job.model, job.calibration)
        notes = f"w={wspec}, LET {'on' if let else 'off'}, {len(groups)} layer groups, {opts.steps} steps each"
        return make_report(
            job.model, notes=notes, recon_loss_init=before, recon_loss_final=after, capture_passes=passes
        )


@hookimpl
def register_quantizers(register):
    """Register OmniQuant."""
    register(OmniQuant)
