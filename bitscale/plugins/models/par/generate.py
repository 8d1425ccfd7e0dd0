"""PAR's sampler (official ``autoregressive/models/generate.py``), KV-cached.

1. Prefill the class token (``[cond; null]`` when ``cfg > 1``) and sample ``z_0``.
2. Sequential phase: ``z_1 .. z_{k-1}`` one at a time (the first token of every region).
3. Parallel phase: feed ``z_{k-1}`` plus the ``k - 1`` stand-in tokens, sample ``z_k .. z_{2k-1}``
   at once; then feed the ``k`` tokens just sampled and sample the next ``k``, until ``N``.

Guidance, temperature and top-k/top-p are LlamaGen's (``uncond + (cond - uncond) * cfg`` on every
sampled position; HF-style filter; multinomial), reused from ``llamagen.generate``. Returns tokens
in PAR's order; ``order.to_raster_order`` gives the grid the tokenizer decodes. Randomness comes
from the ``generator`` passed in (the same draws as the official script's global CPU RNG seeded
alike).
"""

from __future__ import annotations

import torch

from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.llamagen.sampling import filter_logits, guide, sample_logits
from bitscale.plugins.models.par.gpt import PARGPT


@torch.no_grad()
def generate(
    model: PARGPT,
    labels: torch.Tensor,
    cfg: float = 1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    noise: TokenNoise | None = None,
) -> torch.Tensor:
    """``(B, N)`` image tokens in PAR order for class ``labels`` ``(B,)``.

    ``use_cache=False`` recomputes the whole prefix at every step (checks and benchmarks). ``noise``:
    draw the token at PAR-order index ``i`` from the coupled noise of position ``i`` (paired evaluation).
    """
    conf = model.config
    n_tokens, k = conf.block_size, conf.ar_token_num
    guided = cfg > 1.0
    cond = torch.cat([labels, torch.full_like(labels, model.num_classes)]) if guided else labels
    b = labels.shape[0]
    seq = torch.empty(b, 0, dtype=torch.long, device=labels.device)
    t0 = model.cls_token_num

    def pick(logits: torch.Tensor) -> torch.Tensor:
        """Sample every position of ``logits`` ``(2B or B, S, V)``: ``(B, S)``."""
        logits = guide(logits, cfg, guided)
        s = logits.shape[1]
        if noise is not None:
            first = seq.shape[1]
            tempered = logits / max(temperature, 1e-5)
            if top_k > 0 or top_p < 1.0:
                tempered = filter_logits(tempered.reshape(b * s, -1), top_k, top_p).view(b, s, -1)
            return noise.draw(tempered, torch.arange(first, first + s))
        return sample_logits(logits.reshape(b * s, -1), temperature, top_k, top_p, generator).view(b, s)

    def twice(x: torch.Tensor) -> torch.Tensor:
        return x.repeat(2, 1) if guided else x

    def positions(start: int, count: int) -> torch.Tensor:
        return torch.arange(start, start + count, device=labels.device)

    if not use_cache:
        while seq.shape[1] < n_tokens:
            logits = model(twice(seq), cond)
            width = 1 if seq.shape[1] < k else k
            seq = torch.cat([seq, pick(logits[:, seq.shape[1] : seq.shape[1] + width])], dim=1)
        return seq

    model.setup_caches(cond.shape[0], model.seq_len)
    try:
        seq = pick(model.decode_step(positions(0, t0), labels=cond)[:, -1:])
        for i in range(1, k):  # sequential phase: the first token of each region
            logits = model.decode_step(positions(t0 + i - 1, 1), tokens=twice(seq[:, -1:]))
            seq = torch.cat([seq, pick(logits)], dim=1)
        pos = positions(t0 + k - 1, k)  # z_{k-1} and the stand-ins
        logits = model.decode_step(pos, tokens=twice(seq[:, -1:]), stand_ins=True)
        while True:
            seq = torch.cat([seq, pick(logits)], dim=1)
            if seq.shape[1] >= n_tokens:
                break
            pos = pos + k
            logits = model.decode_step(pos, tokens=twice(seq[:, -k:]))
    finally:
        model.clear_caches()
    return seq
