"""Where VAR models draw real training images from for calibration.

The tiny zoo uses the digits train split (ships offline). Released ImageNet models read a local
folder in ``torchvision.datasets.ImageFolder`` layout (one sub-folder per class, sorted names =
class index, as the ImageNet train set's synset folders), preprocessed like upstream's
``build_dataset``: resize the short side to ``1.125 * size`` (Lanczos), center-crop, map to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch

from bitscale.data import digits
from bitscale.harness.errors import BitscaleError
from bitscale.plugins.models.generators import random_indices
from bitscale.plugins.models.var.model import ImageSource


def digits_source(split: str = "train") -> ImageSource:
    """Random images (with replacement across calls) from the digits ``split``."""
    data = digits.load(split)

    def draw(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = random_indices(len(data), n, generator)
        return data.images[idx], data.labels[idx]

    return draw


def image_folder_source(root: str | Path, size: int) -> ImageSource:
    """Random images from an ImageFolder-style directory, preprocessed to ``size`` x ``size``."""
    from torchvision import datasets, transforms
    from torchvision.transforms import InterpolationMode

    root = Path(root)
    if not root.is_dir():
        raise BitscaleError(f"calibration image folder not found: {root}")
    tf = transforms.Compose(
        [
            transforms.Resize(round(1.125 * size), interpolation=InterpolationMode.LANCZOS),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Lambda(lambda x: x * 2 - 1),
        ]
    )
    try:
        data = datasets.ImageFolder(str(root), transform=tf)
    except (FileNotFoundError, RuntimeError) as e:
        raise BitscaleError(f"cannot use {root} as a calibration image folder: {e}") from e

    def draw(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = random_indices(len(data), n, generator).tolist()
        items = [data[i] for i in idx]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    return draw
