"""Text renderings of leaderboard tables: GitHub markdown, LaTeX, plain text, CSV, JSON, HTML."""

from __future__ import annotations

import html
import json

import pandas as pd
from tabulate import tabulate

from bitscale.leaderboard.table import LeaderboardTable, best_mask, deltas

FORMATS = ("github", "latex", "plain", "csv", "json", "html")


def _cell(value: float, std: float, bold: bool, fmt: str, delta: float | None) -> str:
    if pd.isna(value):
        return "—" if fmt != "latex" else "--"
    text = f"{value:.2f}"
    if pd.notna(std):
        text += f" ± {std:.2f}" if fmt != "latex" else f" $\\pm$ {std:.2f}"
    if delta is not None and pd.notna(delta):
        text += f" ({delta:+.2f})"
    if bold:
        text = f"**{text}**" if fmt == "github" else (f"\\textbf{{{text}}}" if fmt == "latex" else text)
    return text


def _rows(table: LeaderboardTable, fmt: str, with_deltas: bool) -> list[list[str]]:
    mask, d = best_mask(table), deltas(table) if with_deltas else None
    rows, last = [], None
    for prec, method in table.frame.index:
        cells = [
            _cell(table.frame.loc[(prec, method), c], table.std.loc[(prec, method), c],
                  bool(mask.loc[(prec, method), c]), fmt,
                  None if d is None or prec.startswith("W16A16") else d.loc[(prec, method), c])
            for c in table.frame.columns
        ]
        rows.append([prec if prec != last else "", method, *cells])
        last = prec
    return rows


def _title(t: LeaderboardTable) -> str:
    proto = f", protocol {t.protocol}" if t.protocol else ""
    seeds = f", mean ± std over {t.seeds} seeds" if t.seeds > 1 else ""
    return f"{t.family}: {t.metric.upper()} (lower is better{seeds}{proto})"


def render(tables: list[LeaderboardTable], fmt: str = "github", with_deltas: bool = False) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not tables:
        return "No finished runs in the store yet. Run `bitscale run` first.\n"
    if fmt == "csv":
        return _long(tables).to_csv(index=False)
    if fmt == "json":
        return json.dumps(_long(tables).to_dict(orient="records"), indent=2) + "\n"
    if fmt == "html":
        return "\n".join(_html_table(t, with_deltas) for t in tables)
    out = []
    for t in tables:
        headers = ["#bits", "Method", *t.frame.columns]
        body = tabulate(_rows(t, fmt, with_deltas), headers=headers,
                        tablefmt={"github": "github", "latex": "latex_raw", "plain": "simple"}[fmt],
                        disable_numparse=True)
        title = _title(t)
        out.append(f"% {title}\n{body}\n" if fmt == "latex" else f"{title}\n\n{body}\n")
    return "\n".join(out)


def _long(tables: list[LeaderboardTable]) -> pd.DataFrame:
    parts = []
    for t in tables:
        mean = t.frame.stack().rename("mean")
        std = t.std.stack(future_stack=True).rename("std").reindex(mean.index)
        df = pd.concat([mean, std], axis=1).reset_index()
        df.columns = ["precision", "method", "size", "mean", "std"]
        df.insert(0, "family", t.family)
        df["metric"], df["protocol"], df["seeds"] = t.metric, t.protocol, t.seeds
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def _html_table(t: LeaderboardTable, with_deltas: bool) -> str:
    e = html.escape  # plugin-supplied names end up here: always escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in ["#bits", "Method", *t.frame.columns])
    body = []
    mask = best_mask(t)
    for row, (prec, method) in zip(_rows(t, "plain", with_deltas), t.frame.index):
        cells = "".join(
            f"<td>{'<b>' if mask.loc[(prec, method), c] else ''}{e(v)}{'</b>' if mask.loc[(prec, method), c] else ''}</td>"
            for c, v in zip(t.frame.columns, row[2:]))
        body.append(f"<tr><td>{e(row[0])}</td><td>{e(row[1])}</td>{cells}</tr>")
    return (f"<table>\n<caption>{e(_title(t))}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table>")
