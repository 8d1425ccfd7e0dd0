"""Deterministic fault injection for the crash-safety tests.

``BITSCALE_FAULT=<point>`` makes the process SIGKILL itself the moment it reaches ``<point>``,
so a test can kill bitscale exactly between two statements of a schema migration or just
before a result is committed, instead of hoping a timer lands there. Points in use:

- ``migrate:ddl-N``: after the N-th statement of a schema migration (1-based);
- ``record:before-commit``: a finished cell's rows are written but not yet committed.

Unset (always, outside tests), :func:`reach` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def reach(point: str) -> None:
    """Kill this process with SIGKILL (no clean-up of any kind) if ``BITSCALE_FAULT`` names ``point``."""
    if os.environ.get("BITSCALE_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> bool:
    """Whether any fault point is armed (lets callers skip instrumenting work when none is)."""
    return bool(os.environ.get("BITSCALE_FAULT"))
