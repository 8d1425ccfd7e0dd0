"""Small helpers shared by the LlamaGen and DiT tiny zoos: manifests, freshness, grids, generators.

(They would fit in ``bitscale.zoo`` for every family; they live here until that module owns them.)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bitscale.data import digits


def jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON (tuples become lists), for comparisons with manifests."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def manifest_for(config: dict[str, Any], result: Any, seed: int) -> dict[str, Any]:
    """The manifest of a trained artifact: {config, data_hash, seed, steps, initial/final loss, seconds}."""
    return {
        "config": jsonable(config),
        "data_hash": digits.data_hash(),
        "seed": seed,
        "steps": result.steps,
        "initial_loss": result.initial_loss,
        "final_loss": result.final_loss,
        "seconds": round(result.seconds, 2),
        "cpu_seconds": round(result.cpu_seconds, 2),
    }


def manifest_matches(manifest: dict[str, Any] | None, config: dict[str, Any], seed: int, steps: int) -> bool:
    """True if ``manifest`` was trained with ``config`` for ``steps`` on the current digits data with ``seed``."""
    return (manifest is not None and manifest.get("config") == jsonable(config) and manifest.get("steps") == steps
            and manifest.get("data_hash") == digits.data_hash() and manifest.get("seed") == seed)


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """Short SHA-256 of a state dict's names and bytes: ties a generator to the tokenizer/VAE it learned on."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def sampler_from(options: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` with every sampler option the user set (options that are ``None`` keep the default)."""
    return {k: (getattr(options, k) if getattr(options, k, None) is not None else v) for k, v in defaults.items()}


def save_grid_png(images: torch.Tensor, path: str | Path, nrow: int = 10, zoom: int = 4) -> None:
    """Write ``uint8`` images ``(N, 3, H, W)`` as one PNG grid, upscaled ``zoom`` times for viewing."""
    import torchvision

    grid = torchvision.utils.make_grid(images.float() / 255.0, nrow=nrow, padding=1)
    torchvision.utils.save_image(F.interpolate(grid[None], scale_factor=zoom)[0], str(path))


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` if it lives on ``device``'s type, else a generator there seeded from it."""
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def random_indices(high: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` integers in ``[0, high)`` drawn with ``generator`` (on any device), returned on CPU."""
    return torch.randint(0, high, (count,), generator=generator, device=generator.device).cpu()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous setting afterwards.

    Training pins one thread for two reasons: the thread count changes the order of float
    reductions, so one thread gives the same weights on every machine; and the matrices of the
    tiny zoo are too small to gain from threads, while on a shared machine spinning threads waste
    several times the CPU time (measured: 2.1 s vs 15.4 s of CPU for the same 30 DiT steps).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
