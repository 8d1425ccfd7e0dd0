"""The gate's markdown summary: short enough for a CI job summary, precise enough to act on."""

from __future__ import annotations

import math

from bitscale.leaderboard.baseline import Baseline
from bitscale.leaderboard.escape import markdown_escape as md
from bitscale.leaderboard.gate import CellCheck, CheckResult

_SECTIONS = [
    ("regression", "Regressions", "worse than the threshold"),
    ("failed", "Failed cells", "the run failed; the traceback is in the store"),
    ("missing", "Missing cells", "in the baseline, not in the store"),
    ("new", "New cells", "in the store, not in the baseline: export a new baseline to gate them"),
    ("improvement", "Improvements", "better than the threshold: consider exporting a new baseline"),
]


def _num(v: float | None, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return format(v, fmt)


def _score_table(cells: list[CellCheck], sigma_label: str) -> list[str]:
    lines = [
        f"| cell | baseline | current | Δ | threshold ({sigma_label}) | z | seeds (baseline/now) | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        lines.append(
            f"| `{md(c.key)}` | {_num(c.baseline)} | {_num(c.current)} | {_num(c.delta, '+.3f')} | "
            f"{_num(c.threshold)} | {_num(c.z, '+.1f')} | {c.seeds_baseline}/{c.seeds_current} | "
            f"{md(c.note)} |"
        )
    return lines


def _note_table(cells: list[CellCheck]) -> list[str]:
    lines = ["| cell | baseline | current | note |", "|---|---:|---:|---|"]
    lines += [f"| `{md(c.key)}` | {_num(c.baseline)} | {_num(c.current)} | {md(c.note)} |" for c in cells]
    return lines


def summary_markdown(
    result: CheckResult,
    baseline: Baseline,
    baseline_path: str,
    store_url: str,
    threshold: float | None = None,
    max_rows: int = 50,
) -> str:
    """The whole report: verdict, counts, one section per non-empty outcome, the rest folded."""
    regressions, failed, missing = result.of("regression"), result.of("failed"), result.of("missing")
    if result.exit_code:
        parts = [f"{len(regressions)} regression{'s' * (len(regressions) != 1)}"] if regressions else []
        fatal = [c for c in failed if not c.known_failure]
        parts += [f"{len(fatal)} failed"] if fatal else []
        parts += [f"{len(missing)} missing (strict)"] if result.strict and missing else []
        if not result.compared:  # all missing, or all failed: a gate that compared nothing must not pass
            parts.append(f"nothing compared ({len(missing)} of {len(baseline.cells)} baseline cells missing)")
        verdict = f"❌ FAILED: {', '.join(parts)}"
    else:
        verdict = "✅ passed"
    if result.changed_artifacts:
        verdict += f" — shipped weights changed since the baseline: {', '.join(result.changed_artifacts)}"
    metric = result.metric.upper()
    rule = (
        f"worse by more than {threshold:g} {metric} (fixed --threshold)"
        if threshold is not None
        else f"worse by more than {result.sigma:g}σ, σ = pooled seed-to-seed std of the baseline × "
        "√(1/n_baseline + 1/n_now)"
    )
    lines = [
        f"## bitscale {metric} regression check: {verdict}",
        "",
        f"Baseline `{md(baseline_path)}` ({len(baseline.cells)} cells"
        f"{f', experiment {md(baseline.experiment)}' if baseline.experiment else ''}, exported "
        f"{md(baseline.created)}) against `{md(store_url)}`. A cell regresses when {rule}.",
        "",
    ]
    counts = result.counts
    lines += ["| outcome | cells |", "|---|---:|"]
    for status, title, _ in [*_SECTIONS, ("ok", "Unchanged", "")]:
        lines.append(f"| {title.lower()} | {counts.get(status, 0)} |")
    sigma_label = "fixed" if threshold is not None else f"{result.sigma:g}σ"
    for status, title, why in _SECTIONS:
        cells = result.of(status)
        if not cells:
            continue
        shown = sorted(cells, key=lambda c: -(c.z or 0.0) if status == "regression" else 0)[:max_rows]
        lines += ["", f"### {title} ({len(cells)}): {why}", ""]
        lines += _score_table(shown, sigma_label) if status in ("regression", "improvement") else _note_table(shown)
        if len(cells) > max_rows:
            lines.append(f"\n… and {len(cells) - max_rows} more (see --json).")
    unchanged = result.of("ok")
    if unchanged:
        lines += ["", f"<details><summary>Unchanged cells ({len(unchanged)})</summary>", ""]
        lines += _score_table(unchanged[: max_rows * 4], sigma_label)
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
