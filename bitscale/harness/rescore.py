"""Score kept samples again, under the cell's own protocol or another one, without regenerating them.

A run recorded with ``--keep-samples`` points at its images (``runs.samples``). ``rescore_runs``
reads them back (checking the content hash), and scores them against a reference set with a
feature extractor: by default the run's own, which reproduces the stored FID exactly; or another
(``extractor``: any torch-fidelity extractor, e.g. ``inception-v3-compat`` instead of the digits
classifier), which gives the same samples' score under a new protocol.

``block_spread`` answers "how precise is an n-sample FID?" from kept samples: it cuts each run's
images into disjoint blocks of n (contiguous, so each block keeps the balanced labels when n is a
multiple of the class count) and reports, per cell without its seed, the spread of the block
FIDs. Block 0 of a seed holds the same images an n-sample cell of that seed draws, so with 3
seeds of 4n samples the figure rests on 12 replicates instead of 3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from bitscale.harness.errors import BitscaleError
from bitscale.harness.store import ResultStore
from bitscale.harness.store.schema import Run


@dataclass
class Rescored:
    cell_hash: str
    label: str
    stored: dict[str, float]  # the metrics recorded when the cell ran
    metrics: dict[str, float]  # the metrics of the kept samples under ``protocol``
    protocol: dict[str, Any]
    fingerprint: str


def _label(run: Run) -> str:
    loss = f"+{run.loss}" if run.loss else ""
    return f"{run.family}/{run.size} {run.precision} {run.method}{loss} seed={run.seed}"


def kept_runs(store: ResultStore, cells: list[str] | None = None, experiment: str | None = None) -> list[Run]:
    """``ok`` runs with kept samples, optionally only those whose hash starts with one of ``cells``."""
    q = sa.select(Run).where(Run.status == "ok", Run.samples.is_not(None)).order_by(Run.id)
    if experiment:  # its own cells and those it shares with other experiments (W16A16)
        q = q.where(Run.cell_hash.in_(store.experiment_hashes(experiment)))
    with store.session() as s:
        runs = list(s.scalars(q.options(sa.orm.selectinload(Run.metrics))))
    if cells:
        runs = [r for r in runs if any(r.cell_hash.startswith(c) for c in cells)]
    return runs


def _reference(dataset: str, extractor: str | None):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from bitscale.harness.evaluation.references import reference_for

    ref = reference_for(dataset)
    if extractor is None or extractor == ref.feature_extractor:
        return ref
    if extractor not in FEATURE_EXTRACTORS_REGISTRY:
        raise BitscaleError(
            f"--extractor {extractor}: torch-fidelity has no such feature extractor; choose from "
            f"{', '.join(sorted(FEATURE_EXTRACTORS_REGISTRY))}"
        )
    kwargs: tuple[tuple[str, str], ...] = ()
    if extractor == "inception-v3-compat":
        weights = os.environ.get("BITSCALE_INCEPTION_WEIGHTS")
        if not weights:
            raise BitscaleError(
                "--extractor inception-v3-compat: set BITSCALE_INCEPTION_WEIGHTS to a local copy of "
                "its weights (pt_inception-2015-12-05-6726825d.pth); bitscale never downloads them"
            )
        kwargs = (("feature_extractor_weights_path", weights),)
    # Another extractor, another reference: its statistics are cached under their own name.
    return replace(ref, feature_extractor=extractor, extractor_kwargs=kwargs)


def _run_reference(run: Run, own: dict[str, Any], extractor: str | None):
    ref = _reference(own["dataset"], extractor)
    if extractor is None and ref.reference_hash != own["reference"]:
        raise BitscaleError(
            f"run {run.cell_hash}: was scored against reference {own['reference']}, but this machine's is "
            f"{ref.reference_hash} (another feature extractor: shipped vs trained-here weights?); set "
            "BITSCALE_ZOO_WEIGHTS as the run had it, or pass --extractor to score under another protocol"
        )
    return ref


def _kept_samples(store: ResultStore, cells: list[str] | None, experiment: str | None, extractor: str | None):
    """(run, its stored protocol, the reference to score against, its kept images, their labels) per run."""
    from bitscale.harness.samples import read_samples

    runs = kept_runs(store, cells, experiment)
    if not runs:
        raise BitscaleError(
            f"store {store.url}: no finished run with kept samples matches; run the grid with "
            "`bitscale run --keep-samples DIR` first"
        )
    protocols = store.protocols()
    for run in runs:
        own = protocols.get(run.protocol_fingerprint or "")
        if own is None:
            raise BitscaleError(f"run {run.cell_hash}: its protocol {run.protocol_fingerprint} is not in the store")
        ref = _run_reference(run, own, extractor)
        yield run, own, ref, *read_samples(run.samples)


def rescore_runs(
    store: ResultStore, *, cells: list[str] | None = None, experiment: str | None = None, extractor: str | None = None
) -> list[Rescored]:
    """Score the kept samples of the selected runs; BitscaleError when none has any."""
    from bitscale.harness.evaluation.fid import protocol_fingerprint, score

    out = []
    for run, own, ref, images, _ in _kept_samples(store, cells, experiment, extractor):
        metrics = score(images, ref, seed=own["seed"])
        protocol = {
            **own,
            "reference": ref.reference_hash,
            "feature_extractor": ref.feature_extractor,
            "num_samples": len(images),
        }
        stored = {m.name: m.value for m in run.metrics}
        out.append(Rescored(run.cell_hash, _label(run), stored, metrics, protocol, protocol_fingerprint(protocol)))
    return out


@dataclass
class BlockSpread:
    label: str  # the cell without its seed: family/size precision method
    block_size: int
    seeds: list[int]
    fids: list[float]  # one per block, seed by seed

    @property
    def mean(self) -> float:
        return sum(self.fids) / len(self.fids)

    @property
    def relative_sd(self) -> float:
        """Sample standard deviation of the block FIDs over their mean (nan with one block)."""
        n = len(self.fids)
        if n < 2:
            return float("nan")
        m = self.mean
        return (sum((f - m) ** 2 for f in self.fids) / (n - 1)) ** 0.5 / m


def block_spread(
    store: ResultStore,
    block_size: int,
    *,
    cells: list[str] | None = None,
    experiment: str | None = None,
    extractor: str | None = None,
) -> list[BlockSpread]:
    """FIDs of disjoint ``block_size``-sample blocks of each kept run, grouped by cell without seed."""
    from bitscale.harness.evaluation.fid import score

    if block_size < 2:
        raise BitscaleError(f"--blocks {block_size}: a block needs at least 2 samples")
    groups: dict[str, BlockSpread] = {}
    for run, own, ref, images, labels in _kept_samples(store, cells, experiment, extractor):
        if len(images) < block_size:
            raise BitscaleError(f"run {_label(run)} kept {len(images)} samples, fewer than --blocks {block_size}")
        # Samples cycle through the classes (balanced labels), so a block is balanced exactly when its
        # size is a multiple of the class count; an unbalanced block would measure the labels, not the model.
        classes = len(set(labels.tolist()))
        if block_size % classes:
            raise BitscaleError(
                f"--blocks {block_size}: run {_label(run)} draws {classes} classes in turn; use a multiple of "
                f"{classes} so that every block holds each class equally often"
            )
        label = _label(run).rsplit(" seed=", 1)[0]
        g = groups.setdefault(label, BlockSpread(label, block_size, [], []))
        g.seeds.append(run.seed)
        for start in range(0, len(images) - block_size + 1, block_size):
            g.fids.append(score(images[start : start + block_size], ref, seed=own["seed"])["fid"])
    return list(groups.values())


__all__ = ["BlockSpread", "Rescored", "block_spread", "kept_runs", "rescore_runs"]
