"""Token sampling as in VAR's ``sample_with_top_k_top_p_``: top-k, then nucleus, then multinomial."""

from __future__ import annotations

import torch

from bitscale.harness.noise import TokenNoise


def sample_top_k_top_p(
    logits_BlV: torch.Tensor,
    top_k: int,
    top_p: float,
    generator: torch.Generator | None,
    noise: TokenNoise | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample one index per row of ``logits_BlV`` (``B, l, V``); returns ``(B, l)`` int64.

    ``top_k <= 0`` and ``top_p <= 0`` disable the respective filter (official convention).
    Nucleus filtering drops the low-probability tokens whose *ascending* cumulative mass is at
    most ``1 - top_p``, always keeping the most likely one. Draws come from ``noise`` at token
    ``positions`` when given (coupled sampling: ``bitscale.harness.noise``), else from ``generator``.
    """
    B, l, V = logits_BlV.shape
    logits = logits_BlV.clone()
    if top_k > 0:
        kth = logits.topk(min(top_k, V), dim=-1, largest=True, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False
        logits.masked_fill_(remove.scatter(-1, sorted_idx, remove), -torch.inf)
    if noise is not None:
        return noise.draw(logits, positions)
    probs = logits.softmax(dim=-1).view(-1, V)
    if generator is not None and generator.device != probs.device:
        # torch.multinomial needs the generator on the tensor's device; the harness passes a
        # CPU generator, so GPU models draw on the CPU to stay reproducible across devices.
        probs = probs.to(generator.device)
    idx = torch.multinomial(probs, num_samples=1, replacement=True, generator=generator)
    return idx.view(B, l).to(logits_BlV.device)
