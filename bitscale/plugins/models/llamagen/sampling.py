"""LlamaGen's token sampling (official ``autoregressive/models/generate.py``): guidance, temperature, HF-style
top-k / top-p filtering, multinomial draws from the generator passed in."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bitscale.harness.noise import TokenNoise


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to ``-inf`` (returns a new tensor).

    Nucleus: keep the smallest set of most likely tokens whose probability reaches ``top_p``
    (the first token past the threshold is kept, so at least one token always survives).
    """
    logits = logits.clone()
    if top_k > 0:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # shift right: keep the token that crosses top_p
        remove[..., 0] = False
        logits[remove.scatter(-1, order, remove)] = float("-inf")
    return logits


def sample_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    noise: TokenNoise | None = None,
    position: int = 0,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` ``(B, V)``; returns ``(B, 1)`` int64.

    With ``noise`` the token is ``argmax(filtered logits / temperature + g)`` for the coupled Gumbel noise
    ``g`` of each sample at ``position`` (same distribution; see ``bitscale.harness.noise``)."""
    logits = logits / max(temperature, 1e-5)
    if top_k > 0 or top_p < 1.0:
        logits = filter_logits(logits, top_k, top_p)
    if noise is not None:
        return noise.draw(logits[:, None, :], torch.tensor([position]))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def guide(logits: torch.Tensor, cfg: float, guided: bool) -> torch.Tensor:
    if not guided:
        return logits
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + (cond - uncond) * cfg
