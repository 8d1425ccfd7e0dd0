"""The tiny zoo's frozen weights, shipped inside the package (``bitscale/zoo/weights/``).

Training on one thread fixes the order of float reductions on one CPU, not across CPUs (AVX2
and AVX-512 kernels, other BLAS paths) or torch versions: two machines that train the tiny zoo
get other weights and other FIDs. So bitscale ships one trained copy of every artifact its
built-in experiments use, as FID protocols ship one Inception weight file, and every machine
scores with the same bytes.

``catalog.json`` lists each artifact with the sha256 of its file, the training manifest it was
saved with (recipe, steps, seed, losses, time) and the machine that trained it. Loading checks
the hash: an edited or corrupt file is an error naming it, never silently used or retrained.

``BITSCALE_ZOO_WEIGHTS=trained`` (``bitscale run --zoo-weights trained``) uses weights trained on
this machine instead, from the user's cache; ``bitscale zoo verify`` compares the two.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from bitscale.harness.errors import BitscaleError

#: Where the shipped files live (package data).
# The files are package data of the zoo (bitscale/zoo/weights/); found by path, not import, so the core
# reading them depends on no module of the zoo.
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "zoo" / "weights"
CATALOG = WEIGHTS_DIR / "catalog.json"
#: Environment variable choosing the weights: ``shipped`` (default) or ``trained`` (this machine's cache).
SOURCE_ENV = "BITSCALE_ZOO_WEIGHTS"
SOURCES = ("shipped", "trained")
#: The user's cache folder (see ``bitscale.harness.artifacts.cache``).
CACHE_ENV = "BITSCALE_CACHE"


def cache_dir() -> Path:
    """``$BITSCALE_CACHE`` or ``~/.cache/bitscale`` (created if missing)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "bitscale")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def source() -> str:
    """``shipped`` or ``trained``: which copy of a shipped artifact is used."""
    value = os.environ.get(SOURCE_ENV, "shipped").strip() or "shipped"
    if value not in SOURCES:
        raise BitscaleError(
            f"{SOURCE_ENV}={value!r}: choose 'shipped' (the weights bitscale ships, the same on "
            "every machine) or 'trained' (weights trained on this machine by `bitscale zoo train`)"
        )
    return value


def use_trained(trained: bool = True) -> None:
    """Make this process and the processes it starts use trained-here weights (or the shipped ones)."""
    os.environ[SOURCE_ENV] = "trained" if trained else "shipped"


@contextlib.contextmanager
def using(weights: str, cache: str | Path | None = None) -> Iterator[None]:
    """Within the block, use ``weights`` (``shipped``/``trained``), and the cache folder ``cache`` if given."""
    saved = {k: os.environ.get(k) for k in (SOURCE_ENV, CACHE_ENV)}
    os.environ[SOURCE_ENV] = weights
    if cache is not None:
        os.environ[CACHE_ENV] = str(cache)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@cache
def _catalog(path: Path, stamp: tuple[int, int]) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        artifacts = data["artifacts"]
        if not isinstance(artifacts, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("manifest"), dict)
            for e in artifacts.values()
        ):
            raise ValueError("every artifact needs a sha256 and a manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BitscaleError(f"{path}: unreadable catalog of shipped weights ({exc}); reinstall bitscale") from None
    return artifacts


def catalog() -> dict[str, dict[str, Any]]:
    """{artifact name: {sha256, bytes, manifest, trained_on}} of the shipped weights ({} if none ship)."""
    if not CATALOG.exists():
        return {}
    st = CATALOG.stat()
    return _catalog(CATALOG, (st.st_mtime_ns, st.st_size))


def entry(name: str) -> dict[str, Any] | None:
    """The catalog entry of artifact ``name`` when shipped weights are in use and it ships; else None."""
    if source() != "shipped":
        return None
    return catalog().get(name)


def path_of(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def file_sha256(path: Path) -> str:
    """sha256 of the file at ``path``; read once per process for each version (size, mtime) of the file.

    Planning checks every weight file a grid loads and building checks it again: without the memo a
    grid of 18 cells would hash the same few megabytes dozens of times.
    """
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_path(name: str) -> Path:
    """The shipped file of ``name``, after checking it is byte for byte the one the catalog lists."""
    expected = catalog()[name]["sha256"]
    path = path_of(name)
    if not path.is_file():
        raise BitscaleError(
            f"{path}: shipped weights of {name} are missing; reinstall bitscale "
            f"(or use weights trained here: {SOURCE_ENV}=trained)"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise BitscaleError(
            f"{path}: shipped weights of {name} were modified or are corrupt (sha256 {actual[:12]}…, "
            f"catalog {expected[:12]}…); reinstall bitscale (or use weights trained here: "
            f"{SOURCE_ENV}=trained)"
        )
    return path
