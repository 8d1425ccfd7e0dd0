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

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from bitscale.harness import faults
from bitscale.harness.errors import BitscaleError

MIGRATIONS = Path(__file__).with_name("migrations")
#: Tables bitscale's migrations create (besides Alembic's ``alembic_version``).
OWN_TABLES = frozenset({"protocols", "runs", "metrics", "cell_experiments"})


def _config(connection: sa.Connection | None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


# Opening a store that is already current (every command but the first on a new store) reads the
# revisions from the migration files and the version table directly: importing Alembic costs ~0.3 s
# of CPU, and it is imported only to migrate. tests/test_store.py checks both agree with Alembic's.
_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(?:None|[\"']([^\"']+)[\"'])", re.M)


@cache
def revisions() -> dict[str, str | None]:
    """Every migration's revision -> the revision it follows (None for the first)."""
    out: dict[str, str | None] = {}
    for f in sorted((MIGRATIONS / "versions").glob("*.py")):
        text = f.read_text()
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev is not None:
            out[rev.group(1)] = down.group(1) if down else None
    return out


def head_revision() -> str:
    revs = revisions()
    heads = sorted(set(revs) - set(revs.values()))
    if len(heads) != 1:
        raise RuntimeError(f"bitscale's migrations have {len(heads)} heads ({heads}); expected one")
    return heads[0]


def current_revision(conn: sa.Connection) -> str | None:
    """The store's schema revision (Alembic's ``alembic_version`` table), None for a store without one."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def check_known(revision: str | None, shown_url: str) -> None:
    """Refuse a store written by a newer bitscale: its schema is one this code cannot read safely."""
    if revision is not None and revision not in revisions():
        raise BitscaleError(
            f"store {shown_url} has schema revision {revision!r}, newer than this bitscale knows "
            f"(newest: {head_revision()!r}): upgrade bitscale, or pass another --store"
        )


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
        from alembic import command

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
            "it is not a bitscale store; pass another --store"
        )
    # Left by a setup killed half-way (older bitscale versions ran it without a transaction).
    metadata = sa.MetaData()
    metadata.reflect(conn, only=sorted(ours))
    metadata.drop_all(conn)
