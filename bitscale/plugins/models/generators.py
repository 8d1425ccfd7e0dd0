"""Random draws from the harness's generator, whichever device it or the model lives on."""

from __future__ import annotations

import torch


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` if it lives on ``device``'s type, else a generator there seeded from it."""
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def random_indices(high: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` integers in ``[0, high)`` drawn with ``generator`` (on any device), returned on CPU."""
    return torch.randint(0, high, (count,), generator=generator, device=generator.device).cpu()
