"""Progress bars of tiny-zoo training, silenced by ``--no-progress`` or ``TQDM_DISABLE=1``.

Training usually starts deep inside ``build`` (a missing model is trained on first use), so the
switch is a context rather than an argument threaded through every family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from tqdm.auto import tqdm

_enabled: ContextVar[bool] = ContextVar("bitscale_zoo_progress", default=True)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show (or hide, with ``enabled=False``) the training bars started inside this block."""
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


def progress_bar(iterable: Iterable[Any], desc: str, total: int | None = None) -> tqdm:
    """A transient bar over ``iterable``, hidden inside ``progress_bars(False)``."""
    # ``disable`` is passed only to turn the bar off: left out, tqdm takes it from TQDM_DISABLE.
    off = {} if _enabled.get() else {"disable": True}
    return tqdm(iterable, desc=desc, total=total, leave=False, **off)
