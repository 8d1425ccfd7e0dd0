"""What plugin metadata and a grid's plan are a function of, identified without importing torch.

``bitscale plugins list`` and a re-run of a stored grid would otherwise import every plugin (and
with them torch) to learn what they learnt last time. They keep what they learnt in the metadata
cache (``bitscale.harness.metadata_cache``) under a key built here from everything it depends on:

- the interpreter and its import path (``sys.version``, ``sys.executable``, ``sys.path``);
- every installed distribution, by its ``*.dist-info``/``*.egg-info`` folder (name, version, and the
  folder's time: a reinstall makes a new one) and every ``.pth`` file, in each folder of ``sys.path``;
- the ``bitscale`` entry points (plugin name, module, distribution, version);
- every file of the ``bitscale`` package in use (size and modification time, as Python's own
  bytecode cache checks a source file), shipped weights included;
- the ``BITSCALE_*`` environment variables (not the store URLs, which may hold a password and are
  no input of a plan);
- for a plan, also the tiny-zoo weight files and manifests of the artifact cache (``weights_key``).

What an entry cannot know in advance — the source files of plugins installed from a working tree,
or found on ``PYTHONPATH`` — is recorded when it is written (``loaded_sources``: every imported
module outside the standard library and ``site-packages``) and checked when it is read.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from bitscale.hashing import json_digest

#: The entry-point group bitscale plugins register under (``bitscale.harness.plugin_loader``).
ENTRY_POINT_GROUP = "bitscale"
#: Environment variables that are no input of plugin metadata or plans and may hold secrets.
NOT_KEYED = ("BITSCALE_STORE", "BITSCALE_TEST_POSTGRES_URL")
#: The metadata cache's own folder inside the artifact cache, left out of ``weights_key``.
CACHE_FOLDER = "metadata"
#: Artifact-cache folders no plan reads, left out of ``weights_key`` so that scoring cells (which writes
#: them) does not make the next run plan again: the evaluation's reference statistics and classifier
#: (``eval/``), the W16A16 twins' features (``paired/``).
NOT_WEIGHTS = (CACHE_FOLDER, "eval", "paired")


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _tree(root: Path, suffixes: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """{relative path: [size, mtime_ns]} of the files under ``root`` (``__pycache__`` and ``skip`` left out)."""
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        rel = os.path.relpath(folder, root)
        if rel.split(os.sep)[0] in skip:
            dirs[:] = []
            continue
        for name in files:
            if suffixes is None or name.endswith(suffixes):
                out[os.path.normpath(os.path.join(rel, name))] = _stamp(Path(folder, name))
    return out


def _distributions() -> list[list[Any]]:
    """(folder, entry, stamp) of every distribution record and ``.pth`` file on ``sys.path``."""
    out: list[list[Any]] = []
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info", ".pth", ".egg-link")) or name.startswith("__editable__"):
                out.append([folder, name, _stamp(Path(folder or ".", name))])
    return out


def _entry_points() -> list[list[str]]:
    from importlib.metadata import entry_points

    return sorted(
        [ep.name, ep.value, ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else "?"]
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    )


def _bitscale_root() -> Path:
    import bitscale

    return Path(bitscale.__file__).resolve().parent


def installation_key() -> dict[str, Any]:
    """Everything plugin metadata depends on that can be read without importing a plugin (see above)."""
    root = _bitscale_root()
    return {
        "python": [sys.version, sys.executable, list(sys.path)],
        "distributions": _distributions(),
        "entry_points": _entry_points(),
        "bitscale": [str(root), _tree(root)],
        "env": sorted((k, v) for k, v in os.environ.items() if k.startswith("BITSCALE_") and k not in NOT_KEYED),
    }


def weights_key() -> dict[str, Any]:
    """The tiny-zoo weight files and manifests of the artifact cache (trained here; shipped ones are
    part of the ``bitscale`` package): a model's ``weights_id`` reads them. Files at the top of the cache
    are memos of values the installation key already covers (the digits data hash)."""
    from bitscale.harness.artifacts.shipped import cache_dir

    root = cache_dir()
    files = _tree(root, (".safetensors", ".json"), skip=NOT_WEIGHTS)
    return {"cache": str(root), "files": {k: v for k, v in files.items() if os.sep in k}}


def digest(key: Any) -> str:
    return json_digest(key, 32)


def _library_folders() -> tuple[str, ...]:
    """Folders whose modules are identified by their distribution records or the interpreter."""
    paths = sysconfig.get_paths()
    folders = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    return tuple(sorted(str(Path(f).resolve()) + os.sep for f in folders if f))


def loaded_sources() -> dict[str, Any]:
    """{path: [size, mtime_ns]} of every module imported so far that neither the interpreter, an installed
    distribution's record nor the ``bitscale`` package identifies: plugins installed from a working tree
    (``pip install -e``), modules on ``PYTHONPATH`` or in the current folder."""
    skip = (*_library_folders(), str(_bitscale_root()) + os.sep)
    out: dict[str, Any] = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py"):
            continue
        path = str(Path(file).resolve())
        if "site-packages" in path or "dist-packages" in path or path.startswith(skip):
            continue
        out[path] = _stamp(Path(path))
    return out


def unchanged(sources: dict[str, Any]) -> bool:
    """True if every file of ``loaded_sources()``'s record still has its size and time."""
    return all(_stamp(Path(path)) == stamp for path, stamp in sources.items())
