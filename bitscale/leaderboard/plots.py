"""Scaling-law plots (matplotlib, Agg, no pyplot state): like the paper's Fig. 1, 5, 6 and 7.

* ``scaling``: per (source, family, protocol) and per bits axis (total model bits, total
  compute bits), one panel per method, log-log, one line per precision (W16A16 in black as
  the reference), seed std as error bars, the fitted power law dashed.
* ``methods``: per (source, family, protocol, precision), FID vs total model bits, one line
  per method, the W16A16 reference in black.
* ``pareto``: every cell against MT and CT with the Pareto front drawn.

Published and measured rows are separate figures (``source`` is part of every key).
"""

from __future__ import annotations

import base64
import gc
import io
import multiprocessing
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bitscale.leaderboard.budget import axis_column, pareto
from bitscale.leaderboard.fit import PowerLawFit
from bitscale.leaderboard.metrics import display_name
from bitscale.leaderboard.results import cell_stats, parse_precision
from bitscale.leaderboard.table import precision_order

FORMATS = ("png", "svg")
GROUP = ["source", "family", "protocol_key"]
_AXIS_WORD = {"mt": "model", "ct": "compute"}
_RC = {"axes.grid": True, "axes.grid.which": "major", "grid.linewidth": 0.3, "grid.alpha": 0.5}
_PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
]


def _text(s: object) -> str:
    # matplotlib parses "$...$" as math: a plugin name with a dollar sign must stay literal.
    return str(s).replace("$", r"\$")


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", "-".join(str(p) for p in parts if p)).strip("_")[:120]


@dataclass
class Plot:
    """One figure, its kind and file stem; ``figure`` is built lazily by ``draw()``."""

    kind: str  # scaling | methods | pareto
    stem: str
    title: str
    source: str
    family: str
    protocol: str
    axis: str | None = None  # scaling grids: "mt" or "ct"
    methods: tuple[str, ...] = ()  # scaling grids: one panel per method
    precision: str | None = None


def _colors(labels: list[str]) -> dict[str, str]:
    return {
        lab: ("black" if lab in ("W16A16", "fp16") else _PALETTE[i % len(_PALETTE)])
        for i, lab in enumerate(sorted(labels, key=lambda s: precision_order(s) if _is_prec(s) else (1, s)))
    }


#: Marker per line (by precision order); weight-activation precisions get hollow markers on a
#: dotted line, so W8A8 never looks like W8A16 even where the two lines coincide.
_MARKERS = ["o", "^", "v", "D", "P", "X", "*", "<", ">", "h"]
#: Two lines coincide (to the eye, on a log axis) when every point agrees within this relative difference ...
COINCIDENT_RTOL = 0.03
#: ... and the later one is then drawn this factor to the right (a few percent of a decade).
COINCIDENT_SHIFT = 1.04


def _markers(precisions: list[str]) -> dict[str, str]:
    ordered = sorted((p for p in precisions if _is_prec(p)), key=precision_order)
    return {p: _MARKERS[i % len(_MARKERS)] for i, p in enumerate(ordered)}


def _style(precision: str, markers: dict[str, str]) -> dict:
    weight_only = parse_precision(precision).weight_only if _is_prec(precision) else True
    return {"marker": markers.get(precision, "o"), "linestyle": "-" if weight_only else ":", "hollow": not weight_only}


def _is_prec(s: str) -> bool:
    try:
        parse_precision(s)
        return True
    except ValueError:
        return False


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_label(value: float, _pos: object = None) -> str:
    """``10⁹`` for exact powers of ten, ``3×10⁹`` otherwise (no mathtext)."""
    if value <= 0:
        return ""
    exp = int(np.floor(np.log10(value) + 1e-9))
    mant = value / 10**exp
    head = "" if abs(mant - 1) < 1e-6 else f"{mant:.2g}×"
    return f"{head}10{str(exp).translate(_SUPERSCRIPT)}"


def _plain_label(value: float, _pos: object = None) -> str:
    return f"{value:g}" if 1e-3 <= abs(value) < 1e5 else _power_label(value)


def _comparison_precisions(quantized: pd.DataFrame, wanted: list[str] | None) -> list[str]:
    counts = quantized.groupby("precision")["method_label"].nunique()
    if counts.empty:
        return []
    if wanted and "all" in wanted:
        return sorted(counts.index, key=precision_order)
    if wanted:
        return [p for p in sorted(counts.index, key=precision_order) if p in wanted]
    # the precision most methods ran at (on ties the lowest bits), plus wherever a
    # single-precision method lives, so that every method is drawn somewhere
    chosen = {max(counts.index, key=lambda p: (counts[p], precision_order(p)))}
    per_method = quantized.groupby("method_label")["precision"].unique()
    chosen |= {precs[0] for precs in per_method if len(precs) == 1}
    return sorted(chosen, key=precision_order)


class PlotSet:
    """All plots of a prepared results frame, sharing one aggregation and one set of fits."""

    def __init__(
        self,
        runs: pd.DataFrame,
        fits: dict[str, list[PowerLawFit]] | None = None,
        effective: bool = False,
        metric: str = "fid",
    ) -> None:
        self.metric = metric
        self._drawn: dict[object, list[tuple]] = {}
        self._notes: dict[str, float] = {}
        self.cells = cell_stats(runs)
        self.fits = fits or {}
        self.effective = effective
        self._pareto = {axis: pareto(runs, axis, effective, metric) for axis in ("mt", "ct")} if len(self.cells) else {}
        self._plots: list[Plot] = []
        self._extents: dict[int, list[float]] = {}
        self._errors: dict[object, list[tuple]] = {}
        self._groups = {k: g for k, g in self.cells.groupby(GROUP, sort=False)} if len(self.cells) else {}
        self._multi_protocol = (
            (self.cells.groupby(["source", "family"])["protocol_key"].nunique() > 1).to_dict()
            if len(self.cells)
            else {}
        )

    def _fit_index(self, axis: str) -> dict[tuple, PowerLawFit]:
        return {
            (f.source, f.family, f.protocol, f.method, f.precision): f
            for f in self.fits.get(axis_column(axis, self.effective), [])
        }

    def plots(self, precisions: list[str] | None = None) -> Iterator[Plot]:
        """Every figure this data supports.

        ``precisions`` picks the method comparisons: None = the precision most methods were run
        at (the lowest such on ties) plus those of single-precision methods; ``["all"]`` = every
        precision. Scaling figures are drawn for methods with at least two precisions.
        """
        if self.cells.empty:
            return
        for (source, family, protocol), grp in self.cells.groupby(GROUP, sort=True):
            tag = protocol[:8] if self._multi_protocol.get((source, family)) else ""
            src = "paper" if source == "paper" else ""
            quantized = grp[grp["method_label"] != "fp16"]
            precs_per_method = quantized.groupby("method_label")["precision"].nunique()
            # a method run at one precision only (an ablation) is drawn in that precision's
            # method comparison instead of a one-line scaling figure
            methods = tuple(sorted(precs_per_method.index[precs_per_method >= 2]))
            for axis in ("mt", "ct") if methods else ():
                yield Plot(
                    "scaling",
                    _slug("scaling", family, src, tag, axis),
                    f"{family}{' (paper)' if src else ''}: FID vs total {_AXIS_WORD[axis]} bits, "
                    "one line per precision",
                    source,
                    family,
                    protocol,
                    axis=axis,
                    methods=methods,
                )
            for prec in _comparison_precisions(quantized, precisions):
                yield Plot(
                    "methods",
                    _slug("methods", family, src, tag, prec),
                    f"{family}{' (paper)' if src else ''}: methods at {prec}",
                    source,
                    family,
                    protocol,
                    precision=prec,
                )
            yield Plot(
                "pareto",
                _slug("pareto", family, src, tag),
                f"{family}{' (paper)' if src else ''}: Pareto view",
                source,
                family,
                protocol,
            )

    # ------------------------------------------------------------------ drawing

    def draw(self, plot: Plot):
        """A matplotlib ``Figure`` for ``plot`` (Agg canvas attached)."""
        import matplotlib

        # Grid lines set when the axes are made: calling ax.grid() afterwards re-styles every
        # tick of every axes, which was a sizeable part of the drawing time.
        self._extents, self._errors = {}, {}  # per figure: ids of freed axes get reused
        self._drawn, self._notes = {}, {}
        with matplotlib.rc_context(_RC):
            fig = self._draw(plot)
            self._coincidence_note(fig)
        for ax, segments in self._errors.items():
            if segments:
                xs, lo, hi, colors = zip(*segments)
                ax.vlines(xs, lo, hi, colors=colors, lw=0.8)  # every error bar of an axes at once
        self._errors = {}
        return fig

    def _coincidence_note(self, fig) -> None:
        """A line under the figure naming every pair of lines drawn apart because they coincide."""
        if not self._notes:
            return
        text = "; ".join(
            f"{what} (within {COINCIDENT_RTOL:.0%}; drawn ×{shift:.3g} to the right)"
            for what, shift in self._notes.items()
        )
        text += "; solid/filled: weight-only, dotted/hollow: weight-activation"
        # Make room under everything: the figure grows by one text line and every artist placed in
        # figure fractions (axes, x label, legend) keeps its distance from the top.
        h, extra = fig.get_figheight(), 0.22
        grow = h / (h + extra)
        fig.set_figheight(h + extra)
        sp = fig.subplotpars
        fig.subplots_adjust(bottom=1 - (1 - sp.bottom) * grow, top=1 - (1 - sp.top) * grow)
        label = getattr(fig, "_supxlabel", None)
        if label is not None:
            label.set_y(1 - (1 - label.get_position()[1]) * grow)
        for legend in fig.legends:
            anchor = legend.get_bbox_to_anchor().transformed(fig.transFigure.inverted())
            legend.set_bbox_to_anchor((anchor.x0, 1 - (1 - anchor.y0) * grow), transform=fig.transFigure)
        fig.text(
            0.01,
            0.01,
            _text("note: " + text),
            fontsize=6.5,
            ha="left",
            va="bottom",
            color="#444",
            gid="coincidence-note",
            wrap=True,
        )

    def _draw(self, plot: Plot):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        sel = self._groups.get((plot.source, plot.family, plot.protocol), self.cells.iloc[:0])
        if plot.kind == "scaling":
            # One panel per method sharing both axes (like the paper's Fig. 5): inner tick
            # labels and all but one legend disappear, and text is most of the drawing time.
            ncols = min(3, len(plot.methods))
            nrows = -(-len(plot.methods) // ncols)
            # At least 6 inches wide: the title and a legend of six precisions must fit one panel.
            fig = Figure(figsize=(max(6.0, 0.6 + 3.2 * ncols), 1.1 + 2.5 * nrows))
            FigureCanvasAgg(fig)
            axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
            fig.subplots_adjust(
                left=0.5 / fig.get_figwidth() + 0.04,
                right=0.98,
                bottom=0.55 / fig.get_figheight(),
                top=1 - 0.75 / fig.get_figheight(),
                wspace=0.06,
                hspace=0.22,
            )
            self._scaling(fig, axes, sel, plot)
        else:
            ncols = 1 if plot.kind == "methods" else 2
            fig = Figure(figsize=(4.8 * ncols, 3.6))
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, ncols, squeeze=False)[0]
            # Fixed margins: constrained layout measures every tick label and doubles the cost.
            fig.subplots_adjust(left=0.1 / ncols + 0.03, right=0.98, bottom=0.14, top=0.88, wspace=0.25)
            if plot.kind == "methods":
                self._methods(axes[0], sel, plot)
            else:
                self._pareto_axes(axes, plot)
        fig.suptitle(_text(plot.title), fontsize=10)
        return fig

    def _line(
        self,
        ax,
        pts: pd.DataFrame,
        col: str,
        label: str,
        color: str,
        fit: PowerLawFit | None,
        marker: str = "o",
        linestyle: str = "-",
        hollow: bool = False,
    ) -> None:
        x = pts[col].to_numpy(float)
        order = np.argsort(x)
        x, y = x[order], pts["mean"].to_numpy(float)[order]
        err = np.nan_to_num(pts["std"].to_numpy(float)[order])
        # Lines that coincide with one already drawn (W8A8 on W8A16 at equal MT when A8 costs
        # nothing) would vanish under it: shift them right by a few percent and say so.
        shift = self._coincidence(ax, label, x, y)
        x = x * shift
        self._extend(ax, x, y)
        ax.plot(
            x,
            y,
            marker=marker,
            linestyle=linestyle,
            ms=4.5,
            lw=1.2,
            color=color,
            label=_text(label),
            markerfacecolor="none" if hollow else color,
            markeredgewidth=1.1,
        )
        # seed std as vertical bars, drawn per axes in one collection by draw()
        self._errors.setdefault(ax, []).extend((xi, yi - e, yi + e, color) for xi, yi, e in zip(x, y, err) if e > 0)
        if fit is not None:
            xs = np.geomspace(x.min(), x.max(), 20)
            ax.plot(xs, fit.predict(xs / shift), "--", lw=0.9, color=color, alpha=0.8)

    def _coincidence(self, ax, label: str, x: np.ndarray, y: np.ndarray) -> float:
        """The horizontal factor to draw a line at: 1, or a shift when it hides under earlier lines."""
        drawn = self._drawn.setdefault(ax, [])
        twins = [
            lab
            for lab, x0, y0 in drawn
            if len(x0) == len(x) and np.allclose(x0, x, rtol=1e-9) and np.allclose(y0, y, rtol=COINCIDENT_RTOL)
        ]
        drawn.append((label, x, y))
        if not twins:
            return 1.0
        shift = COINCIDENT_SHIFT ** len(twins)
        self._notes.setdefault(f"{label} coincides with {', '.join(twins)}", shift)
        return shift

    def _scaling(self, fig, axes, sel: pd.DataFrame, plot: Plot) -> None:
        ref = sel[sel["method_label"] == "fp16"]
        quantized = sel[sel["method_label"].isin(plot.methods)]
        colors = _colors([*quantized["precision"].unique(), "W16A16"])  # one colour per precision in every panel
        markers = _markers(list(quantized["precision"].unique()))
        col = axis_column(plot.axis, self.effective)
        fits = self._fit_index(plot.axis)
        flat = list(axes.flat)
        for ax, method in zip(flat, plot.methods):
            if len(ref):
                f = fits.get((plot.source, plot.family, plot.protocol, "fp16", ref["precision"].iloc[0]))
                self._line(ax, ref, col, "W16A16", "black", f, marker="s")
            mine = quantized[quantized["method_label"] == method]
            for prec in sorted(mine["precision"].unique(), key=precision_order):
                f = fits.get((plot.source, plot.family, plot.protocol, method, prec))
                self._line(ax, mine[mine["precision"] == prec], col, prec, colors[prec], f, **_style(prec, markers))
            ax.set_title(_text(method), fontsize=9)
        self._limits(flat[: len(plot.methods)])
        for ax in flat[len(plot.methods) :]:
            ax.set_visible(False)
        handles = {}
        for ax in flat[: len(plot.methods)]:
            for hnd, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, hnd)
        order = sorted(handles, key=precision_order)
        fig.legend(
            [handles[k] for k in order],
            order,
            fontsize=7,
            frameon=False,
            ncol=len(order),
            loc="upper center",
            bbox_to_anchor=(0.5, 1 - 0.3 / fig.get_figheight()),
        )
        eff = "effective " if self.effective else ""
        fig.supxlabel(
            f"{eff}total {_AXIS_WORD[plot.axis]} bits ({'N·w' if plot.axis == 'mt' else 'N·w·a'})", fontsize=9
        )
        fig.supylabel(f"{display_name(self.metric)} (dashed: fitted power law)", fontsize=9)

    def _methods(self, ax, sel: pd.DataFrame, plot: Plot) -> None:
        col = axis_column("mt", self.effective)
        fits = self._fit_index("mt")
        ref = sel[sel["method_label"] == "fp16"]
        if len(ref):
            f = fits.get((plot.source, plot.family, plot.protocol, "fp16", ref["precision"].iloc[0]))
            self._line(ax, ref, col, "W16A16 (fp16)", "black", f, marker="s")
        at = sel[(sel["precision"] == plot.precision) & (sel["method_label"] != "fp16")]
        methods = sorted(at["method_label"].unique())
        for i, m in enumerate(methods):
            f = fits.get((plot.source, plot.family, plot.protocol, m, plot.precision))
            self._line(
                ax,
                at[at["method_label"] == m],
                col,
                m,
                _PALETTE[i % len(_PALETTE)],
                f,
                marker=_MARKERS[i % len(_MARKERS)],
            )
        self._axes(ax, "mt")

    def _pareto_axes(self, axes, plot: Plot) -> None:
        for ax, axis in zip(axes, ("mt", "ct")):
            p = self._pareto.get(axis)
            if p is None or p.empty:
                continue
            p = p[(p["source"] == plot.source) & (p["family"] == plot.family) & (p["protocol_key"] == plot.protocol)]
            precs = sorted(p["precision"].unique(), key=precision_order)
            colors = _colors(precs)
            for prec in precs:
                q = p[p["precision"] == prec]
                ax.scatter(q["bits"], q["mean"], s=14, color=colors[prec], label=_text(prec), alpha=0.75)
                self._extend(ax, q["bits"].to_numpy(float), q["mean"].to_numpy(float))
            front = p[p["on_front"]].sort_values("bits")
            ax.step(front["bits"], front["mean"], where="post", color="black", lw=1.0, label="Pareto front")
            self._axes(ax, axis, legend=axis == "mt")

    def _extend(self, ax, x: np.ndarray, y: np.ndarray) -> None:
        ext = self._extents.setdefault(id(ax), [np.inf, -np.inf, np.inf, -np.inf])
        x, y = x[x > 0], y[y > 0]
        if len(x) and len(y):
            ext[:] = [min(ext[0], x.min()), max(ext[1], x.max()), min(ext[2], y.min()), max(ext[3], y.max())]

    def _limits(self, axes: list) -> None:
        """Fixed log limits and tick positions from the plotted data.

        matplotlib's log locators propose many candidate ticks and each becomes several
        artists; with autoscaling that was most of the drawing time. Shared axes get the union.
        """
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        exts = [self._extents.get(id(ax)) for ax in axes]
        exts = [e for e in exts if e is not None and np.isfinite(e).all()]
        if not exts:
            return
        x0, x1 = min(e[0] for e in exts), max(e[1] for e in exts)
        y0, y1 = min(e[2] for e in exts), max(e[3] for e in exts)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(*_padded(x0, x1))
            ax.set_ylim(*_padded(y0, y1))
            ax.xaxis.set_major_locator(FixedLocator(_log_ticks(*_padded(x0, x1), (1.0,))))
            ax.yaxis.set_major_locator(FixedLocator(_log_ticks(*_padded(y0, y1), (1.0, 2.0, 3.0, 5.0))))
            # Plain-text labels: the default log labels go through mathtext, which is slow.
            ax.xaxis.set_major_formatter(FuncFormatter(_power_label))
            ax.yaxis.set_major_formatter(FuncFormatter(_plain_label))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())

    def _axes(self, ax, axis: str, legend: bool = True, labels: bool = True) -> None:
        self._limits([ax])
        if labels:
            eff = "effective " if self.effective else ""
            ax.set_xlabel(f"{eff}total {_AXIS_WORD[axis]} bits ({'N·w' if axis == 'mt' else 'N·w·a'})")
            ax.set_ylabel(display_name(self.metric))
        if legend and ax.get_legend_handles_labels()[0]:  # once per figure: text is the slow part
            ax.legend(fontsize=7, frameon=False)


def _padded(lo: float, hi: float, pad: float = 0.06) -> tuple[float, float]:
    a, b = np.log10(lo), np.log10(hi)
    span = max(b - a, 0.05)
    return 10 ** (a - pad * span), 10 ** (b + pad * span)


def _log_ticks(lo: float, hi: float, subs: tuple[float, ...]) -> list[float]:
    """Ticks ``sub x 10^k`` inside [lo, hi]: at most 6, at least the range ends' decade."""
    ticks = [
        m * 10.0**k
        for k in range(int(np.floor(np.log10(lo))), int(np.floor(np.log10(hi))) + 1)
        for m in subs
        if lo <= m * 10.0**k <= hi
    ]
    while len(ticks) > 6:
        ticks = ticks[::2]
    if len(ticks) < 2:  # less than a decade with no round value: label the ends
        ticks = sorted({*ticks, float(f"{lo * 1.02:.2g}"), float(f"{hi / 1.02:.2g}")})
    return ticks


# --------------------------------------------------------------------------- output


def figure_bytes(fig, fmt: str, dpi: int = 80) -> bytes:
    """Encode ``fig`` as PNG or SVG bytes (SVG keeps text as text: smaller and faster)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "bitscale"}):
        if fmt == "png":  # zlib level 1: a third of the encoding time, files ~20% larger
            fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
        else:
            fig.savefig(buf, format=fmt, dpi=dpi, metadata={"Date": None})
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for embedding a PNG in the HTML page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_WORKER_SET: PlotSet | None = None


def _render_one(args: tuple[int, tuple[str, ...]]) -> dict[str, bytes]:
    index, formats = args
    assert _WORKER_SET is not None
    plot = _WORKER_SET._plots[index]
    fig = _WORKER_SET.draw(plot)
    return {fmt: figure_bytes(fig, fmt) for fmt in formats}


def _warm_up(formats: tuple[str, ...]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([1, 2], [1, 2], "o-", label="W4A16 0123456789")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    ax.set_title("warm-up")
    for fmt in formats:
        figure_bytes(fig, fmt)


def default_jobs() -> int:
    """Worker processes for drawing: the CPUs this process may use, at most 4."""
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(4, os.cpu_count() or 1))


def render_plots(
    plot_set: PlotSet,
    formats: tuple[str, ...] = FORMATS,
    precisions: list[str] | None = None,
    kinds: tuple[str, ...] = ("scaling", "methods", "pareto"),
    jobs: int | None = None,
) -> list[tuple[Plot, dict[str, bytes]]]:
    """Draw every plot once and encode it in each of ``formats``, over ``jobs`` processes.

    Figures are independent and matplotlib is single-threaded, so forked workers scale with
    cores; where fork is unavailable, or for a handful of figures, drawing stays in-process.
    """
    global _WORKER_SET
    # Import matplotlib and load its font cache once, before forking, not once per worker.
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.font_manager  # noqa: F401
    import matplotlib.ticker  # noqa: F401

    plots = [p for p in plot_set.plots(precisions) if p.kind in kinds]
    plot_set._plots = plots
    jobs = default_jobs() if jobs is None else max(1, jobs)
    if jobs > 1 and len(plots) > 2 and "fork" in multiprocessing.get_all_start_methods():
        _warm_up(formats)  # fonts and glyph caches loaded once here are shared by every worker
        _WORKER_SET = plot_set
        gc.freeze()  # keep the parent's objects out of the workers' collections: fewer copied pages
        try:
            with multiprocessing.get_context("fork").Pool(min(jobs, len(plots))) as pool:
                encoded = pool.map(_render_one, [(i, formats) for i in range(len(plots))], chunksize=1)
        finally:
            gc.unfreeze()
            _WORKER_SET = None
    else:
        _WORKER_SET = plot_set
        try:
            encoded = [_render_one((i, formats)) for i in range(len(plots))]
        finally:
            _WORKER_SET = None
    return list(zip(plots, encoded))


def write_plots(
    plot_set: PlotSet,
    out_dir: str | Path,
    formats: tuple[str, ...] = FORMATS,
    precisions: list[str] | None = None,
    kinds: tuple[str, ...] = ("scaling", "methods", "pareto"),
    jobs: int | None = None,
) -> list[Path]:
    """Write every plot in each of ``formats`` under ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for plot, encoded in render_plots(plot_set, formats, precisions, kinds, jobs):
        for fmt, data in encoded.items():
            path = out / f"{plot.stem}.{fmt}"
            path.write_bytes(data)
            written.append(path)
    return written
