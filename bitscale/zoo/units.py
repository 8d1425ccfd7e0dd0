"""What training a set of tiny-zoo sizes takes, as units that separate processes can train.

A unit is one artifact trained by one call: a size (``family.train(size, options, force)``) or a
family's shared stage (``family.train_shared(options)``: the tokenizer or autoencoder every size
is trained on), which the sizes wait for. A family says which of its artifacts are missing or
stale through ``training_units(sizes, options, force)``; a trainable family that implements only
``train`` gets one unit per size, all independent, each of which reuses its cache if fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bitscale.harness.contracts import TrainableFamily
from bitscale.harness.training_unit import TrainingUnit

__all__ = ["TrainingUnit", "staged_units", "units_for"]


def units_for(family: TrainableFamily, sizes: Sequence[str], options: Any, force: bool = False) -> list[TrainingUnit]:
    """The units that train ``sizes`` of ``family``: its own ``training_units`` when it lists them."""
    units = family.training_units(list(sizes), options, force)
    if units is not None:
        return units
    return [
        TrainingUnit(f"{family.name}/{s}", family, options, s, force, cost=_num_params(family, s, options))
        for s in sizes
    ]


def staged_units(
    family: Any, options: Any, shared: str | None, sizes: dict[str, str], force: bool, cost: Callable[[str], float]
) -> list[TrainingUnit]:
    """The shared stage ``shared`` (None when it is fresh), then ``sizes`` (size -> artifact) after it."""
    units = [TrainingUnit(shared, family, options)] if shared else []
    return units + [
        TrainingUnit(artifact, family, options, size, force, after=shared, cost=cost(size))
        for size, artifact in sizes.items()
    ]


def _num_params(family: Any, size: str, options: Any) -> float:
    try:
        return float(family.num_params(size, options))
    except Exception:  # noqa: BLE001 - only an ordering hint; a family that cannot count still trains
        return 0.0
