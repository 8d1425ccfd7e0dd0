"""The HTML page's "Analyses" section: each stored ``bitscale analyze`` result with its numbers and figures.

Reads the analysis folders (``bitscale.analysis.store``; no torch). Figures are embedded as base64
PNG like the scaling plots; every string from a result file is escaped.
"""

from __future__ import annotations

from pathlib import Path

from bitscale.analysis.store import list_analyses
from bitscale.analysis.summary import summary_lines
from bitscale.leaderboard.escape import h
from bitscale.leaderboard.plots import data_uri

FIGURES = {
    "errors": "Fig. 2",
    "noise-tolerance": "Fig. 3a",
    "accumulation": "Fig. 3b",
    "activations": "Fig. 4",
    "channels": "Fig. 4 (per channel)",
}


def analyses_html(root: Path | None) -> str | None:
    """The section body, or None when there are no stored analyses (the page then leaves the section out)."""
    found = list_analyses(root) if root is not None else []
    if not found:
        return None
    parts = []
    for a in found:
        doc = a.result
        lines = summary_lines(doc)
        prov = doc.get("provenance", {})
        meta = (
            f"hash {a.hash}, weights {prov.get('weights') or 'n/a'}, versions "
            f"{', '.join(f'{k} {v}' for k, v in sorted(prov.get('versions', {}).items()))}, "
            f"git {prov.get('git_sha') or 'n/a'}, {prov.get('created', '')}"
        )
        figs = "".join(
            f'<figure><img alt="{h(FIGURES.get(p.stem, p.stem))} {h(doc["title"])}" '
            f'src="{data_uri(p.read_bytes())}"><figcaption>{h(FIGURES.get(p.stem, p.stem))}: '
            f"{h(doc['title'])}</figcaption></figure>"
            for p in a.figures(".png")
        )
        parts.append(
            f'<h3 id="analysis-{h(a.hash)}">{h(lines[0])}</h3><pre>{h(chr(10).join(lines[1:]))}</pre>'
            f"<p class=meta>{h(meta)}</p>{figs}"
        )
    return "\n".join(parts)
