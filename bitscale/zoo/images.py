"""Sample grids saved beside trained tiny-zoo weights, for a look at what a model draws."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def save_grid_png(images: torch.Tensor, path: str | Path, nrow: int = 10, zoom: int = 4) -> None:
    """Write ``uint8`` images ``(N, 3, H, W)`` as one PNG grid, upscaled ``zoom`` times for viewing."""
    import torchvision  # slow to import; only training writes grids

    grid = torchvision.utils.make_grid(images.float() / 255.0, nrow=nrow, padding=1)
    torchvision.utils.save_image(F.interpolate(grid[None], scale_factor=zoom)[0], str(path))
