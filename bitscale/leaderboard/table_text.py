"""The text of a leaderboard table's cells, rows and title, shared by every format (``render``, ``html_tables``).

An empty cell is never silent: it shows a dash with a note marker, and the note under the
table says why (failed, measured only under another protocol, not run, not published).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitscale.leaderboard.escape import latex_escape, markdown_escape
from bitscale.leaderboard.metrics import direction_words, display_name
from bitscale.leaderboard.results import parse_precision
from bitscale.leaderboard.table import LeaderboardTable, best_mask, deltas


def escape_text(text: str, fmt: str) -> str:
    if fmt == "latex":
        return latex_escape(text)
    if fmt == "github":
        return markdown_escape(text)
    return text


#: Marks a quantized cell whose 95% CI overlaps the W16A16 cell's of the same size.
OVERLAP_MARK = "≈FP"
OVERLAP_NOTE = (
    f"{OVERLAP_MARK}: the cell's 95% CI overlaps the W16A16 cell's of the same size: "
    "not distinguishable from full precision at these seeds"
)


def _cell(
    value: float,
    ci: tuple[float, float],
    printed: object,
    fmt: str,
    bold: bool,
    delta: float | None,
    note: str | None,
    overlaps_full: bool = False,
) -> str:
    if value != value:  # NaN: an empty cell, with the mark of its reason
        dash = "--" if fmt == "latex" else "—"
        if note is None:
            return dash
        return f"{dash}$^{{{note}}}$" if fmt == "latex" else f"{dash} [{note}]"
    text = printed if isinstance(printed, str) and printed else f"{value:.2f}"  # published: as printed
    if ci[0] == ci[0]:  # a CI exists (two seeds or more): every such cell shows it
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    if delta is not None and delta == delta:
        text += f" ({delta:+.2f})"
    if overlaps_full:
        text += " $\\approx$FP" if fmt == "latex" else f" {OVERLAP_MARK}"
    if bold:
        text = f"**{text}**" if fmt == "github" else (f"\\textbf{{{text}}}" if fmt == "latex" else text)
    return text


def note_numbers(table: LeaderboardTable) -> tuple[dict[tuple[str, str, str], str], list[tuple[str, str]]]:
    """Number the distinct reasons of a table's empty cells: (cell -> mark, [(mark, reason)])."""
    marks: dict[str, str] = {}
    by_cell = {}
    for cell, reason in table.missing.items():
        if reason not in marks:
            marks[reason] = str(len(marks) + 1)
        by_cell[cell] = marks[reason]
    return by_cell, [(m, r) for r, m in marks.items()]


def delta_frame(table: LeaderboardTable, with_deltas: bool | str) -> pd.DataFrame | None:
    """Deltas requested by ``with_deltas``: True = vs W16A16, a method name = vs that method."""
    if not with_deltas:
        return None
    return deltas(table, None if with_deltas is True else str(with_deltas))


def table_rows(
    table: LeaderboardTable, fmt: str, with_deltas: bool | str = False, repeat_precision: bool = False
) -> list[list[str]]:
    """Body rows ``[#bits, method, *sizes]`` as strings in ``fmt``."""
    # Plain arrays, not .loc: a 10,000-run store renders thousands of cells per format.
    mean = table.frame.to_numpy(float)
    nan = np.full(mean.shape, np.nan)
    lo = nan if table.ci_lo is None else table.ci_lo.to_numpy(float)
    hi = nan if table.ci_hi is None else table.ci_hi.to_numpy(float)
    near = np.zeros(mean.shape, bool) if table.overlaps_full is None else table.overlaps_full.to_numpy(bool)
    best = best_mask(table).to_numpy()
    d = delta_frame(table, with_deltas)
    delta = None if d is None else d.to_numpy(float)
    text = None if table.text is None else table.text.to_numpy(object)
    cols = list(table.frame.columns)
    marks, _ = note_numbers(table)
    against = None if with_deltas is True else with_deltas
    rows, last = [], None
    for i, (prec, method) in enumerate(table.frame.index):
        is_reference = parse_precision(prec).is_full if against is None else method == against
        cells = [
            _cell(
                mean[i, j],
                (lo[i, j], hi[i, j]),
                None if text is None else text[i, j],
                fmt,
                bool(best[i, j]),
                None if delta is None or is_reference else delta[i, j],
                marks.get((prec, method, c)),
                bool(near[i, j]),
            )
            for j, c in enumerate(cols)
        ]
        shown = prec if (prec != last or repeat_precision) else ""
        rows.append([escape_text(shown, fmt), escape_text(method, fmt), *cells])
        last = prec
    return rows


def title(t: LeaderboardTable, with_deltas: bool | str = False) -> str:
    """One line describing what a table shows (family, source, averaging, protocol)."""
    proto = f", protocol {t.protocol[:8]}" if t.protocol else ""
    name, direction = display_name(t.metric), direction_words(t.metric)
    if t.source == "paper":
        head = f"{t.family} ({t.title_note or 'published'}): {name} as published"
        return f"{head} ({direction}{proto})"
    seeds = f", mean over {t.seeds} seeds [95% CI of the mean]" if t.seeds > 1 else ""
    ref = ""
    if with_deltas:
        ref = f"; in parentheses: delta vs {'W16A16' if with_deltas is True else with_deltas}"
    return f"{t.family}: {name} ({direction}{seeds}{proto}{ref})"


def footnotes(t: LeaderboardTable) -> list[str]:
    """Lines under a table: the overlap mark (when used) and each row's protocol."""
    lines = []
    if t.overlaps_full is not None and bool(t.overlaps_full.to_numpy(bool).any()):
        lines.append(OVERLAP_NOTE)
    for prec, method in t.frame.index:
        proto = t.row_protocols.get((prec, method))
        if proto:
            lines.append(f"{prec} {method}: {proto}")
    return lines
