"""Manifests of tiny-zoo artifacts: what a model was trained with, and whether a cached one still fits.

A cached artifact is reused only when its manifest records the same config (recipe included),
training steps, seed and digits data as asked for now; anything else means retraining.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from bitscale.data import digits
from bitscale.harness.artifacts import cache
from bitscale.zoo.training import TrainResult


def jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from a manifest (tuples become lists, at any depth)."""
    return json.loads(json.dumps(config))


def manifest_for(config: dict[str, Any], result: TrainResult, seed: int) -> dict[str, Any]:
    """The manifest of a trained artifact: {config, data_hash, seed, steps, initial/final loss, seconds}."""
    return {
        "config": jsonable(config),
        "data_hash": digits.data_hash(cache.cache_dir()),
        "seed": seed,
        "steps": result.steps,
        "initial_loss": result.initial_loss,
        "final_loss": result.final_loss,
        "seconds": round(result.seconds, 2),
        "cpu_seconds": round(result.cpu_seconds, 2),
    }


def manifest_matches(manifest: dict[str, Any] | None, config: dict[str, Any], seed: int, steps: int) -> bool:
    """True if ``manifest`` was trained with ``config`` for ``steps`` on the current digits data with ``seed``."""
    return (
        manifest is not None
        and manifest.get("config") == jsonable(config)
        and manifest.get("steps") == steps
        and manifest.get("data_hash") == digits.data_hash(cache.cache_dir())
        and manifest.get("seed") == seed
    )


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """Short SHA-256 of a state dict's names and bytes: ties a generator to the tokenizer/VAE it learned on."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
