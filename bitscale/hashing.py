"""Canonical JSON and short SHA-256 digests: the one recipe behind cell hashes and protocol fingerprints.

A leaf module (standard library only), so the planner, the evaluation, the leaderboard and the zoo
hash the same way without importing each other or torch. The output is stored in users' databases
and committed baselines: changing ``canonical_json`` changes every hash (see tests/test_layers.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys; values JSON cannot hold are written as their ``str``."""
    return json.dumps(obj, sort_keys=True, default=str)


def sha256_text(text: str, n: int | None = None) -> str:
    """Hex SHA-256 of ``text`` (UTF-8), its first ``n`` characters when given."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def json_digest(obj: Any, n: int) -> str:
    """First ``n`` hex characters of the SHA-256 of ``canonical_json(obj)``."""
    return sha256_text(canonical_json(obj), n)
