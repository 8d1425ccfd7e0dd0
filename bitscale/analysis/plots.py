"""The analyses' figures (matplotlib, Agg, no pyplot state), written as PNG and SVG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("png", "svg")
_RC = {"svg.fonttype": "none", "svg.hashsalt": "bitscale", "font.size": 8}


def _figure(rows: int = 1, cols: int = 1, width: float = 4.2, height: float = 3.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def write(fig, folder: Path, stem: str, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Save ``fig`` as ``folder/stem.<fmt>`` (SVG without a date: the same bytes for the same numbers)."""
    import matplotlib

    paths = []
    with matplotlib.rc_context(_RC):
        for fmt in formats:
            buf = io.BytesIO()
            if fmt == "png":
                fig.savefig(buf, format="png", dpi=90)
            else:
                fig.savefig(buf, format="svg", metadata={"Date": None})
            path = folder / f"{stem}.{fmt}"
            path.write_bytes(buf.getvalue())
            paths.append(path)
    return paths


def _steps_axis(ax, labels: list[str]) -> None:
    n = len(labels)
    shown = range(0, n, max(1, n // 8))
    ax.set_xticks(list(shown), [labels[i] for i in shown], rotation=30, ha="right")
    ax.set_xlabel("generation step")


def errors_figure(result: dict[str, Any], title: str):
    """Fig. 2: relative error after feature extraction vs after reconstruction, per step, both modes."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, axes = _figure(1, 2)
        for ax, mode in zip(axes[0], ("teacher_forced", "free_running")):
            steps = result[mode]["steps"]
            x = np.arange(len(steps))
            for phase, color in (("extraction", "tab:blue"), ("reconstruction", "tab:red")):
                m = np.array([s[phase]["mean"] for s in steps])
                lo, hi = np.array([s[phase]["lo"] for s in steps]), np.array([s[phase]["hi"] for s in steps])
                ax.plot(x, m, marker="o", ms=3, color=color, label=f"after {phase}")
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
            ax.set_title(mode.replace("_", "-"))
            ax.set_ylabel("relative error vs FP")
            _steps_axis(ax, [s["label"] for s in steps])
            ax.legend()
        fig.suptitle(title)
    return fig


def noise_figure(tolerance: dict[str, Any], title: str):
    """Fig. 3a: final-output loss vs SNR of the noise injected at one step."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, axes = _figure()
        ax = axes[0][0]
        pts = tolerance["points"]
        snr = np.array([p["snr_db"] for p in pts])
        ax.plot(snr, [p["loss_mean"] for p in pts], marker="o", ms=3, color="tab:purple")
        ax.fill_between(
            snr, [p["loss_lo"] for p in pts], [p["loss_hi"] for p in pts], color="tab:purple", alpha=0.2, lw=0
        )
        ax.invert_xaxis()  # more noise to the right
        ax.set_xlabel("SNR of the injected noise (dB)")
        ax.set_ylabel("loss of the final output vs noise-free")
        r = tolerance["pearson_r"]
        ax.set_title(
            f"{title}\nnoise at step {tolerance['step']}; Pearson r(intensity, loss) = "
            f"{'undefined' if r is None else f'{r:.3f}'}"
        )
    return fig


def accumulation_figure(acc: dict[str, Any], labels: list[str], title: str):
    """Fig. 3b: the reconstruction's error per step after noise in the first steps only."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, axes = _figure()
        ax = axes[0][0]
        steps = acc["steps"]
        x = np.arange(len(steps))
        ax.axvspan(-0.5, acc["noisy_steps"] - 0.5, color="0.85", label=f"noise at {acc['snr_db']:g} dB")
        ax.plot(x, [s["mean"] for s in steps], marker="o", ms=3, color="tab:green", label="reconstruction error")
        ax.fill_between(x, [s["lo"] for s in steps], [s["hi"] for s in steps], color="tab:green", alpha=0.2, lw=0)
        ax.set_ylabel("relative error vs noise-free")
        _steps_axis(ax, labels)
        ax.legend()
        ax.set_title(title)
    return fig


def activation_figures(act: dict[str, Any], title: str) -> dict[str, Any]:
    """Fig. 4 / 11-16: per-step quantile bands, and per-channel max |x| heatmaps; rows kinds, columns blocks."""
    import matplotlib

    keys = list(act["layers"])
    kinds = list(dict.fromkeys(k.split("@")[0] for k in keys))
    blocks = list(dict.fromkeys(k.split("@")[1] for k in keys))
    labels = act["step_labels"]
    figs = {}
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(len(kinds), len(blocks), 3.2, 2.4)
        for i, kind in enumerate(kinds):
            for j, block in enumerate(blocks):
                ax, lay = axes[i][j], act["layers"][f"{kind}@{block}"]
                q = np.array(lay["quantiles"])
                x = np.arange(len(q))
                ax.fill_between(x, q[:, 0], q[:, -1], color="tab:blue", alpha=0.15, lw=0, label="min-max")
                ax.fill_between(x, q[:, 1], q[:, -2], color="tab:blue", alpha=0.3, lw=0, label="1-99%")
                ax.fill_between(x, q[:, 2], q[:, -3], color="tab:blue", alpha=0.6, lw=0, label="25-75%")
                ax.plot(x, q[:, 3], color="k", lw=0.8, label="median")
                ax.set_title(f"{kind}, block {block}")
                _steps_axis(ax, labels)
        axes[0][0].legend(fontsize=6)
        fig.suptitle(f"{title}: input activations per step")
        figs["activations"] = fig
        fig, axes = _figure(len(kinds), len(blocks), 3.2, 2.4)
        for i, kind in enumerate(kinds):
            for j, block in enumerate(blocks):
                ax, lay = axes[i][j], act["layers"][f"{kind}@{block}"]
                im = ax.imshow(
                    np.asarray(lay["channel_absmax"]).T,
                    aspect="auto",
                    origin="lower",
                    cmap="viridis",
                    interpolation="nearest",
                )
                fig.colorbar(im, ax=ax)
                ax.set_title(f"{kind}, block {block}: max |x| per channel")
                ax.set_ylabel("channel")
                _steps_axis(ax, labels)
        fig.suptitle(f"{title}: per-channel range per step")
        figs["channels"] = fig
    return figs
