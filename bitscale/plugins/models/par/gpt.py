"""PAR's class-conditional GPT (YuqingWang1029/PAR ``autoregressive/models/gpt.py``): LlamaGen's GPT
generating the tokens of several image regions at once.

The token grid is cut into ``k = ar_token_num`` regions (``sqrt(k) x sqrt(k)``, 2x2 for the 4x
models, 4x4 for 16x), and the sequence visits the in-region positions in raster order, each
time all ``k`` regions in raster order (``order.py``). Generation is sequential for the first
``k`` tokens (one per region, so the regions agree on a global layout), then produces ``k``
tokens (the same position in every region) per step. The model sequence is

    [class, z_0 .. z_{k-1}, s_1 .. s_{k-1}, z_k, z_{k+1}, ...]

with ``k - 1`` learned ``spe_tok_embeddings`` tokens ``s`` that stand in for the first parallel
group's missing inputs, a 2D RoPE table reordered the same way (zero rows for the class and
``s`` tokens), and a *group* mask: causal, except that the ``k`` positions of a parallel step see
each other. Output ``p`` predicts ``z_p``.

Everything else is LlamaGen's (this module subclasses bitscale's ``llamagen.gpt.GPT``: same
blocks, RMSNorm, SwiGLU, RoPE, init, KV cache), so names and shapes are LlamaGen's plus
``spe_tok_embeddings.special_embeddings.weight`` ``(k - 1, dim)``, and the released
``PAR-*.pt`` files load strictly. Not state: the RoPE table and the group mask (officially plain
attributes too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bitscale.plugins.models.llamagen.gpt import GPT, GPTConfig
from bitscale.plugins.models.par.order import region_order


@dataclass(frozen=True)
class PARConfig(GPTConfig):
    """LlamaGen's ``ModelArgs`` plus PAR's ``ar_token_num`` (regions, ``k``) and ``spe_token_num`` (``k - 1``)."""

    ar_token_num: int = 4
    spe_token_num: int = 3

    def __post_init__(self) -> None:
        side = round(self.ar_token_num**0.5)
        if side * side != self.ar_token_num or self.grid % side:
            raise ValueError(
                f"PAR needs a square number of regions dividing the {self.grid}x{self.grid} grid, "
                f"got ar_token_num={self.ar_token_num}"
            )
        if self.spe_token_num != self.ar_token_num - 1:
            raise ValueError("PAR's spe_token_num is ar_token_num - 1 (the first parallel group's stand-ins)")


class SpecialTokenEmbedding(nn.Module):
    """The ``k - 1`` learned stand-in tokens of the first parallel step."""

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.special_embeddings = nn.Embedding(n, dim, _weight=torch.empty(n, dim))

    def forward(self) -> torch.Tensor:
        return self.special_embeddings.weight


def par_rope_table(cfg: PARConfig) -> torch.Tensor:
    """LlamaGen's 2D RoPE rows in PAR's sequence layout: zeros for the class and stand-in tokens."""
    from bitscale.plugins.models.llamagen.rope import rope_2d_table

    grid = rope_2d_table(cfg.grid, cfg.head_dim, cfg.rope_base, cls_token_num=0)[
        region_order(cfg.grid, cfg.ar_token_num)
    ]
    zeros = grid.new_zeros
    k = cfg.ar_token_num
    return torch.cat(
        [zeros(cfg.cls_token_num, *grid.shape[1:]), grid[:k], zeros(cfg.spe_token_num, *grid.shape[1:]), grid[k:]]
    )


def group_mask(length: int, k: int) -> torch.Tensor:
    """``(length, length)`` bool mask: causal, column 0 always visible, and each parallel group of ``k``
    positions (starting at ``k``) sees the whole group (official ``group_mask``)."""
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    mask[:, 0] = True
    for start in range(k, length, k):
        mask[start : start + k, : start + k] = True
    return mask


class PARGPT(GPT):
    """PAR ``Transformer`` for class-conditional generation. Tokens are in PAR order (``order.py``)."""

    def __init__(self, cfg: PARConfig) -> None:
        super().__init__(cfg)
        self.spe_tok_embeddings = SpecialTokenEmbedding(cfg.spe_token_num, cfg.dim)
        if not self.output.weight.is_meta:
            nn.init.normal_(self.spe_tok_embeddings.special_embeddings.weight, 0.0, cfg.initializer_range)

    def reset_buffers(self) -> None:
        cfg = self.config
        device = self.tok_embeddings.weight.device
        self.freqs_cis = par_rope_table(cfg).to(device)
        self.register_buffer(
            "group_mask", group_mask(self.freqs_cis.shape[0], cfg.ar_token_num).to(device), persistent=False
        )

    @property
    def seq_len(self) -> int:
        """Length of the model sequence for a whole image: class + image tokens + stand-ins."""
        return self.freqs_cis.shape[0]

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T', V)`` (float32) for PAR-ordered ``tokens`` ``(B, T)`` after the class token.

        Output ``i`` predicts PAR-ordered token ``i``; for ``x[:, :-1]`` of a full sequence ``x``
        that is ``(B, N, V)`` (the official training slice). Shorter inputs give the outputs their
        positions define (the class token and at most ``k`` tokens: just those).
        """
        if self.layers[0].attention.kv_cache is not None:
            raise RuntimeError("PARGPT.forward runs without KV cache; call clear_caches() after decoding")
        cfg = self.config
        k = cfg.ar_token_num
        emb = self.tok_embeddings(tokens)
        parts = [self.cls_embedding(labels)[:, : self.cls_token_num], emb[:, :k]]
        if tokens.shape[1] >= k:
            parts += [self.spe_tok_embeddings().unsqueeze(0).expand(len(tokens), -1, -1), emb[:, k:]]
        h = self.tok_dropout(torch.cat(parts, dim=1))
        n = h.shape[1]
        rope = self.freqs_cis[:n].float()
        mask = self.group_mask[:n, :n]
        for layer in self.layers:
            h = layer(h, rope, mask=mask)
        logits = self.output(self.norm(h)).float()
        return logits[:, self.cls_token_num - 1 : self.cls_token_num - 1 + cfg.block_size]

    def decode_step(
        self,
        pos: torch.Tensor,
        tokens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        stand_ins: bool = False,
    ) -> torch.Tensor:
        """One cached step at sequence positions ``pos``: the class token (``labels``), image ``tokens``
        ``(B, S)``, or (``stand_ins``) one token followed by the ``k - 1`` stand-ins (the first
        parallel step). Returns float32 logits ``(B, S, V)``."""
        if labels is not None:
            h = self.cls_embedding(labels)[:, : self.cls_token_num]
        elif tokens is not None:
            h = self.tok_embeddings(tokens)
            if stand_ins:
                h = torch.cat([h, self.spe_tok_embeddings().unsqueeze(0).expand(len(h), -1, -1)], dim=1)
        else:
            raise ValueError("decode_step needs labels (prefill) or tokens")
        h = self.tok_dropout(h)
        rope = self.freqs_cis[pos].float()
        mask = self.group_mask[pos]
        for layer in self.layers:
            h = layer(h, rope, pos, mask)
        return self.output(self.norm(h)).float()
