"""Shape stored runs into the paper's Table-2 layout: rows (bits, method), columns model sizes.

Protocol guard: scores measured under different protocols (reference set, extractor, sample
count, sampler) never share a column. Each (source, family, protocol) gets its own table, and
published rows get one table per paper table. A cell with no score says why (failed, measured
only under another protocol, not run) in ``LeaderboardTable.missing``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from bitscale.leaderboard.metrics import lower_is_better
from bitscale.leaderboard.results import comparable_protocols, method_label, parse_precision, prepare
from bitscale.leaderboard.results import size_order as ordered_sizes
from bitscale.leaderboard.row_protocol import row_protocol
from bitscale.leaderboard.stats import intervals_overlap, mean_ci

__all__ = ["LeaderboardTable", "build_tables", "best_mask", "deltas", "method_label", "precision_order"]


@dataclass
class LeaderboardTable:
    family: str
    protocol: str | None
    metric: str
    frame: pd.DataFrame  # index (precision, method), columns sizes; mean over seeds
    std: pd.DataFrame  # same shape: std over seeds (NaN with one seed)
    seeds: int
    source: str = "measured"
    title_note: str = ""  # e.g. "paper Table 2"
    text: pd.DataFrame | None = None  # values exactly as published (paper rows), else None
    missing: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (precision, method, size) -> why
    runs: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)  # cell -> contributing hashes
    protocol_details: dict[str, Any] | None = None
    # 95% t-interval of each cell's mean over seeds (NaN with one seed), and whether a quantized
    # cell's interval overlaps the W16A16 cell's of the same size (False when either has none).
    ci_lo: pd.DataFrame | None = None
    ci_hi: pd.DataFrame | None = None
    overlaps_full: pd.DataFrame | None = None
    # (precision, method) -> "activations: ...; sampling: ..." (see ``row_protocol``)
    row_protocols: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A short identifier, unique per table (used for HTML anchors and file names)."""
        parts = [self.family, self.source]
        if self.title_note:
            parts.append(self.title_note)
        if self.protocol:
            parts.append(self.protocol[:8])
        return "-".join(p.replace(" ", "") for p in parts)


@lru_cache(maxsize=4096)
def precision_order(label: str) -> tuple:
    """W16A16 first, then weight-only settings by falling width, then weight-activation ones."""
    p = parse_precision(label)
    return (not p.is_full, not p.weight_only, -p.w_bits, -p.a_bits, label)


def _group_keys(df: pd.DataFrame) -> pd.Series:
    # Paper rows: one table per published table (Tables 2 and 5 repeat rows, which must not
    # be averaged together); measured rows: one table per family and comparable protocol.
    paper = df["source"] == "paper"
    table = df["experiment"].where(paper, "")
    return table


def build_tables(
    runs: pd.DataFrame,
    metric: str = "fid",
    size_order: dict[str, list[str]] | None = None,
    families: list[str] | None = None,
    *,
    protocols: dict[str, dict[str, Any]] | None = None,
    prepared: pd.DataFrame | None = None,
) -> list[LeaderboardTable]:
    """One table per (source, family, comparable protocol) from the store's ``frame()``.

    ``size_order`` maps a family to its sizes in display order (else: by parameter count).
    Pass ``protocols`` (``ResultStore.protocols()``) so that the seeds of one cell share a
    column; without it the raw fingerprints (which include the seed) separate them.
    ``prepared`` skips :func:`prepare` when the caller already has its output.
    """
    if prepared is None:
        if runs.empty or metric not in runs.columns:
            return []
        prepared = prepare(runs, protocols, metric)
    df = prepared
    if families:
        df = df[df["family"].isin(families)]
    if df.empty:
        return []
    df = df.assign(_table=_group_keys(df))
    ok_mask = (df["status"] == "ok") & np.isfinite(df["value"].astype(float))
    ok = df[ok_mask]
    details = comparable_protocols(protocols or {})
    printed = _printed_text(ok, metric)
    tables = []
    for (source, family, protocol, table_name), grp in ok.groupby(
        ["source", "family", "protocol_key", "_table"], sort=True
    ):
        agg = grp.groupby(["precision", "method_label", "size"])["value"].agg(["mean", "std", "count"])
        mean, std = agg["mean"].unstack("size"), agg["std"].unstack("size")
        # Rows that exist in this family only as failures still get a row: the table must
        # show that they were attempted.
        failed = set() if table_name else _failed_cells(df, source, family)
        printed_order = _row_order(grp)
        rows = sorted(
            set(mean.index) | {(p, m) for p, m, _ in failed},
            key=lambda r: (precision_order(r[0]), printed_order.get(r, 0), natural_key(r[1])),
        )
        present = set(mean.columns) | {s for _, _, s in failed}
        sizes = [s for s in ordered_sizes(df[df["family"] == family], family, size_order) if s in present]
        mean = mean.reindex(index=pd.MultiIndex.from_tuples(rows), columns=sizes)
        std = std.reindex(index=mean.index, columns=sizes)
        text = None
        if printed is not None and source == "paper":
            text = (
                printed[(printed["_table"] == table_name) & (printed["family"] == family)]
                .set_index(["precision", "method_label", "size"])["printed"]
                .unstack("size")
                .reindex(index=mean.index, columns=sizes)
            )
        t = LeaderboardTable(
            family,
            protocol or None,
            metric,
            mean,
            std,
            int(agg["count"].max()),
            source=source,
            title_note=_paper_note(table_name),
            text=text,
            protocol_details=details.get(protocol),
        )
        t.runs = {k: list(v) for k, v in grp.groupby(["precision", "method_label", "size"])["cell_hash"]}
        count = agg["count"].unstack("size").reindex(index=mean.index, columns=sizes)
        _attach_intervals(t, count)
        t.row_protocols = _row_protocols(grp, t.protocol_details, source)
        t.missing = _missing_reasons(t, df, source, family, protocol, table_name)
        tables.append(t)
    return tables


def _attach_intervals(t: LeaderboardTable, count: pd.DataFrame) -> None:
    """95% CI of every cell's mean, and for quantized cells whether it overlaps the W16A16 cell's."""
    lo, hi = mean_ci(t.frame.to_numpy(float), t.std.to_numpy(float), count.to_numpy(float))
    t.ci_lo = pd.DataFrame(lo, index=t.frame.index, columns=t.frame.columns)
    t.ci_hi = pd.DataFrame(hi, index=t.frame.index, columns=t.frame.columns)
    overlap = np.zeros(lo.shape, dtype=bool)
    full = [i for i, (p, _) in enumerate(t.frame.index) if parse_precision(p).is_full]
    if full:
        f = full[0]
        overlap = intervals_overlap(lo, hi, lo[f], hi[f])
        overlap[full] = False  # the reference itself is not "indistinguishable from" itself
    t.overlaps_full = pd.DataFrame(overlap, index=t.frame.index, columns=t.frame.columns)


def _row_protocols(grp: pd.DataFrame, details: dict[str, Any] | None, source: str) -> dict[tuple[str, str], str]:
    """Each row's activation scheme and sampling coupling (several variants joined with " | ")."""
    options = grp["quantizer_options"] if "quantizer_options" in grp.columns else pd.Series(None, index=grp.index)
    seen: dict[tuple[str, str], list[str]] = {}
    for prec, method, opts in zip(grp["precision"], grp["method_label"], options):
        text = row_protocol(prec, opts if isinstance(opts, dict) else None, details, source)
        if text not in seen.setdefault((prec, method), []):
            seen[(prec, method)].append(text)
    return {k: " | ".join(v) for k, v in seen.items()}


def natural_key(label: str) -> tuple:
    """Sort key reading digit runs as numbers: ``topkld(k=32)`` before ``topkld(k=128)``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label))


def _row_order(grp: pd.DataFrame) -> dict[tuple[str, str], float]:
    # Published tables keep the paper's row order; measured rows sort by name.
    if "row_order" not in grp.columns or grp["row_order"].isna().all():
        return {}
    return grp.groupby(["precision", "method_label"])["row_order"].min().to_dict()


def _paper_note(table_name: str) -> str:
    if table_name.startswith("paper:table"):
        return "paper Table " + table_name.removeprefix("paper:table")
    return table_name


def _printed_text(ok: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    if "printed" not in ok.columns:
        return None
    rows = ok[ok["printed"].notna()]
    return rows[["_table", "family", "precision", "method_label", "size", "printed"]] if len(rows) else None


def _failed_cells(df: pd.DataFrame, source: str, family: str) -> set[tuple[str, str, str]]:
    f = df[(df["status"] == "failed") & (df["source"] == source) & (df["family"] == family)]
    return set(zip(f["precision"], f["method_label"], f["size"]))


def _missing_reasons(
    t: LeaderboardTable, df: pd.DataFrame, source: str, family: str, protocol: str, table_name: str
) -> dict[tuple[str, str, str], str]:
    """Why each empty cell of ``t`` is empty, in words a reader can act on."""
    empty = np.isnan(t.frame.to_numpy(float))
    cols = list(t.frame.columns)
    holes = [(p, m, cols[j]) for i, (p, m) in enumerate(t.frame.index) for j in np.flatnonzero(empty[i])]
    if not holes:
        return {}
    if table_name:
        return {h: "not reported in the paper" for h in holes}
    fam = df[(df["family"] == family) & (df["source"] == source)]
    other = fam[(fam["status"] == "ok") & (fam["protocol_key"] != protocol)]
    other_protocols: dict[tuple, set[str]] = {}
    for p, m, s, k in zip(other["precision"], other["method_label"], other["size"], other["protocol_key"]):
        other_protocols.setdefault((p, m, s), set()).add(k or "unknown")
    failed = fam[fam["status"] == "failed"]
    lines = failed["error_line"] if "error_line" in failed.columns else pd.Series(None, index=failed.index)
    errors: dict[tuple, str] = {}
    for p, m, s, e in zip(failed["precision"], failed["method_label"], failed["size"], lines):
        errors.setdefault((p, m, s), e if isinstance(e, str) and e else "see the traceback in the store")
    out = {}
    for h in holes:
        if h in errors:
            out[h] = f"failed: {errors[h]}"
        elif h in other_protocols:
            keys = ", ".join(sorted(k[:8] for k in other_protocols[h]))
            out[h] = f"measured only under another protocol ({keys}): not comparable with this column"
        else:
            out[h] = "not run"
    return out


def _blocks(index: pd.Index) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, (prec, _) in enumerate(index):
        out.setdefault(prec, []).append(i)
    return out


def best_mask(table: LeaderboardTable) -> pd.DataFrame:
    """True where a cell is the best of its precision block (only blocks with several methods).

    "Best" follows the table's metric (``metrics.lower_is_better``): the highest IS, the lowest FID.
    """
    lower = lower_is_better(table.metric)
    f = table.frame
    vals = f.to_numpy(float)
    mask = np.zeros(vals.shape, dtype=bool)
    for rows in _blocks(f.index).values():
        if len(rows) < 2:
            continue
        block = vals[rows]
        with np.errstate(all="ignore"):
            best = np.nanmin(block, axis=0) if lower else np.nanmax(block, axis=0)
        mask[rows] = block == best  # NaN never equals: empty columns stay unmarked
    return pd.DataFrame(mask, index=f.index, columns=f.columns)


def deltas(table: LeaderboardTable, against: str | None = None) -> pd.DataFrame:
    """Each cell minus a reference of the same size (positive = worse FID).

    ``against=None``: the W16A16 row. ``against="rtn"``: the row of that method in the same
    precision block (NaN where the block has no such row).
    """
    f = table.frame
    vals = f.to_numpy(float)
    out = np.full(vals.shape, np.nan)
    if against is None:
        full = [i for i, r in enumerate(f.index) if parse_precision(r[0]).is_full]
        if full:
            out = vals - vals[full[0]]
    else:
        for rows in _blocks(f.index).values():
            ref = [i for i in rows if f.index[i][1] == against]
            if ref:
                out[rows] = vals[rows] - vals[ref[0]]
    return pd.DataFrame(out, index=f.index, columns=f.columns)
