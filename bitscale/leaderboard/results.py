"""Prepare the store's ``frame()`` for every leaderboard view: labels, comparable protocols, bits.

Every view (tables, budgets, fits, plots, the HTML page, the CI gate) starts from
:func:`prepare`, so they all agree on three rules:

* **Comparable protocol.** The runner's protocol fingerprint covers the seed, so two seeds of
  one cell have different fingerprints. Scores are comparable when everything *but* the seed
  matches (reference set, feature extractor, sample count, sampler); that is the
  ``protocol_key`` used to separate columns and fits.
* **One value per (cell, seed).** When a cell was recorded several times (new plugin
  version, new bitscale version: new cell hashes), the latest finished run wins.
* **Sources never mix.** ``source`` ("measured" or "paper") is part of every grouping key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bitscale.hashing import json_digest
from bitscale.precision import Precision

if TYPE_CHECKING:
    from bitscale.harness.store import ResultStore

# Protocol fields that vary between the seeds of one cell without changing what is measured.
PER_SEED_FIELDS = ("seed",)
# Columns that identify one cell independently of its seed (and of its hash, which moves
# with plugin versions).
CELL_KEY = ["source", "family", "size", "method_label", "precision", "protocol_key"]


def comparison_key(details: dict[str, Any] | None) -> str:
    """Short hash of a protocol without its per-seed fields; ``""`` when unknown (failed runs)."""
    if not details:
        return ""
    core = {k: v for k, v in details.items() if k not in PER_SEED_FIELDS}
    return json_digest(core, 12)


def comparable_protocols(protocols: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``protocol_key`` -> details without the per-seed fields (for display)."""
    out: dict[str, dict[str, Any]] = {}
    for details in protocols.values():
        out.setdefault(comparison_key(details), {k: v for k, v in details.items() if k not in PER_SEED_FIELDS})
    return out


def method_label(method: str, loss: object, variant: str = "") -> str:
    """``qat+topkld`` for a training quantizer with its loss, else the quantizer name; then the
    options that tell this variant from others in the same results, e.g. ``qat+topkld(k=32)``."""
    label = f"{method}+{loss}" if isinstance(loss, str) and loss else method
    return f"{label}({variant})" if variant else label


def option_variants(df: pd.DataFrame) -> list[str]:
    """Per row, ``k=32``-style text of the plugin options whose values differ between the rows
    of the same method and loss: two variants of a method become two rows of a table, never one
    average, while options every run shares stay out of the labels."""
    if "quantizer_options" not in df.columns:
        return [""] * len(df)
    options = []
    for q, lo in zip(df["quantizer_options"], df["loss_options"]):
        q, lo = q or {}, lo or {}
        options.append({**q, **{(f"loss.{k}" if k in q else k): v for k, v in lo.items()}})
    methods = list(zip(df["method"], df["loss"].fillna("")))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for o, m in zip(options, methods):
        groups.setdefault(m, []).append(o)
    varying = {
        m: [k for k in sorted({k for o in rows for k in o}) if len({_comparable(o.get(k)) for o in rows}) > 1]
        for m, rows in groups.items()
    }
    return [",".join(f"{k}={o.get(k)}" for k in varying[m]) for o, m in zip(options, methods)]


def _comparable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else json.dumps(value, sort_keys=True)


@lru_cache(maxsize=4096)
def parse_precision(label: str) -> Precision:
    """``Precision.parse`` with a cache: views parse the same few labels thousands of times."""
    return Precision.parse(label)


def _precision_bits(labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    cache = {p: parse_precision(p) for p in labels.unique()}
    return (
        labels.map(lambda p: cache[p].w_bits).to_numpy(float),
        labels.map(lambda p: cache[p].a_bits).to_numpy(float),
    )


def prepare(
    frame: pd.DataFrame, protocols: dict[str, dict[str, Any]] | None = None, metric: str = "fid"
) -> pd.DataFrame:
    """All runs (ok and failed) with ``method_label``, ``protocol_key`` and nominal/effective bits.

    Added columns: ``method_label``, ``protocol_key``, ``mt``/``ct`` (nominal total model and
    compute bits, paper §3: N x w_bits and N x w_bits x a_bits), ``mt_eff``/``ct_eff`` (the same
    with the quantizer's effective weight bits, which count scales, zero-points and
    codebooks; nominal when the quantizer did not report them) and ``value`` (the metric).
    Superseded duplicates of a (cell, seed) are dropped: the latest finished run wins.
    """
    if frame.empty:
        return frame.assign(method_label=[], protocol_key=[], mt=[], ct=[], mt_eff=[], ct_eff=[], value=[])
    df = frame.copy()
    if "source" not in df.columns:
        df["source"] = "measured"
    df["source"] = df["source"].fillna("measured")
    df["method_label"] = [method_label(*row) for row in zip(df["method"], df["loss"], option_variants(df))]
    if protocols is None:
        # Without the details the fingerprint itself is the best key we have.
        df["protocol_key"] = df["protocol_fingerprint"].fillna("")
    else:
        keys = {fp: comparison_key(d) for fp, d in protocols.items()}
        df["protocol_key"] = df["protocol_fingerprint"].map(keys).fillna("")
    w, a = _precision_bits(df["precision"])
    n = df["num_params"].to_numpy(float)
    eff = df["effective_weight_bits"].to_numpy(float) if "effective_weight_bits" in df else np.full(len(df), np.nan)
    eff = np.where(np.isfinite(eff), eff, w)
    df["mt"], df["ct"] = n * w, n * w * a
    df["mt_eff"], df["ct_eff"] = n * eff, n * eff * a
    df["value"] = df[metric] if metric in df.columns else np.nan
    return latest_per_seed(df)


def latest_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest run of each (cell, seed); paper rows are also keyed by their table."""
    if df.empty:
        return df
    key = [*CELL_KEY, "seed"]
    # Failed runs have no protocol: they must not shadow an ok run of the same cell.
    order = df.assign(_ok=(df["status"] == "ok")).sort_values(["_ok", "finished_at"], kind="stable")
    paper = order["source"] == "paper"
    measured = order[~paper].drop_duplicates(key, keep="last")
    papers = order[paper].drop_duplicates([*key, "experiment"], keep="last")
    return pd.concat([measured, papers]).drop(columns="_ok").sort_index()


def superseded(frame: pd.DataFrame, protocols: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """The stored runs no view shows any more: an older run of the same (cell, seed) and option
    variant under the same protocol, which ``latest_per_seed`` drops (e.g. the rows of an earlier
    plugin version or of other weights, or a failed attempt a later run replaced)."""
    if frame.empty:
        return frame
    kept = set(prepare(frame, protocols)["id"])
    return frame[~frame["id"].isin(kept)]


def ok_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with a finite metric value."""
    return df[(df["status"] == "ok") & np.isfinite(df["value"].astype(float))]


def analysis_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Ok runs as budgets, fits and plots see them: each published value once, under one name.

    Tables 2 and 5 of the paper repeat rows, and its W16A16 row is "FP16" in some tables and
    "FP" in others: for analysis a published row takes its bitscale alias (``fp16``, ``gptq``,
    ``qat+topkld``) where one exists and is counted once.
    """
    ok = ok_runs(df)
    paper = ok["source"] == "paper"
    if not paper.any():
        return ok
    pub = ok[paper].copy()
    if "method_alias" in pub.columns:
        pub["method_label"] = pub["method_alias"].where(pub["method_alias"].notna(), pub["method_label"])
    full = pub["precision"].map(lambda p: parse_precision(p).is_full)
    pub.loc[full, "method_label"] = "fp16"
    pub = pub.sort_values("experiment", kind="stable").drop_duplicates([*CELL_KEY, "seed"], keep="first")
    return pd.concat([ok[~paper], pub])


def cell_stats(df: pd.DataFrame, extra_keys: list[str] | None = None) -> pd.DataFrame:
    """Mean, std and count of the metric over seeds, one row per cell (see :func:`analysis_rows`)."""
    ok = analysis_rows(df)
    keys = [*CELL_KEY, *(extra_keys or [])]
    g = ok.groupby(keys, sort=False, dropna=False)
    out = g.agg(
        mean=("value", "mean"),
        std=("value", "std"),
        seeds=("value", "size"),
        num_params=("num_params", "first"),
        mt=("mt", "first"),
        ct=("ct", "first"),
        mt_eff=("mt_eff", "mean"),
        ct_eff=("ct_eff", "mean"),
    )
    return out.reset_index()


def size_order(df: pd.DataFrame, family: str, hint: dict[str, list[str]] | None = None) -> list[str]:
    """Sizes of ``family``: the plugin's order when known, else by parameter count."""
    sizes = df.loc[df["family"] == family].groupby("size")["num_params"].max().sort_values()
    known = [s for s in (hint or {}).get(family, []) if s in sizes.index]
    return known + [s for s in sizes.index if s not in known]


# --------------------------------------------------------------------------- loading


@dataclass
class Results:
    """Prepared runs of one store plus the protocol details they refer to."""

    runs: pd.DataFrame  # output of prepare(), plus ``printed``, ``row_order`` and ``error_line``
    protocols: dict[str, dict[str, Any]]  # raw fingerprint -> details
    metric: str = "fid"
    store_url: str = ""

    @property
    def comparable(self) -> dict[str, dict[str, Any]]:
        """``protocol_key`` -> details without per-seed fields."""
        return comparable_protocols(self.protocols)


def load_results(store: ResultStore, metric: str = "fid", experiment: str | None = None) -> Results:
    """Read ``store`` once and prepare it for every view (optionally one experiment only)."""
    frame = store.frame()
    if experiment is not None and not frame.empty:
        # Its own runs and the shared ones it includes (W16A16 cells stored under another experiment).
        frame = frame[frame["cell_hash"].isin(store.experiment_hashes(experiment))]
    protocols = store.protocols()
    if not frame.empty:
        frame = _attach_side_columns(store, frame, metric)
    return Results(prepare(frame, protocols, metric), protocols, metric, store.url)


def _attach_side_columns(store: ResultStore, frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    # Two small targeted queries instead of loading every run's JSON config: the published
    # value as printed (paper rows) and the last line of each failure's traceback.
    import sqlalchemy as sa

    from bitscale.harness.store.schema import Run

    with store.session() as s:
        paper = s.execute(sa.select(Run.cell_hash, Run.config).where(Run.source == "paper")).all()
        failed = s.execute(sa.select(Run.cell_hash, Run.error).where(Run.status == "failed")).all()
    printed = {
        h: str(((c or {}).get("printed") or {}).get(metric))
        for h, c in paper
        if ((c or {}).get("printed") or {}).get(metric) is not None
    }
    rows = {h: (c or {}).get("row") for h, c in paper}
    aliases = {h: (c or {}).get("method_alias") for h, c in paper}
    errors = {h: _last_line(e) for h, e in failed}
    return frame.assign(
        printed=frame["cell_hash"].map(printed),
        row_order=frame["cell_hash"].map(rows),
        method_alias=frame["cell_hash"].map(aliases),
        error_line=frame["cell_hash"].map(errors),
    )


def _last_line(error: str | None) -> str:
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def open_store(url: str) -> ResultStore:
    """Open an existing store for reading; a missing, empty or foreign database is an input error.

    Read commands never create a store, nor a schema inside an existing (empty) file.
    """
    from pathlib import Path

    from bitscale.harness.errors import BitscaleError
    from bitscale.harness.store import ResultStore
    from bitscale.harness.store.urls import normalize_url, redact

    full = normalize_url(url)
    if (
        full.startswith("sqlite:///")
        and full not in ("sqlite:///", "sqlite:///:memory:")
        and not Path(full.removeprefix("sqlite:///")).exists()
    ):
        raise BitscaleError(f"store {redact(full)} does not exist; run `bitscale run` first or pass --store")
    return ResultStore.open_existing(full)
