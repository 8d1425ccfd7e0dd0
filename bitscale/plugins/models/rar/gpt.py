"""RAR's class-conditional GPT (bytedance/1d-tokenizer ``modeling/rar.py``), reimplemented.

A ViT-style decoder over one sequence ``[cls, condition, image tokens...]`` with:

- one embedding table for everything (``embeddings``): image codes ``[0, V)``, the mask token
  ``V``, the classes ``V + 1 + c`` and the null class ``V + 1 + C``, so bitscale's label
  ``num_classes`` (the null class of every family) maps to the official null id;
- learned absolute positions (``pos_embed``) plus **target-aware** positions
  (``target_aware_pos_embed``): the input at sequence position ``2 + k`` also gets the position
  embedding of the token it must predict (``order[k + 1]``), which is what lets RAR train on
  random permutations and sample in raster order;
- adaLN blocks (DiT-style ``shift, scale, gate`` x 2) whose condition is the class embedding plus
  a per-position ``timesteps_embeddings`` row; LayerNorm eps 1e-6, q/k LayerNorm per head,
  biased ``qkv``, timm ``Mlp`` with exact GELU; ``adaln_before_head`` (scale, shift) and a biased
  ``lm_head``.

Parameter names and shapes are the official ones, so ``rar_{b,l,xl,xxl}.bin`` load strictly.
Differences from the official module, none of which changes a number:

- no dropout layers (they have no parameters; the released configs sample in eval mode, and the
  tiny zoo trains without dropout, so a module a quantizer leaves in train mode stays
  deterministic);
- the permutation (``orders``) is an argument, never drawn inside the module (the training loop
  draws it from its seeded generator); raster order when omitted, as at sampling time;
- the KV cache is a plain attribute (never in ``state_dict()``), and a cached step embeds only the
  new position instead of re-embedding the whole prefix and keeping its last row.

``pos_extra``/``timestep_extra`` (officially 1024 and 100 spare rows beyond ``image_seq_len``)
are configurable so that the tiny zoo does not carry thousands of unused position rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RARConfig:
    """Architecture of one RAR generator (the official ``config.model.generator`` fields)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    image_seq_len: int = 256
    codebook_size: int = 1024
    num_classes: int = 1000
    pos_extra: int = 1024  # spare rows of pos_embed / target_aware_pos_embed (official: 1024)
    timestep_extra: int = 100  # spare rows of timesteps_embeddings (official: 100)
    class_dropout_prob: float = 0.1  # training only (label dropout to the null class)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def vocab_rows(self) -> int:
        """Rows of the shared embedding table: codes, mask token, classes, null class."""
        return self.codebook_size + 1 + self.num_classes + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The released generators (README_RAR.md): hidden size, depth, heads, MLP width.
RELEASED_RAR: dict[str, dict[str, int]] = {
    "rar-b": {"hidden_size": 768, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 3072},
    "rar-l": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
    "rar-xl": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120},
    "rar-xxl": {"hidden_size": 1408, "num_hidden_layers": 40, "num_attention_heads": 16, "intermediate_size": 6144},
}

_EPS = 1e-6


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class KVCache:
    """Keys/values of the positions decoded so far, ``(B, H, S, D)``; grows by concatenation."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


class Attention(nn.Module):
    """Multi-head attention with a biased fused ``qkv``, per-head LayerNorm on q and k, and ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=_EPS)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=_EPS)
        self.proj = nn.Linear(dim, dim)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.kv_cache is not None:
            k, v = self.kv_cache.extend(k, v)
        # A single new position sees every cached one; several positions need the causal mask.
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal and n > 1)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """timm ``Mlp``: ``fc2(gelu(fc1 x))`` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """adaLN block: ``x += gate * attn(modulate(norm1 x)); x += gate * mlp(modulate(norm2 x))``."""

    def __init__(self, cfg: RARConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, eps=_EPS)
        self.attn = Attention(d, cfg.num_attention_heads)
        self.norm2 = nn.LayerNorm(d, eps=_EPS)
        self.mlp = Mlp(d, cfg.intermediate_size)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x: torch.Tensor, c: torch.Tensor, causal: bool = True) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_msa * self.attn(_modulate(self.norm1(x), shift_msa, scale_msa), causal)
        return x + gate_mlp * self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """``adaln_before_head``: affine-free LayerNorm modulated by (scale, shift) -- in that chunk order."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, eps=_EPS, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.adaLN_modulation(c).chunk(2, dim=-1)
        return _modulate(self.norm_final(x), shift, scale)


class RAR(nn.Module):
    """The RAR generator. ``forward(tokens, labels)`` gives the logits that predict each next token."""

    #: The cls and condition tokens in front of the image tokens.
    PREFIX = 2

    def __init__(self, cfg: RARConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_classes = cfg.num_classes
        d, n = cfg.hidden_size, cfg.image_seq_len
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.embeddings = nn.Embedding(cfg.vocab_rows, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, n + cfg.pos_extra, d))
        self.target_aware_pos_embed = nn.Parameter(torch.zeros(1, n + cfg.pos_extra, d))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, n + cfg.timestep_extra, d))
        self.adaln_before_head = FinalLayer(d)
        self.lm_head = nn.Linear(d, cfg.codebook_size, bias=True)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Official init: truncated N(0, 0.02) for linears, embeddings and position tables, zero biases,
        zero adaLN modulation (adaLN-Zero), zero cls token. Skipped on the meta device."""
        if self.lm_head.weight.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.pos_embed, self.target_aware_pos_embed, self.timesteps_embeddings):
            nn.init.trunc_normal_(p, mean=0.0, std=0.02)
        for layer in [*(b.adaLN_modulation[-1] for b in self.blocks), self.adaln_before_head.adaLN_modulation[-1]]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------ embedding

    def condition_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Class labels ``[0, C]`` (``C`` = null) to ids of the shared table (official ``preprocess_condition``)."""
        return labels + self.config.codebook_size + 1

    def _postfix(self, table: torch.Tensor, orders: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Rows ``PREFIX + orders`` of a position table: ``(B, N, D)`` (raster order when ``orders`` is None)."""
        rows = table[0, self.PREFIX : self.PREFIX + self.config.image_seq_len]
        if orders is None:
            return rows.unsqueeze(0).expand(batch, -1, -1)
        return rows[orders]

    def _embed(
        self, tokens: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs ``(B, 2 + t, D)``, per-position adaLN condition ``(B, 2 + t, D)``)."""
        b = tokens.shape[0]
        cond = self.embeddings(self.condition_ids(labels))
        x = torch.cat([self.cls_token.expand(b, -1, -1), cond[:, None], self.embeddings(tokens)], dim=1)
        length = x.shape[1]
        pos = torch.cat(
            [self.pos_embed[:, : self.PREFIX].expand(b, -1, -1), self._postfix(self.pos_embed, orders, b)], dim=1
        )
        x = x + pos[:, :length]
        # The input at position p >= 1 carries the target-aware position of the token it predicts.
        zero = x.new_zeros(b, 1, x.shape[2])
        target = torch.cat([zero, self._postfix(self.target_aware_pos_embed, orders, b), zero], dim=1)
        x = x + target[:, :length]
        c = cond[:, None] + self.timesteps_embeddings[:, :length]
        return x, c

    def _head(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.adaln_before_head(x, c)).float()

    # ------------------------------------------------------------------ teacher forcing

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, 1 + t, V)`` (float32) for ``tokens`` ``(B, t)`` after class ``labels`` ``(B,)``.

        Output ``i`` predicts the ``i``-th token of the sequence; pass ``x[:, :-1]`` for the
        ``(B, N, V)`` logits of a full raster sequence ``x``. With ``orders`` ``(B, N)`` (a
        permutation per row, training), ``tokens`` must already be permuted (``x.gather(1, orders)``)
        and the position embeddings follow the permutation.
        """
        if self.blocks[0].attn.kv_cache is not None:
            raise RuntimeError("RAR.forward runs without KV cache; call clear_caches() after decoding")
        x, c = self._embed(tokens, labels, orders)
        for block in self.blocks:
            x = block(x, c)
        return self._head(x[:, 1:], c[:, 1:])  # the cls position predicts nothing

    # ------------------------------------------------------------------ cached decoding (raster order)

    def setup_caches(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = KVCache()

    def clear_caches(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None

    def prefill(self, labels: torch.Tensor) -> torch.Tensor:
        """Run ``[cls, condition]`` into fresh caches; the logits ``(B, V)`` of the first image token."""
        self.setup_caches()
        x, c = self._embed(labels.new_zeros(labels.shape[0], 0), labels, None)
        for block in self.blocks:
            x = block(x, c)
        return self._head(x[:, -1], c[:, -1])

    def decode_step(self, token: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """Feed image token ``step - 1`` (``(B, 1)``); the logits ``(B, V)`` of token ``step``."""
        p = self.PREFIX + step - 1  # sequence position of the fed token
        x = self.embeddings(token) + self.pos_embed[:, p : p + 1]
        if step < self.config.image_seq_len:
            x = x + self.target_aware_pos_embed[:, p + 1 : p + 2]
        c = self.embeddings(self.condition_ids(labels))[:, None] + self.timesteps_embeddings[:, p : p + 1]
        for block in self.blocks:
            x = block(x, c)
        return self._head(x[:, -1], c[:, -1])
