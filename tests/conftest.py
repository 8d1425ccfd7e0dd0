"""Tests load only bitscale's built-ins unless a test registers more (see bitscale.testing)."""

import pytest
import torch

from bitscale.harness import plugin_loader as plugin_loading

# Tests use tiny models: one thread is faster than two fighting over small matmuls (measured
# ~10x on a busy 2-core machine) and keeps float results independent of the core count.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch):
    # Tests must not depend on whatever happens to be installed: entry points are off unless a
    # test turns them on explicitly (the example-package tests do).
    monkeypatch.setenv("BITSCALE_NO_ENTRYPOINTS", "1")
    # The shipped tiny-zoo weights, whatever a test (e.g. `bitscale zoo train`, which switches its
    # process to trained-here weights) set before: monkeypatch restores the variable afterwards.
    monkeypatch.setenv("BITSCALE_ZOO_WEIGHTS", "shipped")
    monkeypatch.delenv("BITSCALE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("BITSCALE_STRICT_PLUGINS", raising=False)
    # No plan or plugin metadata from an earlier test's process state: a test that patches a plugin
    # in memory must plan with it (the cache's key covers files, not objects). tests/test_plan_cache.py
    # turns it on.
    monkeypatch.setenv("BITSCALE_NO_METADATA_CACHE", "1")
    previous = plugin_loading._CACHED
    plugin_loading.set_plugins(None)
    yield
    plugin_loading.set_plugins(previous)


# ---------------------------------------------------------------- stores: SQLite and a real PostgreSQL

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole session (started on first use, stopped at the end)."""
    from bitscale.testing.postgres import PostgresUnavailable, TemporaryPostgres

    try:
        server = TemporaryPostgres.start(fast=True)
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A URL of a fresh, empty store: a SQLite file, then a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def store(store_url):
    from bitscale.harness.store import ResultStore

    s = ResultStore(store_url)
    yield s
    s.dispose()
