"""Baseline files for the CI regression gate: the results of one grid plus their measured noise.

A baseline is JSON (format ``bitscale-baseline``, version 1) with one entry per cell (family,
size, method, precision, comparable protocol): the per-seed scores, their mean, and a
seed-to-seed noise estimate.

Noise model, and why: FID's seed noise grows with FID itself, so cells of very different
quality cannot share an absolute std. The relative noise (std of log FID across seeds) is
pooled over every multi-seed cell of the same family, protocol and precision (degrees of
freedom add up: two or three seeds per cell give a usable estimate only pooled), falling
back to the family, then to every cell, and scaled back to FID units by each cell's mean.
Each cell records which pool its noise came from.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bitscale.harness.errors import BitscaleError
from bitscale.leaderboard.results import Results, ok_runs

FORMAT = "bitscale-baseline"
VERSION = 1
MIN_DOF = 2  # a pool needs at least this many degrees of freedom to be used


class BaselineError(BitscaleError):
    """A baseline file that is missing, unreadable or malformed (exit code 2)."""


# NaN or infinite numbers would make every comparison false: a NaN mean never regresses, an
# infinite noise never does either. JSON parsers accept them, so the schema refuses them.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
_REL_TOL = 1e-6  # JSON round-trips floats exactly; this only absorbs hand-written rounding


class Noise(BaseModel):
    model_config = _STRICT
    rel_std: float = Field(ge=0)  # std of log(metric) across seeds
    std: float = Field(ge=0)  # rel_std x cell mean, in metric units
    dof: int = Field(ge=0)
    pool: str  # which cells it was measured on


class BaselineCell(BaseModel):
    model_config = _STRICT
    key: str
    family: str
    size: str
    method: str
    precision: str
    protocol: str
    values: dict[str, float] = Field(min_length=1)  # seed -> score
    hashes: dict[str, str] = Field(default_factory=dict)  # seed -> cell hash
    mean: float
    noise: Noise

    @model_validator(mode="after")
    def _consistent(self) -> BaselineCell:
        # The gate compares with ``mean`` and scales by ``noise.std``: both must follow from the
        # stored values, or an edited file could gate against numbers nobody measured.
        mean = sum(self.values.values()) / len(self.values)
        if not math.isclose(self.mean, mean, rel_tol=_REL_TOL, abs_tol=1e-9):
            raise ValueError(f"mean {self.mean!r} is not the mean of the values ({mean!r})")
        if not math.isclose(self.noise.std, self.noise.rel_std * abs(self.mean), rel_tol=_REL_TOL, abs_tol=1e-9):
            raise ValueError(
                f"noise.std {self.noise.std!r} is not noise.rel_std x mean ({self.noise.rel_std * abs(self.mean)!r})"
            )
        return self


class Baseline(BaseModel):
    model_config = _STRICT
    format: str
    version: int
    metric: str = "fid"
    experiment: str | None = None
    created: str
    store: str = ""
    bitscale: str = ""
    git_sha: str | None = None
    sigma: float = Field(default=3.0, gt=0)  # default multiple of the noise std
    #: sha256 of the shipped tiny-zoo weights and feature extractor installed at export (empty when
    #: the runs used weights trained on the exporting machine): a gate can tell "the weights changed"
    #: from "the scores moved".
    artifacts: dict[str, str] = Field(default_factory=dict)
    cells: list[BaselineCell] = Field(min_length=1)  # a baseline with no cells would gate nothing
    failed: list[str] = Field(default_factory=list)  # cells that had failed when exported


def cell_key(family: str, size: str, method: str, precision: str, protocol: str) -> str:
    """The identity of a cell across re-runs: its hash moves with plugin versions, this does not."""
    return f"{family}/{size} {precision} {method} @{protocol[:8] or 'none'}"


def _keys(df: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            cell_key(f, s, m, p, k)
            for f, s, m, p, k in zip(df["family"], df["size"], df["method_label"], df["precision"], df["protocol_key"])
        ],
        index=df.index,
        dtype=object,
    )


def measured_cells(results: Results) -> pd.DataFrame:
    """Measured ok runs with their ``key`` (published rows never enter a baseline)."""
    ok = ok_runs(results.runs)
    ok = ok[ok["source"] == "measured"]
    return ok.assign(key=_keys(ok), log_value=np.log(ok["value"].clip(lower=1e-12)))


def pooled_noise(ok: pd.DataFrame) -> dict[str, tuple[float, int, str]]:
    """``key`` -> (relative std, dof, pool description) for every cell of ``ok``."""
    stats = ok.groupby("key").agg(
        family=("family", "first"),
        protocol=("protocol_key", "first"),
        precision=("precision", "first"),
        n=("log_value", "size"),
        ss=("log_value", lambda v: float(((v - v.mean()) ** 2).sum())),
    )
    stats["dof"] = stats["n"] - 1
    multi = stats[stats["dof"] > 0]

    def pool(group: pd.DataFrame) -> tuple[float, int, int]:
        dof = int(group["dof"].sum())
        return (math.sqrt(group["ss"].sum() / dof) if dof else math.nan), dof, len(group)

    by_prec = {k: pool(g) for k, g in multi.groupby(["family", "protocol", "precision"])}
    by_family = {k: pool(g) for k, g in multi.groupby(["family", "protocol"])}
    overall = pool(multi) if len(multi) else (math.nan, 0, 0)
    out = {}
    for key, row in stats.iterrows():
        candidates = [
            (by_prec.get((row["family"], row["protocol"], row["precision"])), f"{row['family']} {row['precision']}"),
            (by_family.get((row["family"], row["protocol"])), f"{row['family']} (all precisions)"),
            (overall, "all families"),
        ]
        for found, name in candidates:
            if found is not None and found[1] >= MIN_DOF:
                rel, dof, cells = found
                out[key] = (rel, dof, f"pooled over {cells} multi-seed cells of {name}, {dof} dof")
                break
    return out


def export_baseline(
    results: Results, experiment: str | None = None, sigma: float = 3.0, noise_rel_std: float | None = None
) -> Baseline:
    """The baseline of the measured cells in ``results``.

    ``noise_rel_std`` replaces the measured noise (for grids run with one seed only); without
    it, a grid with no multi-seed cell is an error: the gate must not guess its threshold.
    """
    ok = measured_cells(results)
    if ok.empty:
        raise BitscaleError(
            f"no finished measured runs{f' of experiment {experiment!r}' if experiment else ''} in "
            f"{results.store_url}; run the grid first (bitscale run EXPERIMENT.yaml)"
        )
    noise = pooled_noise(ok) if noise_rel_std is None else {}
    cells = []
    for key, grp in ok.groupby("key", sort=True):
        first = grp.iloc[0]
        mean = float(grp["value"].mean())
        if noise_rel_std is not None:
            rel, dof, pool = noise_rel_std, 0, "given on the command line (--noise-rel-std)"
        elif key in noise:
            rel, dof, pool = noise[key]
        else:
            raise BitscaleError(
                "cannot estimate seed-to-seed noise: no cell was run with two or more seeds "
                f"(e.g. {key}). Run the baseline grid with `seeds: [0, 1, 2]`, or pass --noise-rel-std "
                "if you really want a fixed relative threshold"
            )
        cells.append(
            BaselineCell(
                key=key,
                family=first["family"],
                size=first["size"],
                method=first["method_label"],
                precision=first["precision"],
                protocol=first["protocol_key"],
                values={str(int(s)): float(v) for s, v in zip(grp["seed"], grp["value"])},
                hashes={str(int(s)): str(h) for s, h in zip(grp["seed"], grp["cell_hash"])},
                mean=mean,
                noise=Noise(rel_std=rel, std=rel * mean, dof=dof, pool=pool),
            )
        )
    failed = results.runs[(results.runs["status"] == "failed") & (results.runs["source"] == "measured")]
    import bitscale

    shas = ok["git_sha"].dropna().unique() if "git_sha" in ok.columns else []
    return Baseline(
        format=FORMAT,
        version=VERSION,
        metric=results.metric,
        experiment=experiment,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        store=results.store_url,
        bitscale=bitscale.__version__,
        git_sha=str(shas[0]) if len(shas) == 1 else None,
        sigma=sigma,
        artifacts=shipped_artifacts(),
        cells=cells,
        failed=sorted(set(_keys(failed))),
    )


def shipped_artifacts() -> dict[str, str]:
    """{artifact: sha256} of the shipped weights in use ({} when weights trained here are in use)."""
    from bitscale.harness.artifacts import shipped

    if shipped.source() != "shipped":
        return {}
    return {name: entry["sha256"] for name, entry in sorted(shipped.catalog().items())}


def changed_artifacts(baseline: Baseline, now: dict[str, str]) -> list[str]:
    """Shipped artifacts whose bytes differ between ``baseline`` and ``now`` (added or removed ones too)."""
    if not baseline.artifacts or not now:
        return []  # one side used weights trained on its machine: nothing to compare
    return sorted(n for n in set(baseline.artifacts) | set(now) if baseline.artifacts.get(n) != now.get(n))


def write_baseline(baseline: Baseline, path: str | Path) -> None:
    """Write ``baseline`` as stable, diff-friendly JSON (sorted cells, 2-space indent)."""
    Path(path).write_text(json.dumps(baseline.model_dump(), indent=2, sort_keys=False) + "\n")


def read_baseline(path: str | Path) -> Baseline:
    """Load and validate a baseline file; :class:`BaselineError` says what is wrong and where."""
    p = Path(path)
    if not p.is_file():
        raise BaselineError(f"{p}: baseline file not found (create one with `bitscale baseline export --out {p}`)")
    try:
        data: Any = json.loads(p.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{p}: not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise BaselineError(f"{p}: not a bitscale baseline (JSON nested too deeply)") from None
    except OSError as exc:
        raise BaselineError(f"{p}: cannot read: {exc.strerror}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BaselineError(f'{p}: not a bitscale baseline (expected "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise BaselineError(
            f"{p}: baseline version {data.get('version')!r} is not supported (this bitscale "
            f"reads version {VERSION}); export it again"
        )
    try:
        baseline = Baseline.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise BaselineError(f"{p}: {where or '(top level)'}: {err['msg'].removeprefix('Value error, ')}") from None
    if len({c.key for c in baseline.cells}) != len(baseline.cells):
        raise BaselineError(f"{p}: duplicate cell keys")
    return baseline
