"""Leaderboard tables and titled frames in every format (the one format dispatch): GitHub markdown,
LaTeX, plain text, CSV, JSON, HTML.

An empty cell is never silent: it shows a dash with a note marker, and the note under the
table says why (failed, measured only under another protocol, not run, not published).
"""

from __future__ import annotations

import json

import pandas as pd
from tabulate import tabulate

from bitscale.leaderboard.escape import latex_escape, markdown_escape
from bitscale.leaderboard.html_tables import html_table
from bitscale.leaderboard.metrics import direction_words
from bitscale.leaderboard.table import LeaderboardTable
from bitscale.leaderboard.table_text import delta_frame, escape_text, footnotes, note_numbers, table_rows, title

FORMATS = ("github", "latex", "plain", "csv", "json", "html")
_TABLEFMT = {"github": "github", "latex": "latex_raw", "plain": "simple"}


def render(tables: list[LeaderboardTable], fmt: str = "github", with_deltas: bool | str = False) -> str:
    """Render ``tables`` in ``fmt`` (see ``FORMATS``); ``with_deltas`` True or a method name."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not tables:
        return "No finished runs in the store yet. Run `bitscale run` first.\n"
    if fmt == "csv":
        return long_frame(tables, with_deltas).to_csv(index=False)
    if fmt == "json":
        return json.dumps(long_frame(tables, with_deltas).to_dict(orient="records"), indent=2, default=str) + "\n"
    if fmt == "html":
        return "\n".join(html_table(t, with_deltas) for t in tables)
    out = []
    for t in tables:
        headers = ["#bits", "Method", *(escape_text(str(c), fmt) for c in t.frame.columns)]
        body = tabulate(
            table_rows(t, fmt, with_deltas), headers=headers, tablefmt=_TABLEFMT[fmt], disable_numparse=True
        )
        _, notes = note_numbers(t)
        head = title(t, with_deltas)
        extra = footnotes(t)
        if fmt == "latex":
            foot = "".join(f"% [{m}] {r}\n" for m, r in notes) + "".join(f"% {latex_escape(x)}\n" for x in extra)
            out.append(f"% {latex_escape(head)}\n{body}\n{foot}")
        else:
            foot = "".join(f"[{m}] {escape_text(r, fmt)}\n" for m, r in notes)
            foot += "".join(f"{'* ' if fmt == 'github' else ''}{escape_text(x, fmt)}\n" for x in extra)
            out.append(f"{escape_text(head, fmt)}\n\n{body}\n" + (f"\n{foot}" if foot else ""))
    return "\n".join(out)


def long_frame(tables: list[LeaderboardTable], with_deltas: bool | str = False) -> pd.DataFrame:
    """Every cell of every table as one row (the CSV/JSON export), empty cells with their reason."""
    parts = []
    for t in tables:
        idx = pd.MultiIndex.from_tuples(
            [(p, m, s) for p, m in t.frame.index for s in t.frame.columns], names=["precision", "method", "size"]
        )
        mean = t.frame.stack(future_stack=True).reindex(idx)
        std = t.std.stack(future_stack=True).reindex(idx)
        df = pd.DataFrame({"mean": mean.to_numpy(), "std": std.to_numpy()}, index=idx).reset_index()
        if t.ci_lo is not None and t.ci_hi is not None and t.overlaps_full is not None:
            df["ci_lo"] = t.ci_lo.stack(future_stack=True).reindex(idx).to_numpy()
            df["ci_hi"] = t.ci_hi.stack(future_stack=True).reindex(idx).to_numpy()
            df["ci_overlaps_fp"] = t.overlaps_full.stack(future_stack=True).reindex(idx).to_numpy(bool)
        df["row_protocol"] = [t.row_protocols.get((p, m), "") for p, m, _ in idx]
        d = delta_frame(t, with_deltas)
        if d is not None:
            df["delta"] = d.stack(future_stack=True).reindex(idx).to_numpy()
        if t.text is not None:
            df["as_published"] = t.text.stack(future_stack=True).reindex(idx).to_numpy()
        df["missing_reason"] = [t.missing.get((p, m, s)) for p, m, s in idx]
        df["runs"] = [",".join(t.runs.get((p, m, s), [])) for p, m, s in idx]
        df.insert(0, "family", t.family)
        df.insert(1, "source", t.source)
        df.insert(2, "table", t.title_note)
        df["metric"], df["protocol"], df["seeds"] = t.metric, t.protocol, t.seeds
        df["direction"] = direction_words(t.metric)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def render_frame(df: pd.DataFrame | None, fmt: str, title: str) -> str:
    """A titled data frame (budget answers, Pareto fronts, fits) in ``fmt``, as ``render`` writes tables."""
    if df is None or df.empty:
        return f"{title}: nothing to show.\n"
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps({"title": title, "rows": df.to_dict(orient="records")}, indent=2, default=str) + "\n"
    esc = latex_escape if fmt == "latex" else (markdown_escape if fmt == "github" else str)
    shown = df.map(lambda v: esc(f"{v:.4g}" if isinstance(v, float) else str(v)))
    body = tabulate(
        shown.values.tolist(), headers=[esc(str(c)) for c in df.columns], tablefmt=_TABLEFMT[fmt], disable_numparse=True
    )
    return f"% {latex_escape(title)}\n{body}\n" if fmt == "latex" else f"{esc(title)}\n\n{body}\n"
