"""Table-2 layout as an HTML ``<table>``: every string escaped, reasons and run hashes as tooltips."""

from __future__ import annotations

from bitscale.leaderboard.escape import h
from bitscale.leaderboard.table import LeaderboardTable, best_mask
from bitscale.leaderboard.table_text import footnotes, note_numbers, table_rows, title


def html_table(t: LeaderboardTable, with_deltas: bool | str = False) -> str:
    """One sortable, filterable table (the page's script reads the ``data-sort`` values)."""
    mask = best_mask(t).to_numpy()
    mean = t.frame.to_numpy(float)
    _, notes = note_numbers(t)
    head = "".join(f"<th>{h(c)}</th>" for c in ["#bits", "Method", *t.frame.columns])
    cols = list(t.frame.columns)
    body = []
    # Each row repeats its precision so that sorting and filtering keep rows meaningful.
    for i, ((prec, method), cells) in enumerate(
        zip(t.frame.index, table_rows(t, "plain", with_deltas, repeat_precision=True))
    ):
        tds = []
        for j, (col, text) in enumerate(zip(cols, cells[2:])):
            value = mean[i, j]
            missing = value != value
            hint = (
                t.missing.get((prec, method, col))
                if missing
                else "runs: " + ", ".join(t.runs.get((prec, method, col), []))
            )
            content = f"<b>{h(text)}</b>" if mask[i, j] else h(text)
            sort = "" if missing else f"{value:.6g}"
            cls = ' class="missing"' if missing else ""
            tds.append(f'<td{cls} data-sort="{sort}" title="{h(hint or "")}">{content}</td>')
        proto = t.row_protocols.get((prec, method), "")
        body.append(f'<tr><td>{h(prec)}</td><td title="{h(proto)}">{h(method)}</td>{"".join(tds)}</tr>')
    foot = ""
    items = [f"[{m}] {r}" for m, r in notes] + footnotes(t)
    if items:
        foot = '\n<ul class="notes">' + "".join(f"<li>{h(x)}</li>" for x in items) + "</ul>"
    return (
        f'<table class="lb sortable" id="table-{h(t.key)}" data-family="{h(t.family)}" '
        f'data-source="{h(t.source)}">\n<caption>{h(title(t, with_deltas))}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>" + foot
    )
