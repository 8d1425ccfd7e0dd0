"""Synthetic result stores for tests, benchmarks and demos of the leaderboard (no model runs).

FID follows a known bit-level power law, ``FID = k * N^(-a) * penalty(precision, method)``
with multiplicative seed noise, so fits have a ground truth to be checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from bitscale.hashing import json_digest, sha256_text
from bitscale.precision import Precision, compute_bits, model_bits

PROTOCOL = {
    "dataset": "synthetic",
    "reference": "ref0",
    "feature_extractor": "synthetic-extractor",
    "num_samples": 500,
    "labels": "balanced",
    "sampler": {"top_k": 0},
    "protocol_version": 1,
}
# Quality penalty per weight / activation width (3-bit weights hurt, 8-bit activations a bit).
W_PENALTY = {16: 1.0, 8: 1.01, 6: 1.04, 5: 1.08, 4: 1.15, 3: 1.6, 2: 3.0}
A_PENALTY = {16: 1.0, 8: 1.06, 6: 1.3, 4: 2.0}


@dataclass
class SyntheticGrid:
    families: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"toyvar": {"d1": 100_000, "d2": 200_000, "d4": 400_000, "d8": 800_000}}
    )
    methods: dict[str, float] = field(default_factory=lambda: {"rtn": 1.0, "gptq": 0.9})  # penalty scale
    precisions: list[str] = field(default_factory=lambda: ["W16A16", "W8A16", "W4A16", "W3A16", "W8A8", "W4A8"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    k: float = 2000.0
    alpha: float = 0.45
    noise: float = 0.02  # relative seed-to-seed std
    experiment: str = "synthetic"


def _hash(*parts: Any) -> str:
    return sha256_text(repr(parts), 20)


def protocol_fingerprint(details: dict[str, Any]) -> str:
    return json_digest(details, 16)


def true_fid(grid: SyntheticGrid, n_params: int, precision: str, method_scale: float) -> float:
    """The noiseless FID the grid's law gives a cell."""
    p = Precision.parse(precision)
    penalty = 1.0 + (W_PENALTY[p.w_bits] * A_PENALTY[p.a_bits] - 1.0) * (0.0 if p.is_full else method_scale)
    return grid.k * n_params ** (-grid.alpha) * penalty


def records(grid: SyntheticGrid, rng_seed: int = 0) -> list[dict[str, Any]]:
    """``ResultStore.record`` payloads for every cell x seed of ``grid``."""
    rng = np.random.default_rng(rng_seed)
    t0 = datetime(2025, 1, 1)
    out = []
    for family, sizes in grid.families.items():
        for size, n in sizes.items():
            for prec in grid.precisions:
                p = Precision.parse(prec)
                methods = {"fp16": 0.0} if p.is_full else grid.methods
                for method, scale in methods.items():
                    method_name, _, loss = method.partition("+")
                    for seed in grid.seeds:
                        details = {**PROTOCOL, "seed": seed}
                        fid = true_fid(grid, n, prec, scale) * float(np.exp(rng.normal(0.0, grid.noise)))
                        out.append(
                            _record(
                                grid,
                                family,
                                size,
                                n,
                                p,
                                method_name,
                                loss or None,
                                seed,
                                fid,
                                details,
                                t0 + timedelta(seconds=len(out)),
                            )
                        )
    return out


def _record(
    grid: SyntheticGrid,
    family: str,
    size: str,
    n: int,
    p: Precision,
    method: str,
    loss: str | None,
    seed: int,
    fid: float,
    details: dict[str, Any],
    when: datetime,
) -> dict[str, Any]:
    fp = protocol_fingerprint(details)
    run = dict(
        cell_hash=_hash(family, size, method, loss, p.label, seed, grid.experiment),
        source="measured",
        experiment=grid.experiment,
        family=family,
        size=size,
        method=method,
        loss=loss,
        precision=p.label,
        w_bits=p.w_bits,
        a_bits=p.a_bits,
        w_format=str(p.weights),
        a_format=str(p.activations),
        seed=seed,
        num_params=n,
        model_bits=float(model_bits(n, p)),
        compute_bits=float(compute_bits(n, p)),
        effective_weight_bits=float(p.w_bits + (0.25 if not p.is_full else 0.0)),
        status="ok",
        error=None,
        notes=None,
        config={"synthetic": True},
        versions={"bitscale": "synthetic", "quantizer": "1.0"},
        git_sha="0" * 40,
        host="synthetic-host",
        device="cpu (synthetic)",
        started_at=when,
        finished_at=when,
        timings={"total": 1.0},
        protocol_fingerprint=fp,
    )
    return {"run": run, "metrics": {"fid": fid}, "protocol": (fp, details)}


def fill(store, grid: SyntheticGrid | None = None, rng_seed: int = 0) -> int:
    """Record the grid through ``ResultStore.record`` (one transaction per run); returns the count."""
    n = 0
    for rec in records(grid or SyntheticGrid(), rng_seed):
        n += store.record(**rec)
    return n


def bulk_fill(store, grid: SyntheticGrid, rng_seed: int = 0) -> int:
    """Like :func:`fill` but in one transaction: for stores of thousands of runs (benchmarks)."""
    from bitscale.harness.store.schema import Metric, Protocol, Run

    recs = records(grid, rng_seed)
    with store.session() as s, s.begin():
        for fp, details in {r["protocol"][0]: r["protocol"][1] for r in recs}.items():
            if s.get(Protocol, fp) is None:
                s.add(Protocol(fingerprint=fp, details=details))
        for r in recs:
            row = Run(**r["run"])
            row.metrics = [Metric(name=k, value=v) for k, v in r["metrics"].items()]
            s.add(row)
    return len(recs)


def failed_record(
    family: str,
    size: str,
    n: int,
    precision: str,
    method: str,
    seed: int = 0,
    error: str = "RuntimeError: quantizer exploded",
    experiment: str = "synthetic",
) -> dict[str, Any]:
    """A failed run (no metrics, no protocol), as the runner records one."""
    p = Precision.parse(precision)
    rec = _record(
        SyntheticGrid(experiment=experiment), family, size, n, p, method, None, seed, 0.0, {}, datetime(2025, 1, 2)
    )
    rec["run"].update(
        status="failed",
        error=f"Traceback (most recent call last):\n  ...\n{error}",
        protocol_fingerprint=None,
        cell_hash=_hash("failed", family, size, method, precision, seed),
    )
    return {"run": rec["run"], "metrics": {}, "protocol": None}
