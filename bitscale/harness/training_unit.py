"""``TrainingUnit``: one artifact of a ``TrainableFamily`` that one process trains (a size or the shared stage).

It lives in the core because it is part of the ``TrainableFamily`` contract; the tiny zoo's
scheduling of units over processes is ``bitscale.zoo.parallel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingUnit:
    """One artifact to train. Pickled into a worker process, so ``family`` must be importable there."""

    artifact: str  # cache name, e.g. "llamagen-tiny/vq"; names the unit in messages
    family: Any  # the TrainableFamily
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
        if self.family.plans_training and not cache.saved_here(self.artifact):
            manifest["loaded"] = True
        return manifest
