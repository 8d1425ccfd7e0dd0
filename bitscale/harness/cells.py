"""A grid's cells and plan: plain data, hashed with the standard library (no torch, no plugins).

``bitscale.harness.planner`` makes them from an experiment and the loaded plugins; a plan kept in
the metadata cache (``bitscale.harness.plan_cache``) is read back into them without either.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bitscale.harness.errors import ConfigError
from bitscale.hashing import json_digest
from bitscale.precision import Precision, compute_bits, model_bits

# Bump when the evaluation procedure changes meaning. 2: each sample chunk (batch) draws from its own
# stream seeded by (cell seed, chunk index), so a cell can be sampled in shards (bitscale.harness.sampling).
# 3: token models draw every token from coupled Gumbel noise keyed by (seed, sample index, position)
# (bitscale.harness.noise), and quantized cells are scored against their W16A16 twin (paired metrics).
PROTOCOL_VERSION = 3
FULL_PRECISION_METHOD = "fp16"


@dataclass(frozen=True)
class Cell:
    family: str
    size: str
    method: str  # quantizer name, or "fp16" for the W16A16 reference
    loss: str | None
    precision: str  # canonical label
    seed: int
    model_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    quantizer_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    loss_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    num_params: int = 0
    versions: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    evaluation: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    hash: str = ""

    @property
    def label(self) -> str:
        loss = f"+{self.loss}" if self.loss else ""
        return f"{self.family}/{self.size} {self.precision} {self.method}{loss} seed={self.seed}"

    @property
    def model_bits(self) -> int:
        return model_bits(self.num_params, Precision.parse(self.precision))

    @property
    def compute_bits(self) -> int:
        return compute_bits(self.num_params, Precision.parse(self.precision))

    def config(self) -> dict[str, Any]:
        """The resolved configuration that the hash covers (also stored with the run)."""
        return {
            "family": self.family,
            "size": self.size,
            "method": self.method,
            "loss": self.loss,
            "precision": self.precision,
            "seed": self.seed,
            "model_options": self.model_options,
            "quantizer_options": self.quantizer_options,
            "loss_options": self.loss_options,
            "versions": self.versions,
            "evaluation": self.evaluation,
            "protocol_version": PROTOCOL_VERSION,
        }


def cell_hash(config: dict[str, Any]) -> str:
    return json_digest(config, 20)


#: ``versions["weights"]`` of a cell whose model's weights are not trained yet (``weights_id`` is None):
#: such a plan is for listing only; train the weights (``bitscale.zoo.pretrain.plan_trained``) and plan again.
UNTRAINED = "untrained"


@dataclass
class Plan:
    cells: list[Cell]
    skipped: list[tuple[str, str]]  # (cell label, why it was not scheduled)

    @property
    def untrained(self) -> list[Cell]:
        """Cells whose hashes are provisional: their model's weights are still to be trained."""
        return [c for c in self.cells if c.versions.get("weights") == UNTRAINED]


def fp_twin(cell: Cell) -> Cell:
    """The W16A16 cell that ``cell`` is paired with: same model, options, size, seed and evaluation settings,
    no quantizer or loss. (The W16A16 cell a grid plans for that size and seed, hash for hash.)"""
    versions = {k: v for k, v in cell.versions.items() if k not in ("quantizer", "loss")}
    twin = replace(
        cell,
        method=FULL_PRECISION_METHOD,
        loss=None,
        precision=Precision.parse("W16A16").label,
        quantizer_options={},
        loss_options={},
        versions=versions,
        hash="",
    )
    return with_hash(twin)


def with_hash(cell: Cell) -> Cell:
    return replace(cell, hash=cell_hash(cell.config()))


def bitscale_version() -> str:
    import bitscale

    return f"bitscale=={bitscale.__version__}"


def shard_of(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` (1-based) of ``count``: those whose hash is ``index - 1`` modulo ``count``.

    A function of each cell's hash alone, not of the cells still missing when a job starts, so
    ``count`` jobs started at any times (a Slurm job array) cover the grid exactly once.
    """
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {index}/{count}: shards are numbered 1 to {count}")
    return [c for c in cells if int(c.hash, 16) % count == index - 1]


def pending_cells(
    plan: Plan, store: Any, experiment: str = "", retry_failed: bool = False, force: bool = False
) -> list[Cell]:
    """The cells of ``plan`` that ``store`` (a ``ResultStore``) lacks, all of them with ``force``; notes first that
    ``experiment`` includes every cell of the plan (shared cells count for it too)."""
    store.include(experiment, (c.hash for c in plan.cells))
    if force:
        return list(plan.cells)
    done = store.done_hashes(include_failed=not retry_failed)
    return [c for c in plan.cells if c.hash not in done]
