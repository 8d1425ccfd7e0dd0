"""The headline numbers of a stored analysis as short lines (for the console and the HTML page); no torch."""

from __future__ import annotations

from typing import Any


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}"


def _ci(d: dict[str, float]) -> str:
    return f"{_f(d['mean'])} [{_f(d['lo'])}, {_f(d['hi'])}]"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """A few lines: what was analysed and its key numbers (means with 95% CIs over samples)."""
    kind, res = doc["kind"], doc["result"]
    head = f"{kind} of {doc['title']} ({doc['config']['num_samples']} samples, seed {doc['config']['model']['seed']})"
    lines = [head]
    if kind == "errors":
        for mode in ("teacher_forced", "free_running"):
            s = res[mode]["summary"]
            lines.append(
                f"  {mode.replace('_', '-')}: mean relative error after extraction {_f(s['mean_extraction'])}, "
                f"after reconstruction {_f(s['mean_reconstruction'])} "
                f"(ratio {_f(s['reconstruction_over_extraction'])})"
                + (f"; final output {_ci(res[mode]['final_output'])}" if res[mode]["final_output"] else "")
            )
    elif kind == "noise-tolerance":
        tol, acc = res["tolerance"], res["accumulation"]
        ci = tol["pearson_r_ci"]
        ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        lines.append(
            f"  Fig. 3a: noise at step {tol['step']}: Pearson r(intensity, loss) = {_f(tol['pearson_r'])}"
            f"{ci_text}; r vs -SNR(dB) = {_f(tol['pearson_r_vs_db'])}; flat fraction {tol['flat_fraction']:.2f}"
        )
        errs = [s["mean"] for s in acc["steps"]]
        lines.append(
            f"  Fig. 3b: noise at {acc['snr_db']:g} dB in the first {acc['noisy_steps']} of {len(errs)} steps: "
            f"error at the last noisy step {_f(errs[acc['noisy_steps'] - 1])}, max after "
            f"{_f(max(errs[acc['noisy_steps'] :], default=None))}, final output {_ci(acc['final_output'])}"
        )
    elif kind == "activations":
        for key, lay in res["layers"].items():
            q = lay["quantiles"]
            lines.append(
                f"  {key} ({lay['module']}): max |x| per step {_f(min(max(abs(r[0]), abs(r[-1])) for r in q))}"
                f"..{_f(max(max(abs(r[0]), abs(r[-1])) for r in q))}, CV over steps of max |x| "
                f"{_f(lay['range_cv'])}, of std {_f(lay['std_cv'])}"
            )
    return lines
