"""Thread pinning for tiny-zoo training."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous setting afterwards.

    The thread count changes the order of float reductions, so one thread gives the same weights
    on every machine (CI retrains the zoo and compares FIDs against a committed baseline); the
    tiny zoo's matrices are too small to gain from threads anyway.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
