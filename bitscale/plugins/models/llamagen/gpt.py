"""LlamaGen's class-conditional Llama-style GPT (``autoregressive/models/gpt.py``), reimplemented.

Parameter names and shapes are the official ones, so released ``c2i_*.pt`` files load strictly:
``cls_embedding.embedding_table``, ``tok_embeddings``, ``layers.i.attention.{wqkv,wo}``,
``layers.i.feed_forward.{w1,w2,w3}``, ``layers.i.{attention,ffn}_norm``, ``norm``, ``output``.
No biases anywhere; RMSNorm in float32; SwiGLU FFN; 2D RoPE with zeroed class-token rows.

Differences from the official module, none of which changes a number:
- label dropout is not done inside the module (the training loop replaces dropped labels with the
  null class), so a module left in train mode by a quantizer stays deterministic;
- the KV cache is a plain attribute, never a buffer, so it is not in ``state_dict()``, and decoding
  attends over the filled part of the cache only instead of masking the whole static cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bitscale.plugins.models.llamagen.rope import apply_rope, rope_2d_table


def find_multiple(n: int, k: int) -> int:
    """Smallest multiple of ``k`` that is ``>= n``."""
    return n if n % k == 0 else n + k - (n % k)


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of one GPT (the official ``ModelArgs`` fields that matter for class-conditional)."""

    dim: int
    n_layer: int
    n_head: int
    vocab_size: int = 16384
    num_classes: int = 1000
    block_size: int = 256  # image tokens: (image_size // downsample) ** 2
    cls_token_num: int = 1
    multiple_of: int = 256  # FFN hidden rounding; configurable so tiny widths do not round up 4x
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    class_dropout_prob: float = 0.1  # > 0 adds the null-class row used by classifier-free guidance
    token_dropout_p: float = 0.1
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    initializer_range: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def grid(self) -> int:
        """Side of the square token grid."""
        g = round(self.block_size**0.5)
        if g * g != self.block_size:
            raise ValueError(f"block_size {self.block_size} is not a square token grid")
        return g

    @property
    def ffn_hidden(self) -> int:
        """``find_multiple(int(2 * 4 * dim / 3), multiple_of)``, as in the official FeedForward."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return find_multiple(hidden, self.multiple_of)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The released class-conditional configurations (official ``GPT_B``/``GPT_L``/``GPT_XL``).
RELEASED_GPT: dict[str, dict[str, int]] = {
    "gpt-b": {"dim": 768, "n_layer": 12, "n_head": 12},
    "gpt-l": {"dim": 1024, "n_layer": 24, "n_head": 16},
    "gpt-xl": {"dim": 1280, "n_layer": 36, "n_head": 20},
}


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back (as the official one)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        hidden = cfg.ffn_hidden
        self.w1 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class KVCache:
    """Static key/value cache for one attention layer: ``(B, H, max_len, head_dim)`` each.

    A plain object rather than a module so that it never shows up in ``state_dict()``.
    """

    def __init__(
        self, batch: int, max_len: int, n_head: int, head_dim: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        shape = (batch, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    def update(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` ``(B, H, S, D)`` at positions ``pos``; return the keys/values filled so far."""
        self.k[:, :, pos] = k
        self.v[:, :, pos] = v
        end = int(pos[-1]) + 1
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    """Multi-head causal self-attention with a fused ``wqkv`` projection and 2D RoPE."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.dim, self.n_head, self.head_dim = cfg.dim, cfg.n_head, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)
        self.kv_cache: KVCache | None = None

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, pos: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mask`` (bool, ``(S, S_keys)``, True = attend) replaces the causal mask (PAR's group mask)."""
        b, s, _ = x.shape
        q, k, v = self.wqkv(x).split(self.dim, dim=-1)
        q = apply_rope(q.view(b, s, self.n_head, self.head_dim), rope).transpose(1, 2)
        k = apply_rope(k.view(b, s, self.n_head, self.head_dim), rope).transpose(1, 2)
        v = v.view(b, s, self.n_head, self.head_dim).transpose(1, 2)
        dropout = self.attn_dropout_p if self.training else 0.0
        if self.kv_cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=mask is None, attn_mask=mask, dropout_p=dropout)
        else:
            if pos is None:
                raise ValueError("decoding with a KV cache needs the token positions")
            k, v = self.kv_cache.update(pos, k, v)
            if mask is not None:
                mask = mask[:, : k.shape[2]]
            elif s > 1:  # one new token may see every cached one; a multi-token prefill needs the causal mask
                mask = pos[:, None] >= torch.arange(k.shape[2], device=pos.device)[None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(b, s, self.dim)
        return self.resid_dropout(self.wo(out))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attn(norm(x)); out = h + ffn(norm(h))``."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, pos: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, pos, mask)
        return h + self.feed_forward(self.ffn_norm(h))


def _embedding(rows: int, dim: int) -> nn.Embedding:
    # An uninitialised table: GPT.initialize_weights fills it (and skips the fill on meta).
    return nn.Embedding(rows, dim, _weight=torch.empty(rows, dim))


class LabelEmbedder(nn.Module):
    """Class embedding table with ``num_classes + 1`` rows; the last row is the null class."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        self.embedding_table = _embedding(num_classes + int(dropout_prob > 0), dim)
        self.num_classes = num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels).unsqueeze(1)


class GPT(nn.Module):
    """LlamaGen ``Transformer`` for class-conditional generation (``model_type='c2i'``)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.cls_token_num = cfg.cls_token_num
        self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        self.tok_embeddings = _embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Non-persistent: follows .to(device) but is not a checkpoint key (official: plain attribute).
        self.register_buffer("freqs_cis", torch.empty(0), persistent=False)
        self.reset_buffers()
        self.initialize_weights()

    def reset_buffers(self) -> None:
        """(Re)compute the RoPE table on the parameters' device (needed after loading onto meta)."""
        cfg = self.config
        device = self.tok_embeddings.weight.device
        self.freqs_cis = rope_2d_table(cfg.grid, cfg.head_dim, cfg.rope_base, cfg.cls_token_num).to(device)

    def initialize_weights(self) -> None:
        """Official init: N(0, 0.02) for linears and embeddings, zero output head (skipped on meta)."""
        if self.output.weight.is_meta:
            return  # nothing to fill, and normal_ on meta is slow (seconds for GPT-B)
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=std)
        nn.init.zeros_(self.output.weight)

    # ------------------------------------------------------------------ teacher forcing

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, cls_token_num + T, V)`` (float32) for ``tokens`` ``(B, T)`` after the class token.

        Position ``i`` predicts image token ``i``; pass ``x[:, :-1]`` to get ``(B, L, V)`` logits
        for a full sequence ``x`` of ``L`` tokens (the official eval-mode teacher forcing).
        """
        if self.layers[0].attention.kv_cache is not None:
            raise RuntimeError("GPT.forward runs without KV cache; call clear_caches() after decoding")
        h = torch.cat([self.cls_embedding(labels)[:, : self.cls_token_num], self.tok_embeddings(tokens)], dim=1)
        h = self.tok_dropout(h)
        rope = self.freqs_cis[: h.shape[1]].float()
        for layer in self.layers:
            h = layer(h, rope)
        return self.output(self.norm(h)).float()

    # ------------------------------------------------------------------ cached decoding

    def setup_caches(self, batch: int, max_len: int) -> None:
        """Allocate a KV cache per layer for ``batch`` sequences of up to ``max_len`` positions."""
        p = self.tok_embeddings.weight
        for layer in self.layers:
            a = layer.attention
            a.kv_cache = KVCache(batch, max_len, a.n_head, a.head_dim, p.dtype, p.device)

    def clear_caches(self) -> None:
        """Drop the KV caches (teacher-forced ``forward`` refuses to run while they exist)."""
        for layer in self.layers:
            layer.attention.kv_cache = None

    def decode_step(
        self, pos: torch.Tensor, tokens: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One cached step at positions ``pos``: the class token (``labels``) or image ``tokens`` ``(B, S)``.

        Returns float32 logits ``(B, S, V)``.
        """
        if labels is not None:
            h = self.cls_embedding(labels)[:, : self.cls_token_num]
        elif tokens is not None:
            h = self.tok_embeddings(tokens)
        else:
            raise ValueError("decode_step needs labels (prefill) or tokens")
        h = self.tok_dropout(h)
        rope = self.freqs_cis[pos].float()
        for layer in self.layers:
            h = layer(h, rope, pos)
        return self.output(self.norm(h)).float()
