"""PTQ4ARVG (official code: BienLuky/PTQ4ARVG): GPS + STWQ + DGC, each switchable for ablations.

1. **DGC** (``dgc``): the calibration set is re-chosen from a pool of ``dgc_pool`` x as many
   samples plus their unconditional (null-class) copies: the samples whose last-layer first-token
   feature has the largest Mahalanobis distance to its set (``dgc.py``).
2. **Shift + GPS** (``gps``): per input group, a per-channel shift making activations symmetric
   (``delta = (max + min)/2``, compensated in the bias) and a smoothing factor from the
   gain-projected formula taken around SmoothQuant's (alpha 0.5) point (``gps.py``);
   with ``gps: false`` SmoothQuant's factor alone, the official code's fallback. With STWQ on,
   the positions it quantizes on their own (sink tokens) stay out of these statistics. Both are folded into the producer of the input
   where the model allows: an AdaLN projection (VAR ``ada_lin``, DiT ``adaLN_modulation``:
   ``(LN(x)(1+scale)+shift - delta)/s`` is again ``LN(x)(1+scale')+shift'``), or an affine norm
   (smoothing into its weight, the shift into its bias if it has one); otherwise they stay in
   the layer (``TransformLinear``, 16 bits per channel each, counted).
3. **STWQ** (``stwq``): static activation scales per token group (``stwq.py``):
   VAR one group per scale level, raster models (LlamaGen, and any other) the first two tokens
   and the rest; layers without a token axis (AdaLN inputs) get one static scale. With
   ``stwq: false`` activations use the common ``act_granularity`` (static per tensor by default).
Weights: RTN (per output channel by default).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from bitscale import GenerativeModel, Quantizer, QuantJob, QuantReport, hookimpl
from bitscale.harness.quant_recipe import (
    QuantOptions,
    act_quantizer,
    activation_spec,
    calibrate_static_activations,
    make_report,
    weight_spec,
)
from bitscale.plugins.quantizers.ptq4arvg.dgc import (
    batch_size,
    dgc_select,
    labels_of,
    merge_samples,
    split_batches,
    with_labels,
)
from bitscale.plugins.quantizers.ptq4arvg.gps import (
    ChannelStats,
    collect_channel_stats,
    gps_factors,
    smoothquant_factors,
)
from bitscale.plugins.quantizers.ptq4arvg.stwq import RASTER_HEAD, TokenGroupActQuantizer, raster_groups, var_groups
from bitscale.quant.capture import InputGroup, input_hooks, trace_input_groups
from bitscale.quant.formats import QuantSpec
from bitscale.quant.swap import set_submodule
from bitscale.quant.transform import TransformLinear

#: AdaLN layouts whose modulation can absorb a reader's shift and smoothing:
#: (projection attribute, [(reader path, scale chunk, shift chunk)], chunks).
MODULATION_LAYOUTS = (
    ("ada_lin", (("attn.mat_qkv", 2, 4), ("ffn.fc1", 3, 5)), 6),  # VAR: gamma1 gamma2 scale1 scale2 shift1 shift2
    ("adaLN_modulation", (("attn.qkv", 1, 0), ("mlp.fc1", 4, 3)), 6),  # DiT: shift scale gate (msa, mlp)
)


class PTQ4ARVGOptions(QuantOptions):
    """PTQ4ARVG options: the three parts can be switched off one by one (ablation)."""

    act_granularity: Literal["token", "tensor"] = Field(
        default="tensor",
        description="Activations when stwq is off (and for inputs without a token axis): "
        "'tensor' static per tensor, 'token' dynamic per token.",
    )
    gps: bool = Field(default=True, description="Gain-projected scaling (off: SmoothQuant alpha=0.5 factors).")
    stwq: bool = Field(default=True, description="Static token-wise activation quantization.")
    dgc: bool = Field(default=True, description="Distribution-guided choice of the calibration samples.")
    dgc_pool: int = Field(
        default=2, ge=1, description="Candidate pool, in multiples of the calibration set (conditional)."
    )
    fold: bool = Field(default=True, description="Fold shift/scale into AdaLN projections and norms where exact.")
    fp_check_rtol: float = Field(default=1e-3, gt=0, description="Allowed relative FP change by shift and scaling.")


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


# --------------------------------------------------------------------------- DGC


def dgc_calibration(
    model: GenerativeModel, calibration: list[Any], pool: int, generator: torch.Generator | None
) -> tuple[list[Any], dict[str, float]]:
    """The DGC-selected calibration set (as many samples as ``calibration``), and what was chosen."""
    layers = model.quant_layers()
    last_name = list(layers)[-1]
    extra = model.calibration_batches(len(calibration) * (pool - 1), generator) if pool > 1 else []
    cond = list(calibration) + list(extra)
    null = getattr(model, "num_classes", None)
    uncond = (
        [with_labels(b, torch.full_like(labels_of(b), null)) for b in cond]
        if (null is not None and labels_of(cond[0]) is not None)
        else []
    )
    calls: list[Tensor] = []

    def hook(_n: str, x: Tensor) -> None:
        f = x.detach()[:, 0] if x.dim() >= 3 else x.detach()
        calls.append(f.reshape(f.shape[0], -1).float().cpu())

    sets: dict[str, Tensor] = {}
    with input_hooks({last_name: layers[last_name]}, hook), torch.no_grad():
        for name, batches in (("cond", cond), ("uncond", uncond)):
            feats = []
            for b in batches:
                calls.clear()
                model.forward_batch(b)
                # one feature row per sample: the first call of the batch. A last layer that sees
                # other rows (MAR's diffusion head: tokens x diffusion copies) has no per-sample
                # feature, and DGC then keeps the calibration it was given.
                if not calls or calls[0].shape[0] != batch_size(b):
                    return list(calibration), {"dgc_skipped": 1.0}
                feats.append(calls[0])
            if feats:
                sets[name] = torch.cat(feats)
    n = sum(batch_size(b) for b in calibration)
    picked = dgc_select(sets, n)
    samples = {"cond": split_batches(cond), "uncond": split_batches(uncond)}
    chosen = [samples[s][i] for s, i in picked]
    uncond_share = sum(s == "uncond" for s, _ in picked) / max(1, len(picked))
    return merge_samples(chosen, batch_size(calibration[0])), {
        "dgc_pool": float(len(samples["cond"]) + len(samples["uncond"])),
        "dgc_uncond_share": uncond_share,
    }


# --------------------------------------------------------------------------- folding


def modulation_readers(root: nn.Module) -> dict[str, tuple[str, int, int, int]]:
    """Reader layer name -> (AdaLN projection Linear name, scale chunk, shift chunk, chunks)."""
    out = {}
    for prefix, mod in root.named_modules():
        for attr, readers, chunks in MODULATION_LAYOUTS:
            proj = getattr(mod, attr, None)
            if not isinstance(proj, nn.Sequential) or not isinstance(proj[-1], nn.Linear):
                continue
            for path, sc, sh in readers:
                try:
                    reader = mod.get_submodule(path)
                except AttributeError:
                    continue
                if isinstance(reader, nn.Linear) and proj[-1].out_features == chunks * reader.in_features:
                    p = f"{prefix}." if prefix else ""
                    out[f"{p}{path}"] = (f"{p}{attr}.{len(proj) - 1}", sc, sh, chunks)
    return out


@torch.no_grad()
def fold_into_modulation(proj: nn.Linear, scale_chunk: int, shift_chunk: int, s: Tensor, delta: Tensor) -> None:
    """``(LN(x)(1+a)+b - delta)/s = LN(x)(1+a')+b'`` with ``a' = (1+a)/s - 1``, ``b' = (b - delta)/s``."""
    c = s.numel()
    w, b = proj.weight, proj.bias
    s, delta = s.to(w.device, w.dtype), delta.to(w.device, w.dtype)
    sc, sh = slice(scale_chunk * c, (scale_chunk + 1) * c), slice(shift_chunk * c, (shift_chunk + 1) * c)
    w[sc] /= s.unsqueeze(1)
    w[sh] /= s.unsqueeze(1)
    b[sc] = (1 + b[sc]) / s - 1
    b[sh] = (b[sh] - delta) / s


@torch.no_grad()
def fold_into_norm(norm: nn.Module, s: Tensor, delta: Tensor) -> bool:
    """Smoothing into an affine norm's weight (and the shift into its bias); True if the shift folded too."""
    w = norm.weight
    bias = getattr(norm, "bias", None)
    w.div_(s.to(w.device, w.dtype))
    if bias is None:
        return False
    bias.sub_(delta.to(bias.device, bias.dtype)).div_(s.to(bias.device, bias.dtype))
    return True


def shift_and_scale(
    model: GenerativeModel,
    calibration: list[Any],
    wspec: QuantSpec,
    aspec: QuantSpec,
    gps: bool = True,
    fold: bool = True,
    skip_tokens: int = 0,
) -> tuple[list[InputGroup], dict[str, ChannelStats], dict[str, int], float]:
    """Install unquantized ``TransformLinear``s with PTQ4ARVG's shift and GPS (or SmoothQuant) scaling.

    ``skip_tokens``: leading positions left out of the statistics (the sink tokens STWQ quantizes
    on their own). Returns the input groups, their channel statistics, how many were folded
    where, and the relative change of the full-precision output on the first calibration batch.
    """
    layers = model.quant_layers()
    groups = trace_input_groups(model, layers, calibration[0])
    leaders = {g.members[0]: layers[g.members[0]] for g in groups}
    weights = {g.members[0]: [layers[n].weight for n in g.members] for g in groups}
    # GPS expands the loss around the SmoothQuant point (the official code's order): pre-scale by it
    init = (lambda name, st: smoothquant_factors(st, weights[name])) if gps else None
    stats = collect_channel_stats(model, leaders, calibration, aspec if gps else None, init, skip_tokens)
    with torch.no_grad():
        reference = model.forward_batch(calibration[0]).float()
    modulation = modulation_readers(model.module) if fold else {}
    folded = {"modulation": 0, "norm": 0}
    with torch.no_grad():
        for g in groups:
            st = stats[g.members[0]]
            ws = [layers[n].weight for n in g.members]
            s = gps_factors(st, ws, wspec) if gps else smoothquant_factors(st, ws)
            delta = st.shift
            online = {"shift", "smooth"}
            if len(g.members) == 1 and g.members[0] in modulation:
                proj, sc, sh, _ = modulation[g.members[0]]
                fold_into_modulation(model.module.get_submodule(proj), sc, sh, s, delta)
                online, folded["modulation"] = set(), folded["modulation"] + 1
            elif fold and g.producer:
                shift_folded = fold_into_norm(model.module.get_submodule(g.producer), s, delta)
                online = set() if shift_folded else {"shift"}
                folded["norm"] += 1
            for n in g.members:
                set_submodule(
                    model.module, n, TransformLinear.from_linear(layers[n], shift=delta, smooth=s, online=online)
                )
        change = _rel(model.forward_batch(calibration[0]).float(), reference)
    return groups, stats, folded, change


# --------------------------------------------------------------------------- quantizer


class PTQ4ARVG(Quantizer[PTQ4ARVGOptions]):
    """PTQ4ARVG: shift + gain-projected scaling, static token-wise activations, distribution-guided calibration."""

    name = "ptq4arvg"
    weight_kinds = activation_kinds = frozenset({"int"})
    needs_activation_quant = True
    needs_weight_quant = True
    needs_calibration = True
    description = "PTQ4ARVG: GPS smoothing + shift, STWQ static token-group activations, DGC calibration"

    def apply(self, job: QuantJob) -> QuantReport:
        opts = self.options
        calibration = job.calibration  # replaced by DGC's selection below
        extra: dict[str, float] = {}
        if opts.dgc:
            calibration, extra = dgc_calibration(job.model, calibration, opts.dgc_pool, job.generator)
        wspec = weight_spec(job.precision.weights, opts)
        aspec = activation_spec(job.precision.activations, opts.model_copy(update={"act_granularity": "token"}))
        token_layout = "var" if hasattr(job.model.module, "patch_nums") else "raster"
        # the positions STWQ gives a group of their own (VAR's first token, the raster layout's
        # first two) stay out of the smoothing statistics, as in the official code
        skip = (1 if token_layout == "var" else RASTER_HEAD) if opts.stwq else 0
        groups, stats, folded, change = shift_and_scale(job.model, calibration, wspec, aspec, opts.gps, opts.fold, skip)
        if change > opts.fp_check_rtol:
            raise RuntimeError(
                f"ptq4arvg: shift and scaling changed the full-precision output by {change:.2e} "
                f"(> {opts.fp_check_rtol}); a folded producer feeds more than its layers: set fold: false"
            )
        member_of = {n: g.members[0] for g in groups for n in g.members}
        for name, q in job.model.quant_layers().items():
            assert isinstance(q, TransformLinear)
            q.quantize_weight_(wspec)
            st = stats[member_of[name]]
            if opts.stwq and st.tokens_axis:
                tg = (
                    var_groups(tuple(job.model.module.patch_nums))
                    if token_layout == "var"
                    else raster_groups(st.length)
                )
                if tg[-1][1] != st.length:
                    tg = raster_groups(st.length)
                q.act_quantizer = TokenGroupActQuantizer(aspec, tg)
            else:
                q.act_quantizer = act_quantizer(job.precision, opts)
        calibrate_static_activations(job.model, calibration)
        parts = [p for p in ("gps", "stwq", "dgc") if getattr(opts, p)] or ["none"]
        notes = (
            f"w={wspec}, parts: {'+'.join(parts)}; {folded['modulation']} groups folded into AdaLN, "
            f"{folded['norm']} into norms, {len(groups) - sum(folded.values())} kept in-layer; "
            f"token groups: {token_layout if opts.stwq else 'off'}"
        )
        return make_report(
            job.model,
            notes=notes,
            fp_change=change,
            groups=float(len(groups)),
            folded_modulation=float(folded["modulation"]),
            folded_norm=float(folded["norm"]),
            **extra,
        )


@hookimpl
def register_quantizers(register):
    """Register PTQ4ARVG."""
    register(PTQ4ARVG)
