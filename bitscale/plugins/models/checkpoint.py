"""Loading released checkpoints: read a state dict from a local file, then load it strictly.

Both steps turn every failure a user can hit (a wrong path, a truncated download, a checkpoint
of another model size) into a ``BitscaleError`` that names the file and the offending keys,
instead of a pickle traceback or PyTorch's wall of ``size mismatch`` lines.

Only safe formats are read: safetensors, or PyTorch pickles through
``torch.load(weights_only=True)``, which refuses arbitrary Python objects. One class beyond
tensors and plain containers is allowed: ``argparse.Namespace``, which the official LlamaGen and
DiT training scripts save as ``args`` next to the weights. It holds plain values and runs no code
when rebuilt; everything else (a pickled module, a ``posix.system`` call) is still refused.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from bitscale.harness.errors import BitscaleError

#: Keys under which training scripts nest the weights, tried in this order: the EMA weights
#: first when a file holds both (the ones the official DiT ``find_model`` and LlamaGen's sampling
#: scripts load), then DDP's ``model``, ``module``, Lightning's ``state_dict``.
NESTED_KEYS: tuple[str, ...] = ("ema", "model", "module", "state_dict")

#: Classes beyond tensors and containers that weights-only loading may rebuild (see module docstring).
SAFE_CLASSES: tuple[type, ...] = (argparse.Namespace,)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch decorates some messages with terminal colours

#: How many offending keys an error message lists per kind.
_SHOWN = 5


def load_state_dict_file(
    path: str | Path,
    nested_keys: Sequence[str] = NESTED_KEYS,
    strip_prefix: str | None = "module.",
) -> dict[str, torch.Tensor]:
    """Read the state dict stored in ``path`` (``.safetensors``; anything else via ``torch.load``).

    If the file holds a dict with one of ``nested_keys`` whose value is a dict, the first such
    entry is taken (repeatedly, so ``{"model": {"module": sd}}`` also unwraps); pass ``()`` to
    take the top level as is. If every key starts with ``strip_prefix`` (DDP's ``module.``),
    the prefix is removed. Raises ``BitscaleError`` naming the file when it is missing,
    unreadable, or holds something other than named tensors.
    """
    path = Path(path)
    if not path.exists():
        raise BitscaleError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise BitscaleError(f"checkpoint path is not a file: {path}")
    obj = _read(path)

    nested = list(nested_keys)
    while isinstance(obj, Mapping):
        key = next((k for k in nested if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise BitscaleError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict of tensors")

    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BitscaleError(
            f"checkpoint {path}: entries {_first(bad)} are not tensors; the weights may sit under a "
            f"key other than {list(nested) or '(none tried)'} (top-level keys: {_first(list(obj))})"
        )
    state = {str(k): v for k, v in obj.items()}
    if strip_prefix and state and all(k.startswith(strip_prefix) for k in state):
        state = {k[len(strip_prefix) :]: v for k, v in state.items()}
    return state


def _read(path: Path) -> object:
    """Deserialize ``path``; any failure (truncation, corruption, unsafe pickle) names the file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with torch.serialization.safe_globals(list(SAFE_CLASSES)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():  # a corrupt legacy pickle, not a refused object
            raise _unreadable(path, e) from e
        raise BitscaleError(
            f"cannot read checkpoint {path}: it holds Python objects that weights-only loading refuses "
            f"(only tensors and plain containers are allowed; re-save the state dict) ({_one_line(e)})"
        ) from e
    except Exception as e:  # noqa: BLE001 - every other reader error means the same thing to the user
        raise _unreadable(path, e) from e


def _unreadable(path: Path, e: BaseException) -> BitscaleError:
    return BitscaleError(
        f"cannot read checkpoint {path} ({path.stat().st_size:,} bytes): it is truncated, corrupt "
        f"or not a state dict ({type(e).__name__}: {_one_line(e)})"
    )


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str | Path,
    assign: bool = False,
) -> None:
    """Load ``state_dict`` into ``module`` only if names and shapes match exactly.

    ``source`` (usually the file path) is named in the error, together with the first few
    missing, unexpected and mis-shaped keys (with both shapes). Values are cast to the module's
    dtypes by ``load_state_dict``; ``assign=True`` replaces the tensors instead (e.g. to fill a
    module built on the meta device).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_first(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} with other shapes: {_first(misshaped)}")
        raise BitscaleError(
            f"checkpoint {source} does not fit {type(module).__name__} "
            f"({len(state_dict)} keys in file, {len(expected)} in model): "
            + "; ".join(parts)
            + ". Is it the checkpoint of this model and size?"
        )
    module.load_state_dict(dict(state_dict), strict=True, assign=assign)


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", ... (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def _one_line(e: BaseException) -> str:
    text = " ".join(_ANSI.sub("", str(e)).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def local_file(given: str | Path | None, env_dir: str, name: str) -> Path | None:
    """``given`` if set, else ``name`` in the folder ``$env_dir``; ``None`` when neither is set.

    Released checkpoints are never downloaded: each family names its files in an option or one
    folder per family, and says in its own words what is missing.
    """
    if given:
        return Path(given).expanduser()
    folder = os.environ.get(env_dir)
    return Path(folder).expanduser() / name if folder else None
