"""Building blocks of the VAR transformer (official ``models/basic_var.py``): attention, FFN, AdaLN.

Every ``nn.Linear`` is *called as a module* (never through ``F.linear(x, m.weight)``), so that
quantizers that swap ``quant_layers()`` or hook them see every use. Upstream adds the q/v biases
inside ``F.linear(x, mat_qkv.weight, cat(q_bias, zero_k_bias, v_bias))``; here ``mat_qkv`` (which
has no bias) is called and the same bias vector is added afterwards: the same math.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (per sample), identity at inference."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class FFN(nn.Module):
    """``fc2(GELU_tanh(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head attention with L2-normalised q/k and a learned per-head scale (``attn_l2_norm``).

    While ``caching`` is on, keys and values of every call are appended to a cache, so each new
    scale attends to all earlier scales and itself without recomputing them (VAR inference).
    """

    def __init__(self, dim: int, num_heads: int, attn_l2_norm: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        assert dim % num_heads == 0, f"embed_dim {dim} is not divisible by num_heads {num_heads}"
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_l2_norm = attn_l2_norm
        if attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.caching = False
        self.cached_k: torch.Tensor | None = None
        self.cached_v: torch.Tensor | None = None

    def kv_caching(self, enable: bool) -> None:
        """Turn the KV cache on (empty) or off (dropped)."""
        self.caching, self.cached_k, self.cached_v = enable, None, None

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        B, L, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = (self.mat_qkv(x) + bias).view(B, L, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, head_dim)
        if self.attn_l2_norm:
            scale_mul = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            q = F.normalize(q, dim=-1) * scale_mul
            k = F.normalize(k, dim=-1)
        if self.caching:
            if self.cached_k is not None:
                k = torch.cat((self.cached_k, k), dim=2)
                v = torch.cat((self.cached_v, v), dim=2)
            self.cached_k, self.cached_v = k, v
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class SharedAdaLin(nn.Linear):
    """One conditioning projection shared by all blocks (``shared_aln=True``, the d36 model)."""

    def forward(self, cond_BD: torch.Tensor) -> torch.Tensor:
        C = self.weight.shape[0] // 6
        return super().forward(cond_BD).view(-1, 1, 6, C)


class AdaLNSelfAttn(nn.Module):
    """Transformer block modulated by the class condition.

    ``ada_lin(cond)`` gives six vectors in the order gamma1, gamma2, scale1, scale2, shift1,
    shift2 (not DiT's order): ``x += attn(LN(x)(1+scale1)+shift1) * gamma1`` and likewise for the FFN.
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        shared_aln: bool = False,
        attn_l2_norm: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.C = dim
        self.drop_path = drop_path
        self.attn = SelfAttention(dim, num_heads, attn_l2_norm=attn_l2_norm)
        self.ffn = FFN(dim, round(dim * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.shared_aln = shared_aln
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, dim) / dim**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))

    def forward(self, x: torch.Tensor, cond_BD: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        if self.shared_aln:  # cond_BD is already shared_ada_lin(cond), shaped (B, 1, 6, C)
            mods = (self.ada_gss + cond_BD).unbind(2)
        else:
            mods = self.ada_lin(cond_BD).view(-1, 1, 6, self.C).unbind(2)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = mods
        h = self.attn(self.ln_wo_grad(x) * (scale1 + 1) + shift1, attn_bias=attn_bias)
        x = x + drop_path(h * gamma1, self.drop_path, self.training)
        h = self.ffn(self.ln_wo_grad(x) * (scale2 + 1) + shift2)
        return x + drop_path(h * gamma2, self.drop_path, self.training)


class AdaLNBeforeHead(nn.Module):
    """Final AdaLN: ``LN(x) * (1 + scale) + shift`` with ``ada_lin(cond)`` split as scale, shift."""

    def __init__(self, dim: int, cond_dim: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.C = dim
        self.ln_wo_grad = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return self.ln_wo_grad(x) * (scale + 1) + shift
