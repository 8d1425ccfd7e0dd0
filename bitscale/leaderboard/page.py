"""The static HTML leaderboard: one self-contained file, no server, no network.

Tables (Table-2 layout, measured and published side by side per family), scaling-law fits,
Pareto fronts and budget answers, plots embedded as base64 PNG, protocol details, and every
run with its provenance (cell hash, versions, git sha, date, hardware). A little inline
script sorts (click a header) and filters (type in the box above a table).

Safety: every string that came from a plugin, a config or the store is HTML-escaped, and a
Content-Security-Policy allows only this page's own script (by hash), inline styles and
``data:`` images, so even a missed escape could not load or run anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from bitscale.leaderboard.escape import h
from bitscale.leaderboard.html_tables import html_table
from bitscale.leaderboard.metrics import direction_words, display_name
from bitscale.leaderboard.plots import Plot, data_uri
from bitscale.leaderboard.report import Report

RUN_COLUMNS = [
    "source",
    "family",
    "size",
    "method_label",
    "precision",
    "seed",
    "status",
    "value",
    "mt",
    "ct",
    "effective_weight_bits",
    "protocol_key",
    "cell_hash",
    "experiment",
    "versions",
    "git_sha",
    "finished_at",
    "device",
    "host",
    "error_line",
]
RUN_HEADERS = [
    "source",
    "family",
    "size",
    "method",
    "precision",
    "seed",
    "status",
    "FID",
    "MT",
    "CT",
    "eff. w bits",
    "protocol",
    "cell hash",
    "experiment",
    "versions",
    "git sha",
    "finished",
    "hardware",
    "host",
    "error",
]

SCRIPT = """
(function () {
  function key(td) {
    var s = td.getAttribute('data-sort');
    if (s === null) s = td.textContent.trim();
    var n = parseFloat(s);
    return (s !== '' && isFinite(n) && /^[-+0-9.eE]+$/.test(s)) ? {n: n} : {s: s.toLowerCase()};
  }
  function cmp(a, b) {
    if (a.n !== undefined && b.n !== undefined) return a.n - b.n;
    if (a.n !== undefined) return -1;
    if (b.n !== undefined) return 1;
    return a.s < b.s ? -1 : (a.s > b.s ? 1 : 0);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var dir = th.getAttribute('data-dir') === 'asc' ? -1 : 1;
        table.querySelectorAll('thead th').forEach(function (o) { o.removeAttribute('data-dir'); });
        th.setAttribute('data-dir', dir === 1 ? 'asc' : 'desc');
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) { return dir * cmp(key(r1.cells[col]), key(r2.cells[col])); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll('input.filter').forEach(function (box) {
    box.addEventListener('input', function () {
      var q = box.value.toLowerCase();
      var table = document.getElementById(box.getAttribute('data-table'));
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  });
  window.addEventListener('load', function () {
    var shown = Array.prototype.filter.call(document.images, function (i) {
      return i.complete && i.naturalWidth > 0;
    }).length;
    document.body.setAttribute('data-images-loaded', String(shown));
    document.body.setAttribute('data-tables', String(document.querySelectorAll('table.lb').length));
    document.body.setAttribute('data-ready', '1');
  });
})();
"""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;
  padding:0 1.2em;color:#1b1b1b}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:1px solid #ddd} .meta{color:#555}
nav a{margin-right:1em} .family{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.family>div{flex:0 1 auto;max-width:36em} .family caption{white-space:normal}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:13px} caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right;white-space:nowrap}
th{background:#f4f4f4;cursor:pointer}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left} td.missing{color:#999}
th[data-dir=asc]::after{content:" \\25B2"} th[data-dir=desc]::after{content:" \\25BC"}
input.filter{margin:.2em 0;padding:.2em .4em;width:18em} .scroll{overflow-x:auto;max-height:40em;overflow-y:auto}
figure{display:inline-block;margin:.5em 1em .5em 0} figure img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto} ul.notes{font-size:12px;color:#555;margin-top:-.6em}
.tag{font-size:11px;background:#eef;padding:0 .4em;border-radius:3px}
"""


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.3e}" if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3) else f"{v:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _float_text(v: float) -> str:
    if v != v:
        return ""
    return f"{v:.3e}" if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3) else f"{v:.4g}"


def _column_cells(col: pd.Series) -> list[str]:
    """``<td>`` strings for one column; numeric columns get a ``data-sort`` value and need no escaping."""
    if pd.api.types.is_bool_dtype(col):
        return [f"<td>{'yes' if v else 'no'}</td>" for v in col]
    if pd.api.types.is_float_dtype(col):
        return [f'<td data-sort="{v:.6g}">{_float_text(v)}</td>' if v == v else "<td></td>" for v in col]
    if pd.api.types.is_integer_dtype(col):
        return [f'<td data-sort="{v}">{v}</td>' for v in col]
    return [f"<td>{h(_fmt(v))}</td>" for v in col]


def frame_table(df: pd.DataFrame, table_id: str, caption: str, headers: list[str] | None = None) -> str:
    """Any DataFrame as a sortable, filterable, escaped HTML table."""
    if df is None or df.empty:
        return f"<p class=meta>{h(caption)}: nothing to show.</p>"
    heads = headers or [str(c) for c in df.columns]
    # Column by column: the runs table of a large store has hundreds of thousands of cells.
    columns = [_column_cells(df.iloc[:, i]) for i in range(df.shape[1])]
    rows = ["<tr>" + "".join(cells) + "</tr>" for cells in zip(*columns)]
    return (
        f'<input class="filter" type="search" placeholder="filter rows" data-table="{h(table_id)}">'
        f'<div class="scroll"><table class="sortable" id="{h(table_id)}"><caption>{h(caption)}</caption>'
        f"<thead><tr>{''.join(f'<th>{h(c)}</th>' for c in heads)}</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def _leaderboard_section(report: Report, with_deltas: bool | str) -> str:
    out = []
    for family in sorted({t.family for t in report.tables}):
        tables = [t for t in report.tables if t.family == family]
        # measured first, then the published tables beside them
        tables.sort(key=lambda t: (t.source != "measured", t.title_note, t.protocol or ""))
        blocks = []
        for t in tables:
            tid = f"table-{t.key}"
            blocks.append(
                f'<div><input class="filter" type="search" placeholder="filter rows" data-table="{h(tid)}">'
                f"{html_table(t, with_deltas)}{_protocol_tag(t)}</div>"
            )
        out.append(f"<h3>{h(family)}</h3><div class=family>{''.join(blocks)}</div>")
    return "\n".join(out) or "<p>No finished runs.</p>"


def _protocol_tag(t) -> str:
    if not t.protocol_details:
        return ""
    brief = {
        k: t.protocol_details.get(k) for k in ("dataset", "feature_extractor", "num_samples") if k in t.protocol_details
    }
    return f'<p class=meta>protocol <a href="#protocol-{h(t.protocol)}">{h(t.protocol[:8])}</a>: {h(_fmt(brief))}</p>'


def _fits_section(report: Report) -> str:
    parts = []
    for axis, fits in report.fits.items():
        df = pd.DataFrame([f.as_row() for f in fits])
        if not df.empty:
            df["protocol"] = df["protocol"].str[:8]
        parts.append(
            frame_table(
                df, f"fits-{axis}", f"FID = k · bits^(−α) per precision, bits = {axis} (95% CI; source never mixed)"
            )
        )
    biv = report.bivariate.copy()
    if not biv.empty:
        biv["protocol"] = biv["protocol"].str[:8]
    parts.append(
        frame_table(
            biv,
            "bivariate",
            "Bivariate fit FID = k · N^(−a) · P^(−c) per method "
            "(P = bits per parameter of the axis; W16A16 cells included)",
        )
    )
    sh = report.shifts.copy()
    if not sh.empty:
        sh["protocol"] = sh["protocol"].str[:8]
    parts.append(
        frame_table(
            sh,
            "shifts",
            "Shift against the W16A16 curve at equal bits (negative = down-left = better bit-level scaling)",
        )
    )
    return "\n".join(parts)


def _fig1_section(report: Report) -> str:
    """The paper's Fig. 1 readings per family: equal bits beside equal size, and budgets."""
    if report.fig1 is None:
        return "<p>Not computed.</p>"
    parts = [
        "<p class=meta>Below-left of W16A16 at equal total model (MT) or compute (CT) bits is the paper's "
        "claim for language-style models; the change at equal size beside it says how much of that shift is "
        "only the bits divided by 16/w. Intervals are 95%; a reading whose interval spans zero is "
        '"not resolved".</p>'
    ]
    for name, df, caption in (
        ("fig1", report.fig1, "Quantized vs W16A16: equal bits and equal size"),
        ("fig1-budgets", report.fig1_budgets, "Best measured cell within each budget"),
    ):
        df = df.copy() if df is not None else None
        if df is not None and not df.empty:
            df["protocol"] = df["protocol"].str[:8]
        parts.append(frame_table(df, name, caption))
    return "\n".join(parts)


def _paired_section(report: Report) -> str:
    """Each quantized cell against its own W16A16 twin (same seeds, same noise): ΔFID with its CI."""
    from bitscale.leaderboard.paired import paired_table

    df = paired_table(report.results.runs)
    if df.empty:
        return (
            "<p>No paired metrics: they are recorded by protocol version 3 and later, for quantized cells "
            "whose W16A16 twin ran under the same protocol.</p>"
        )
    intro = (
        "<p class=meta>ΔFID = the cell's FID minus its W16A16 twin's, on the same seeds and the same sampling "
        "noise, so the two share most of their sampling error; the 95% interval covers samples and seeds. "
        "<code>fp_distance</code> is the mean feature distance of each image to its twin, relative to "
        "unrelated samples of the same class (0: the same images, about 1: unrelated ones). This is the precise comparison of one cell with full precision; two independent FIDs are "
        "several times noisier.</p>"
    )
    return intro + frame_table(df, "paired", "Paired ΔFID vs W16A16")


def _budget_section(report: Report) -> str:
    parts = []
    for axis, front in report.fronts.items():
        parts.append(frame_table(front, f"pareto-{axis}", f"Pareto front: FID vs {axis}"))
    for i, ans in enumerate(report.budgets):
        parts.append(
            frame_table(
                ans.best, f"budget-{i}", f"Best (size, precision) per method within {ans.budget.label} (measured cells)"
            )
        )
        for j, opt in enumerate(ans.optimal):
            parts.append(frame_table(opt, f"optimal-{i}-{j}", "Optimal precision at the budget from the fits"))
    return "\n".join(parts)


def _plots_section(plots: list[tuple[Plot, bytes]]) -> str:
    if not plots:
        return "<p>No plots (fewer than two sizes per line?).</p>"
    figs = []
    for plot, png in plots:
        figs.append(
            f'<figure id="plot-{h(plot.stem)}"><img alt="{h(plot.title)}" src="{data_uri(png)}">'
            f"<figcaption>{h(plot.title)}</figcaption></figure>"
        )
    return "\n".join(figs)


def _protocols_section(report: Report) -> str:
    items = []
    for key, details in sorted(report.results.comparable.items()):
        text = json.dumps(details, indent=2, default=str)
        items.append(f'<h4 id="protocol-{h(key)}">{h(key)}</h4><pre>{h(text)}</pre>')
    return "\n".join(items) or "<p>No protocols recorded.</p>"


def _runs_section(report: Report) -> str:
    runs = report.results.runs
    if runs.empty:
        return "<p>No runs.</p>"
    df = runs.reindex(columns=RUN_COLUMNS).sort_values(
        ["source", "family", "size", "method_label", "precision", "seed"], kind="stable"
    )
    headers = [display_name(report.results.metric) if c == "FID" else c for c in RUN_HEADERS]
    return frame_table(df, "runs", f"Every run ({len(df)}), with provenance", headers)


def render_page(
    report: Report,
    plots: list[tuple[Plot, bytes]],
    with_deltas: bool | str = False,
    title: str = "bitscale leaderboard",
    analyses: str | None = None,
) -> str:
    """The complete HTML document; ``analyses`` is the body of the analyses section (left out when None)."""
    import bitscale

    runs = report.results.runs
    counts = runs.groupby(["source", "status"]).size().to_dict() if not runs.empty else {}
    summary = ", ".join(f"{n} {src} {st}" for (src, st), n in sorted(counts.items())) or "no runs"
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("leaderboard", "Leaderboard", _leaderboard_section(report, with_deltas)),
        ("plots", "Scaling-law plots", _plots_section(plots)),
        ("fits", "Scaling-law fits", _fits_section(report)),
        ("fig1", "Fig. 1: does quantization pay at equal bits?", _fig1_section(report)),
        ("paired", "Paired ΔFID vs full precision", _paired_section(report)),
        ("budgets", "Budgets and Pareto fronts", _budget_section(report)),
        ("protocols", "Protocols", _protocols_section(report)),
        ("runs", "Runs and provenance", _runs_section(report)),
    ]
    if analyses is not None:
        after = [sid for sid, _, _ in sections].index("budgets") + 1
        sections.insert(after, ("analyses", "Analyses (Fig. 2-4)", analyses))
    nav = "".join(f'<a href="#{sid}">{h(name)}</a>' for sid, name, _ in sections)
    body = "\n".join(f'<h2 id="{sid}">{h(name)}</h2>\n{html}' for sid, name, html in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{h(_csp(SCRIPT))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{h(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{h(title)}</h1>
<p class=meta>Generated {h(now)} by bitscale {h(bitscale.__version__)} from {h(report.results.store_url)}: {h(summary)}.
{h(display_name(report.results.metric))}, {h(direction_words(report.results.metric))}.
Published rows (<span class=tag>paper</span>) are shown beside measured ones and never share a column
or a fitted curve with them; scores of different protocols never share a column.</p>
<nav>{nav}</nav>
{body}
<script>{SCRIPT}</script>
</body></html>
"""
