"""RAR's raster-order sampler (official ``RAR.generate``), KV-cached.

At step ``s`` of ``N`` the guidance scale follows the power-cosine schedule of the official code
(after MDT): ``w(s) = (g - 1) * (1 - cos(pi * (s / N) ** pow)) / 2 + 1``, so guidance grows from
1 to ``g`` (``pow = 0`` gives a constant ``g``). With ``g != 0`` the batch is always doubled into
``[cond; null]`` and the guided logits are ``uncond + (cond - uncond) * w``; then ``/ temperature``,
softmax and multinomial. The schedule is computed in float32 tensors exactly as officially, so the
guided logits match bit for bit.

The official sampler has no top-k / top-p; bitscale's ``top_k``/``top_p`` options (LlamaGen's
HF-style filter) default to off (0 / 1.0), which leaves the official maths unchanged. Randomness
comes from the ``generator`` passed in rather than the global RNG (the same draws for the same
seed as the official script's ``torch.manual_seed`` on the CPU).
"""

from __future__ import annotations

import math

import torch

from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.llamagen.sampling import filter_logits
from bitscale.plugins.models.rar.gpt import RAR


def guidance_scale(step: int, steps: int, scale: float, power: float) -> torch.Tensor:
    """The official power-cosine guidance schedule at ``step`` of ``steps`` (a float32 ``(1,)`` tensor)."""
    pow_t = torch.ones(1) * power
    ramp = (1 - torch.cos(((step / steps) ** pow_t) * math.pi)) * 1 / 2
    return (scale - 1) * ramp + 1


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None,
    noise: TokenNoise | None = None,
    position: int = 0,
) -> torch.Tensor:
    """Official order: ``logits / temperature``, softmax, multinomial (optional top-k/top-p before softmax).

    With ``noise`` (paired evaluation) the token is drawn from the coupled Gumbel noise of ``position``
    instead: the same distribution (``bitscale.harness.noise``)."""
    logits = logits / temperature
    if top_k > 0 or top_p < 1.0:
        logits = filter_logits(logits, top_k, top_p)
    if noise is not None:
        return noise.draw(logits[:, None, :], torch.tensor([position]))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


@torch.no_grad()
def generate(
    model: RAR,
    labels: torch.Tensor,
    guidance: float = 1.0,
    guidance_pow: float = 0.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    noise: TokenNoise | None = None,
) -> torch.Tensor:
    """``(B, N)`` image tokens in raster order for class ``labels`` ``(B,)``.

    ``use_cache=False`` recomputes the whole prefix at every step (benchmarks and checks). ``noise``:
    draw token ``s`` from the coupled noise at position ``s`` instead of from ``generator``.
    """
    n_tokens = model.config.image_seq_len
    guided = guidance != 0
    cond = torch.cat([labels, torch.full_like(labels, model.num_classes)]) if guided else labels
    seq = torch.empty(labels.shape[0], 0, dtype=torch.long, device=labels.device)

    def pick(logits: torch.Tensor, step: int) -> torch.Tensor:
        if guided:
            c, u = logits.chunk(2, dim=0)
            w = guidance_scale(step, n_tokens, guidance, guidance_pow).to(logits.device)
            logits = u + (c - u) * w
        return sample_next(logits, temperature, top_k, top_p, generator, noise, step)

    try:
        for step in range(n_tokens):
            if not use_cache:
                logits = model(seq.repeat(2, 1) if guided else seq, cond)[:, -1]
            elif step == 0:
                logits = model.prefill(cond)
            else:
                last = seq[:, -1:]
                logits = model.decode_step(last.repeat(2, 1) if guided else last, cond, step)
            seq = torch.cat([seq, pick(logits, step)], dim=1)
    finally:
        model.clear_caches()
    return seq
