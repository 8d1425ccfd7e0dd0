"""Fig. 2: how a quantized model's error changes through the two phases of each generation step.

The quantized model and its full-precision twin generate from the same labels and equally seeded
generators (same initial noise, same uniform draws for token sampling). At every step we compare
the **features** (the network's output: logits, predicted noise) and the **reconstruction**
(codebook embeddings of the drawn tokens; the sampler's next latent), as per-sample relative
L2 errors ``||q - fp|| / ||fp||``.

Two modes: **teacher-forced** (the quantized model advances from the FP model's reconstruction,
so each step's error is that step's own) and **free-running** (each model advances from its own
reconstruction: the error accumulated so far). Both are reported.
"""

from __future__ import annotations

from typing import Any

import torch

from bitscale.analysis.stats import mean_ci, relative_error
from bitscale.harness.contracts import GenerativeModel


@torch.no_grad()
def step_errors(
    fp: GenerativeModel, quantized: GenerativeModel, labels: torch.Tensor, seed: int, teacher_forced: bool
) -> dict[str, Any]:
    """Per step: relative error of the features and of the reconstruction (mean and 95% CI over samples)."""
    steps: list[dict[str, Any]] = []
    with (
        fp.generation_phases(labels, torch.Generator().manual_seed(seed)) as gf,
        quantized.generation_phases(labels, torch.Generator().manual_seed(seed)) as gq,
    ):
        for s in range(gf.num_steps):
            ff, fq = gf.extract(s), gq.extract(s)
            rf, rq = gf.reconstruct(s, ff), gq.reconstruct(s, fq)
            steps.append(
                {
                    "step": s,
                    "label": gf.step_label(s),
                    "extraction": mean_ci(relative_error(fq, ff)),
                    "reconstruction": mean_ci(relative_error(rq, rf)),
                }
            )
            gf.advance(s, rf)
            gq.advance(s, rf if teacher_forced else rq)
        # Teacher-forced, the quantized model ends on the FP model's reconstructions: no final error to report.
        final = None if teacher_forced else mean_ci(relative_error(gq.output(), gf.output()))
        space = gf.space
    return {"steps": steps, "final_output": final, "space": space}


def analyze_errors(fp: GenerativeModel, quantized: GenerativeModel, labels: torch.Tensor, seed: int) -> dict[str, Any]:
    """Both modes, and a summary: step-averaged errors and how much reconstruction shrinks them."""
    out: dict[str, Any] = {}
    for mode, forced in (("teacher_forced", True), ("free_running", False)):
        res = step_errors(fp, quantized, labels, seed, forced)
        ext = sum(s["extraction"]["mean"] for s in res["steps"]) / len(res["steps"])
        rec = sum(s["reconstruction"]["mean"] for s in res["steps"]) / len(res["steps"])
        res["summary"] = {
            "mean_extraction": ext,
            "mean_reconstruction": rec,
            "reconstruction_over_extraction": rec / ext if ext > 0 else None,
        }
        out[mode] = res
    return out
