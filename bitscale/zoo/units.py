"""What training a set of tiny-zoo sizes takes, as units that separate processes can train.

A unit is one artifact trained by one call: a size (``family.train(size, options, force)``) or a
family's shared stage (``family.train_shared(options)``: the tokenizer or autoencoder every size
is trained on), which the sizes wait for. A family says which of its artifacts are missing or
stale through ``training_units(sizes, options, force)``; a trainable family that implements only
``train`` gets one unit per size, all independent, each of which reuses its cache if fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingUnit:
    """One artifact to train. Pickled into a worker process, so ``family`` must be importable there."""

    artifact: str  # cache name, e.g. "llamagen-tiny/vq"; names the unit in messages
    family: Any  # the ModelFamily
    options: Any  # the family's Options
    size: str | None = None  # None: the family's shared stage
    force: bool = False  # retrain a size even when cached
    after: str | None = None  # artifact of the unit that must finish first (the shared stage)
    cost: float = 0.0  # relative CPU cost (e.g. parameters x steps): longer chains start first

    def train(self) -> dict[str, Any]:
        """Train (or reuse) the artifact; return its manifest, with ``loaded: True`` when another process
        trained it meanwhile (this one waited on its lock and found it done)."""
        from bitscale.harness.artifacts import cache

        if self.size is None:
            manifest = dict(self.family.train_shared(self.options))
        else:
            manifest = dict(self.family.train(self.size, self.options, force=self.force))
        # Families that list their own units name them by their cache artifacts; others may cache elsewhere.
        if hasattr(self.family, "training_units") and not cache.saved_here(self.artifact):
            manifest["loaded"] = True
        return manifest


def units_for(family: Any, sizes: Sequence[str], options: Any, force: bool = False) -> list[TrainingUnit]:
    """The units that train ``sizes`` of ``family``: its own ``training_units`` when it has one."""
    plan = getattr(family, "training_units", None)
    if plan is not None:
        return plan(list(sizes), options, force)
    return [TrainingUnit(f"{family.name}/{s}", family, options, s, force, cost=_num_params(family, s, options))
            for s in sizes]


def staged_units(family: Any, options: Any, shared: str | None, sizes: dict[str, str], force: bool,
                 cost: Callable[[str], float]) -> list[TrainingUnit]:
    """The shared stage ``shared`` (None when it is fresh), then ``sizes`` (size -> artifact) after it."""
    units = [TrainingUnit(shared, family, options)] if shared else []
    return units + [TrainingUnit(artifact, family, options, size, force, after=shared, cost=cost(size))
                    for size, artifact in sizes.items()]


def _num_params(family: Any, size: str, options: Any) -> float:
    try:
        return float(family.num_params(size, options))
    except Exception:  # noqa: BLE001 - only an ordering hint; a family that cannot count still trains
        return 0.0
