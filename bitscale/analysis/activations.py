"""Fig. 4 / 11-16: the input activations of chosen layers (fc1, qkv, fc2 of chosen blocks) over generation steps.

Inputs, not outputs: they are what activation quantization rounds. For each layer and step we
keep quantiles over every value the layer saw at that step (all tokens of all samples, the
guidance batch included), the standard deviation, and each channel's largest magnitude. The
summary number for the paper's claim ("the variance of activations over time" is smaller for VAR
than for DiT) is the coefficient of variation over steps of the per-step range (max |x|) and of the
per-step standard deviation.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from bitscale.harness.contracts import GenerativeModel
from bitscale.harness.errors import ConfigError

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0)
KINDS = ("fc1", "qkv", "fc2")


def num_blocks(model: GenerativeModel) -> int:
    """Blocks of ``model.module`` that every layer template matches."""
    counts = []
    names = [n for n, _ in model.module.named_modules()]
    for template in model.activation_layers.values():
        pattern = re.compile(re.escape(template).replace(re.escape("{block}"), r"(\d+)") + "$")
        counts.append(len({m.group(1) for n in names if (m := pattern.match(n))}))
    return min(counts) if counts else 0


def resolve_layers(model: GenerativeModel, family: str, kinds: list[str], blocks: list[int] | None) -> dict[str, str]:
    """``{"fc1@3": "blocks.3.mlp.fc1", ...}`` for ``kinds`` x ``blocks`` (default: first, middle and last block)."""
    templates = model.activation_layers
    if not templates:
        raise ConfigError(f"not supported: {family} does not name its fc1/qkv/fc2 layers (activation_layers)")
    for kind in kinds:
        if kind not in templates:
            raise ConfigError(f"unknown layer kind {kind!r} for {family}; known: {', '.join(templates)}")
    n = num_blocks(model)
    if blocks is None:
        blocks = sorted({0, n // 2, n - 1})
    for b in blocks:
        if not 0 <= b < n:
            raise ConfigError(f"{family} has blocks 0..{n - 1}; block {b} does not exist")
    modules = dict(model.module.named_modules())
    out = {}
    for kind in kinds:
        for b in blocks:
            name = templates[kind].format(block=b)
            if name not in modules:
                raise ConfigError(f"{family}: layer {name!r} ({kind} of block {b}) is not a module of the model")
            out[f"{kind}@{b}"] = name
    return out


@torch.no_grad()
def collect(model: GenerativeModel, labels: torch.Tensor, seed: int, layers: dict[str, str]) -> dict[str, Any]:
    """Per layer: quantiles ``(steps, len(QUANTILES))``, std ``(steps,)``, channel max |x| ``(steps, C)``."""
    modules = dict(model.module.named_modules())
    seen: dict[str, list[torch.Tensor]] = {key: [] for key in layers}
    stats: dict[str, dict[str, list]] = {key: {"quantiles": [], "std": [], "channel_absmax": []} for key in layers}
    handles = []
    for key, name in layers.items():

        def hook(_m, args, _key=key):
            x = args[0]
            seen[_key].append(x.detach().float().reshape(-1, x.shape[-1]).cpu())

        handles.append(modules[name].register_forward_pre_hook(hook))
    labels_out = []
    try:
        with model.generation_phases(labels, torch.Generator().manual_seed(seed)) as g:
            for s in range(g.num_steps):
                g.advance(s, g.reconstruct(s, g.extract(s)))
                labels_out.append(g.step_label(s))
                for key in layers:
                    if not seen[key]:
                        raise RuntimeError(f"layer {layers[key]} did not run at step {s}")
                    x = torch.cat(seen[key])
                    seen[key].clear()
                    v = x.numpy()
                    stats[key]["quantiles"].append(np.quantile(v, QUANTILES).tolist())
                    stats[key]["std"].append(float(v.std()))
                    stats[key]["channel_absmax"].append(np.abs(v).max(axis=0))
    finally:
        for h in handles:
            h.remove()
    out = {"step_labels": labels_out, "quantile_levels": list(QUANTILES), "layers": {}}
    for key, st in stats.items():
        q = np.array(st["quantiles"])
        absmax = np.maximum(np.abs(q[:, 0]), np.abs(q[:, -1]))
        std = np.array(st["std"])
        out["layers"][key] = {
            "module": layers[key],
            "quantiles": q.tolist(),
            "std": std.tolist(),
            "channel_absmax": np.stack(st["channel_absmax"]),
            "range_cv": _cv(absmax),
            "std_cv": _cv(std),
        }
    return out


def _cv(v: np.ndarray) -> float | None:
    """Coefficient of variation over steps (None with one step or a zero mean)."""
    if len(v) < 2 or v.mean() == 0:
        return None
    return float(v.std(ddof=1) / v.mean())
