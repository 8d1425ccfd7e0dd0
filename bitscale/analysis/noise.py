"""Fig. 3: tolerance of the reconstruction to Gaussian noise in the features, at a controlled SNR.

Noise at SNR ``s`` dB added to features ``f`` of one sample has power ``mean(f^2) / 10^(s/10)``.
One noise pattern per step (drawn from ``seed``) is scaled to every SNR of a sweep (common random
numbers), so the curve moves only because the intensity does. The final representation
(``GenerationPhases.output``) is compared with the noise-free generation from the same seed (same
initial noise, same token draws): loss = relative squared error ``||y - y0||^2 / ||y0||^2``, whose
response to small noise is linear in the noise intensity (noise/signal power, ``10^(-s/10)``) for a
smooth, continuous reconstruction, and piecewise constant for a discrete one.

- ``noise_tolerance`` (Fig. 3a): noise at one step, swept SNR; Pearson's r between intensity and loss.
- ``accumulation`` (Fig. 3b): equal-SNR noise in the first 10% of steps only; the reconstruction's
  relative error at every step after.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from bitscale.analysis.stats import mean_ci, pearson, pearson_bootstrap, relative_error
from bitscale.harness.contracts import GenerativeModel

#: Seed offset of the injected noise, so it never shares draws with the generation itself.
NOISE_SEED_OFFSET = 7919


def add_noise(features: torch.Tensor, snr_db: float, pattern: torch.Tensor) -> torch.Tensor:
    """``features`` plus ``pattern`` (standard normal) scaled to ``snr_db`` per sample."""
    power = features.double().pow(2).flatten(1).mean(dim=1)
    scale = (power / 10 ** (snr_db / 10)).sqrt().view(-1, *([1] * (features.dim() - 1)))
    return features + (pattern.double() * scale).to(features.dtype)


@torch.no_grad()
def generate(
    model: GenerativeModel, labels: torch.Tensor, seed: int, noise: dict[int, float] | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(reconstruction per step, final output) of one generation, with noise at ``{step: snr_db}``."""
    recs = []
    with model.generation_phases(labels, torch.Generator().manual_seed(seed)) as g:
        for s in range(g.num_steps):
            f = g.extract(s)
            if noise and s in noise:
                gen = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET + s)
                f = add_noise(f, noise[s], torch.randn(f.shape, generator=gen).to(f.device))
            r = g.reconstruct(s, f)
            recs.append(r)
            g.advance(s, r)
        return recs, g.output()


def num_steps(model: GenerativeModel, labels: torch.Tensor, seed: int) -> tuple[int, list[str]]:
    with model.generation_phases(labels[:1], torch.Generator().manual_seed(seed)) as g:
        return g.num_steps, [g.step_label(s) for s in range(g.num_steps)]


def noise_tolerance(
    model: GenerativeModel, labels: torch.Tensor, seed: int, snrs: list[float], step: int
) -> dict[str, Any]:
    """Fig. 3a: loss of the final output vs noise intensity at ``step``, and Pearson's r between them."""
    _, clean = generate(model, labels, seed)
    per_sample, points = [], []
    for snr in snrs:
        _, out = generate(model, labels, seed, {step: snr})
        loss = relative_error(out, clean).pow(2).cpu().numpy()
        per_sample.append(loss)
        points.append(
            {"snr_db": snr, "intensity": 10 ** (-snr / 10), **{f"loss_{k}": v for k, v in mean_ci(loss).items()}}
        )
    intensity = np.array([p["intensity"] for p in points])
    losses = np.array([p["loss_mean"] for p in points])
    ci = pearson_bootstrap(intensity, np.stack(per_sample), seed)
    # Plateaus: neighbouring SNRs whose mean loss is exactly equal (a discrete space absorbs the change).
    flat = float(np.mean(losses[1:] == losses[:-1])) if len(losses) > 1 else 0.0
    return {
        "step": step,
        "points": points,
        "pearson_r": pearson(intensity, losses),
        "pearson_r_ci": list(ci) if ci else None,
        "pearson_r_vs_db": pearson(-np.array(snrs, dtype=float), losses),
        "flat_fraction": flat,
    }


def noisy_steps(total: int, fraction: float) -> int:
    """How many leading steps get noise: ``ceil(fraction * total)``, at least one."""
    return max(1, math.ceil(fraction * total - 1e-9))


def accumulation(
    model: GenerativeModel, labels: torch.Tensor, seed: int, snr: float, fraction: float = 0.1
) -> dict[str, Any]:
    """Fig. 3b: equal-SNR noise in the first ``fraction`` of steps; the reconstruction's error at every step."""
    clean, clean_out = generate(model, labels, seed)
    k = noisy_steps(len(clean), fraction)
    noisy, out = generate(model, labels, seed, {s: snr for s in range(k)})
    steps = [{"step": s, "noisy": s < k, **mean_ci(relative_error(n, c))} for s, (n, c) in enumerate(zip(noisy, clean))]
    return {
        "snr_db": snr,
        "fraction": fraction,
        "noisy_steps": k,
        "steps": steps,
        "final_output": mean_ci(relative_error(out, clean_out)),
    }
