"""The results store: SQLAlchemy 2 ORM over SQLite (WAL) or any SQLAlchemy URL, migrated by Alembic."""

from bitscale.harness.store.result_store import ResultStore

__all__ = ["ResultStore"]
