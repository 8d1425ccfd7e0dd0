"""PAR's token order: raster tokens to the region-interleaved sequence it models, and back.

With ``k`` regions (a ``sqrt(k) x sqrt(k)`` split of the ``g x g`` grid), the official training
script reshapes the grid as ``(region row, in-region row, region col, in-region col)`` and
permutes it to ``(in-region row, in-region col, region row, region col)``: the sequence visits
the in-region positions in raster order, each time every region in raster order. Its sampling
script applies the inverse before decoding.
"""

from __future__ import annotations

from functools import cache

import torch


@cache
def region_order(grid: int, regions: int) -> torch.Tensor:
    """``perm`` with ``par_tokens = raster_tokens[..., perm]`` (int64, length ``grid**2``)."""
    side = round(regions**0.5)
    if side * side != regions or grid % side:
        raise ValueError(f"{regions} regions do not tile a {grid}x{grid} token grid")
    cell = grid // side
    return torch.arange(grid * grid).reshape(side, cell, side, cell).permute(1, 3, 0, 2).flatten()


def to_par_order(tokens: torch.Tensor, grid: int, regions: int) -> torch.Tensor:
    """Raster-order ``(B, grid**2)`` tokens in PAR's order."""
    return tokens[:, region_order(grid, regions).to(tokens.device)]


def to_raster_order(tokens: torch.Tensor, grid: int, regions: int) -> torch.Tensor:
    """PAR-order ``(B, grid**2)`` tokens back in raster order."""
    return tokens[:, region_order(grid, regions).argsort().to(tokens.device)]
