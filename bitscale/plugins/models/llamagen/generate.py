"""Raster-order generation for the LlamaGen GPT: KV-cached, with classifier-free guidance.

Follows the official ``autoregressive/models/generate.py``: the batch is doubled into
``[cond; null]`` when ``cfg > 1``, guided logits are ``uncond + (cond - uncond) * cfg`` at every
step, the sampled token is fed to both halves, then temperature, HF-style top-k / top-p filtering
and multinomial sampling. One deliberate difference: randomness comes from the ``generator``
passed in rather than the global RNG, so a seed gives the same images in any process (the
distribution is the same; the exact images for a seed differ from the official script's).
"""

from __future__ import annotations

import torch

from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.llamagen.gpt import GPT
from bitscale.plugins.models.llamagen.sampling import filter_logits, guide, sample_logits
from bitscale.plugins.models.llamagen.steps import LlamaGenSteps

__all__ = ["filter_logits", "generate", "sample_logits"]


@torch.no_grad()
def generate(
    model: GPT,
    labels: torch.Tensor,
    cfg: float = 1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    noise: TokenNoise | None = None,
) -> torch.Tensor:
    """Generate ``(B, block_size)`` image tokens for class ``labels`` ``(B,)``.

    Guidance is applied only when ``cfg > 1`` (as officially; ``cfg == 1`` is the conditional
    model). ``use_cache=False`` recomputes the whole prefix at every step (for benchmarks and
    checks; same tokens up to float rounding). ``noise``: draw token ``i`` from the coupled noise at
    position ``i`` instead of from ``generator``.
    """
    if use_cache:
        steps = LlamaGenSteps(model, labels, cfg, temperature, top_k, top_p, generator, noise=noise)
        with steps:
            for i in range(steps.num_steps):
                steps.put(i, steps.draw(steps.extract(i)))
        return steps.seq
    n_tokens = model.config.block_size
    guided = cfg > 1.0
    cond = torch.cat([labels, torch.full_like(labels, model.num_classes)]) if guided else labels
    seq = torch.empty(labels.shape[0], n_tokens, dtype=torch.long, device=labels.device)
    for i in range(n_tokens):
        prefix = seq[:, :i].repeat(2, 1) if guided else seq[:, :i]
        logits = model(prefix, cond)
        seq[:, i : i + 1] = sample_logits(
            guide(logits[:, -1], cfg, guided), temperature, top_k, top_p, generator, noise, i
        )
    return seq
