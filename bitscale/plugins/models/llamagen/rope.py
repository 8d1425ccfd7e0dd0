"""LlamaGen's 2D rotary position embedding (``precompute_freqs_cis_2d`` / ``apply_rotary_emb``).

Half of each head's rotary pairs encode the row, the other half the column. The rows for the
class (condition) tokens are all zeros, so the class token's queries and keys become zero
vectors: that is what the official model does, and the released weights were trained with it.
"""

from __future__ import annotations

import torch


def rope_2d_table(grid: int, head_dim: int, base: float = 10000.0, cls_token_num: int = 1) -> torch.Tensor:
    """``(cls_token_num + grid**2, head_dim // 2, 2)`` table of (cos, sin); class rows are zero."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
    half = head_dim // 2
    # Always computed on CPU (callers move it): under a meta-device context it must stay real.
    cpu = torch.device("cpu")
    inv_freq = 1.0 / (base ** (torch.arange(0, half, 2, device=cpu)[: half // 2].float() / half))
    angles = torch.outer(torch.arange(grid, device=cpu).float(), inv_freq)  # (grid, head_dim // 4)
    # Row angle in the first quarter pairs, column angle in the second, row-major token order.
    grid_angles = torch.cat([angles[:, None, :].expand(-1, grid, -1), angles[None, :, :].expand(grid, -1, -1)], dim=-1)
    table = torch.stack([grid_angles.cos(), grid_angles.sin()], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(cls_token_num, half, 2, device=cpu), table])


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, S, H, D)`` by ``table`` ``(S, D // 2, 2)``, computed in float32."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    t = table.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
        [
            xs[..., 0] * t[..., 0] - xs[..., 1] * t[..., 1],
            xs[..., 1] * t[..., 0] + xs[..., 0] * t[..., 1],
        ],
        dim=-1,
    )
    return out.flatten(3).type_as(x)
