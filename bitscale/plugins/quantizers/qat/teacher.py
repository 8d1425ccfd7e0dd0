"""QAT-distill's teacher: full-precision outputs per training batch, cached within and across cells.

Teacher outputs are computed once per batch, before the layers are swapped, and kept (up to
``teacher_cache_mb``); only batches beyond that budget need a frozen teacher copy at every step.
The last model's cache is also kept across cells (``share_teacher_cache``), keyed by a hash of its
weights and batches, so a grid of losses over one model and precision computes the teacher once.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bitscale import GenerativeModel


class TeacherOutputs:
    """Full-precision outputs per training batch: cached up to a memory budget, else recomputed.

    Built before the student's layers are swapped, so the cached part needs no teacher copy at
    all. If some batches do not fit, a frozen deep copy of ``model.module`` serves them.
    """

    _shared: ClassVar[tuple[str, list[Tensor]] | None] = None

    def __init__(self, model: GenerativeModel, batches: list[Any], budget_mb: float, share: bool) -> None:
        self.model = model
        self.batches = batches
        self.outputs: list[Tensor] = []
        self.reused = False
        self.module: nn.Module | None = None
        key = _fingerprint(model, batches) if share else None
        shared = TeacherOutputs._shared
        if key is not None and shared is not None and shared[0] == key:
            self.outputs, self.reused = list(shared[1]), True
        else:
            TeacherOutputs._shared = None  # free the previous model's outputs before computing new ones
            budget = budget_mb * 2**20
            with torch.no_grad():
                for b in batches:
                    out = model.forward_batch(b).detach()
                    size = out.numel() * out.element_size()
                    if size * (len(self.outputs) + 1) > budget:
                        break
                    self.outputs.append(out)
            if key is not None and len(self.outputs) == len(batches):
                TeacherOutputs._shared = (key, list(self.outputs))
        if len(self.outputs) < len(batches):
            self.module = copy.deepcopy(model.module).requires_grad_(False).eval()

    @property
    def cached(self) -> int:
        return len(self.outputs)

    def get(self, i: int) -> Tensor:
        """Teacher output for batch ``i``."""
        if i < len(self.outputs):
            return self.outputs[i]
        assert self.module is not None
        with torch.no_grad(), _module_swapped(self.model, self.module):
            return self.model.forward_batch(self.batches[i]).detach()

    def release(self) -> None:
        """Drop this cell's references (the shared cache, if any, keeps its own)."""
        self.outputs, self.module = [], None


@contextmanager
def _module_swapped(model: GenerativeModel, module: nn.Module) -> Iterator[None]:
    """Run ``model.forward_batch`` through another network (the frozen teacher copy)."""
    student = model.module
    model.module = module
    try:
        yield
    finally:
        model.module = student


def _fingerprint(model: GenerativeModel, batches: list[Any]) -> str | None:
    """A hash of the model's weights and the batches; ``None`` when a batch cannot be hashed."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in model.module.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, t)
    for b in batches:
        if not _hash_value(h, b):
            return None
    return h.hexdigest()


def _hash_tensor(h: Any, t: Tensor) -> None:
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())


def _hash_value(h: Any, value: Any) -> bool:
    if isinstance(value, Tensor):
        _hash_tensor(h, value)
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}".encode())
        return all(_hash_value(h, v) for v in value)
    elif isinstance(value, dict):
        h.update(f"dict{len(value)}".encode())
        return all(_hash_value(h, k) and _hash_value(h, v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    elif isinstance(value, (int, float, str, bool, type(None))):
        h.update(repr(value).encode())
    else:
        return False
    return True
