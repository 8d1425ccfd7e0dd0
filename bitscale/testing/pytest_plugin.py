"""pytest plugin (``pytest11`` entry point): fixtures for testing bitscale plugins.

- ``bitscale_store``: a fresh ``ResultStore`` in a temporary folder.
- ``register_plugin(obj, name=...)``: register a plugin object/module for one test only.
- ``bitscale_isolated``: only bitscale's built-ins, no installed entry points (tests must not
  depend on whatever happens to be installed).
- ``tiny_model``: a toy language-style ``GenerativeModel`` with random weights.
"""

from __future__ import annotations

import pytest

from bitscale.harness import plugin_loader as plugin_loading


@pytest.fixture
def bitscale_store(tmp_path):
    from bitscale.harness.store import ResultStore

    store = ResultStore(f"sqlite:///{tmp_path / 'bitscale.db'}")
    yield store
    store.dispose()


@pytest.fixture
def bitscale_isolated():
    """The process-wide plugin set holds only built-ins for this test."""
    previous = plugin_loading._CACHED
    pset = plugin_loading.load_plugins(entrypoints=False)
    plugin_loading.set_plugins(pset)
    yield pset
    plugin_loading.set_plugins(previous)


@pytest.fixture
def register_plugin():
    """``register_plugin(obj, name="x")`` adds a plugin (a module or object with hookimpls) for one test."""
    previous = plugin_loading._CACHED
    extra: list[tuple[str, object]] = []

    def register(obj, name: str = "test-plugin", entrypoints: bool = False):
        extra.append((name, obj))
        pset = plugin_loading.load_plugins(list(extra), entrypoints=entrypoints)
        plugin_loading.set_plugins(pset)
        return pset

    yield register
    plugin_loading.set_plugins(previous)


@pytest.fixture
def tiny_model():
    from bitscale.testing.toy import ToyModel

    return ToyModel()
