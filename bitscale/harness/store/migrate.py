"""Creating and upgrading a store's schema: all of it or nothing, on every backend.

The whole upgrade (tables, indexes, the Alembic version row) runs in ONE database transaction,
so a process killed at any point leaves either the old schema or the new one. PostgreSQL's DDL
is transactional as it is; SQLite's is too, but Python's ``sqlite3`` driver commits before each
``CREATE TABLE`` on its own, so migrations run on a separate engine whose connections leave
transactions to SQLAlchemy and start them with ``BEGIN IMMEDIATE``. That also takes SQLite's
write lock first: of several processes opening a fresh file, one migrates while the others wait
(busy timeout) and then find the schema in place.

A store left half-created by a bitscale from before this rule (some of its tables, no version
row, no data) is recognised and set up again; anything else without a version row is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from bitscale.harness import faults
from bitscale.harness.errors import BitscaleError

MIGRATIONS = Path(__file__).with_name("migrations")
#: Tables bitscale's migrations create (besides Alembic's ``alembic_version``).
OWN_TABLES = frozenset({"protocols", "runs", "metrics", "cell_experiments"})


def _config(connection: sa.Connection | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(None))


def head_revision() -> str:
    return _scripts().get_current_head()  # type: ignore[return-value]


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def check_known(revision: str | None, shown_url: str) -> None:
    """Refuse a store written by a newer bitscale: its schema is one this code cannot read safely."""
    if revision is not None and revision not in {s.revision for s in _scripts().walk_revisions()}:
        raise BitscaleError(
            f"store {shown_url} has schema revision {revision!r}, newer than this bitscale knows "
            f"(newest: {head_revision()!r}): upgrade bitscale, or pass another --store")


def schema_engine(url: str, connect_args: dict[str, Any], pragmas: Callable[[Any, Any], None]) -> sa.Engine:
    """An engine whose transactions are real database transactions, DDL included (see module docstring)."""
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _autocommit_off(dbapi_conn, record) -> None:
            pragmas(dbapi_conn, record)
            dbapi_conn.isolation_level = None  # the driver must not BEGIN/COMMIT on its own around DDL

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    if faults.armed():
        statements = iter(range(1, 1_000_000))

        @event.listens_for(engine, "after_cursor_execute")
        def _fault(conn, cursor, statement, *args) -> None:
            if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "SELECT")):
                faults.reach(f"migrate:ddl-{next(statements)}")
    return engine


def upgrade(engine: sa.Engine, shown_url: str) -> None:
    """Bring the schema to the newest revision in one transaction (no-op when it is there)."""
    head = head_revision()
    with engine.begin() as conn:
        lock_schema(conn)
        current = current_revision(conn)
        if current == head:
            return  # another process migrated while we waited for the lock
        check_known(current, shown_url)
        if current is None:
            _drop_interrupted_setup(conn, shown_url)
        command.upgrade(_config(conn), "head")


# Any constant works: advisory locks are named by a number, shared by all databases of a server.
PG_MIGRATION_LOCK = 0x62697473  # "bits"


def lock_schema(conn: sa.Connection) -> None:
    """Serialise migrations across processes. SQLite: ``BEGIN IMMEDIATE`` already did.

    PostgreSQL: a transaction-scoped advisory lock, held until this transaction ends (commit,
    rollback, or the dropped connection of a killed process); its DDL is transactional, so a
    migration is all or nothing there too.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})


def _drop_interrupted_setup(conn: sa.Connection, shown_url: str) -> None:
    tables = set(sa.inspect(conn).get_table_names())
    ours = tables & OWN_TABLES
    if not ours:
        return
    others = tables - OWN_TABLES - {"alembic_version"}
    if others or any(conn.execute(sa.text(f"SELECT 1 FROM {t} LIMIT 1")).first() for t in ours):
        raise BitscaleError(
            f"store {shown_url} has tables ({', '.join(sorted(tables))}) but no bitscale schema version: "
            "it is not a bitscale store; pass another --store")
    # Left by a setup killed half-way (older bitscale versions ran it without a transaction).
    metadata = sa.MetaData()
    metadata.reflect(conn, only=sorted(ours))
    metadata.drop_all(conn)
