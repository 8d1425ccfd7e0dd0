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
import torch.nn.functional as F

from bitscale.harness.noise import TokenNoise
from bitscale.plugins.models.llamagen.gpt import GPT


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


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  generator: torch.Generator | None = None, noise: TokenNoise | None = None,
                  position: int = 0) -> torch.Tensor:
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


def _guide(logits: torch.Tensor, cfg: float, guided: bool) -> torch.Tensor:
    if not guided:
        return logits
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + (cond - uncond) * cfg


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
    n_tokens = model.config.block_size
    guided = cfg > 1.0
    cond = torch.cat([labels, torch.full_like(labels, model.num_classes)]) if guided else labels
    seq = torch.empty(labels.shape[0], n_tokens, dtype=torch.long, device=labels.device)
    t0 = model.cls_token_num

    def pick(logits: torch.Tensor, i: int) -> torch.Tensor:
        return sample_logits(_guide(logits[:, -1], cfg, guided), temperature, top_k, top_p, generator, noise, i)

    if not use_cache:
        for i in range(n_tokens):
            prefix = seq[:, :i].repeat(2, 1) if guided else seq[:, :i]
            seq[:, i : i + 1] = pick(model(prefix, cond), i)
        return seq

    model.setup_caches(cond.shape[0], t0 + n_tokens)
    try:
        seq[:, :1] = pick(model.decode_step(torch.arange(t0, device=labels.device), labels=cond), 0)
        for i in range(1, n_tokens):
            prev = seq[:, i - 1 : i]
            pos = torch.tensor([t0 + i - 1], device=labels.device)
            logits = model.decode_step(pos, tokens=prev.repeat(2, 1) if guided else prev)
            seq[:, i : i + 1] = pick(logits, i)
    finally:
        model.clear_caches()
    return seq
