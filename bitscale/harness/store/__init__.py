"""The results store: SQLAlchemy 2 ORM over SQLite (WAL) or any SQLAlchemy URL, migrated by Alembic.

``ResultStore`` is resolved on first use, so ``DEFAULT_URL`` (which every command's ``--store``
option shows) costs no SQLAlchemy import.
"""

from typing import TYPE_CHECKING, Any

from bitscale.harness.store.defaults import DEFAULT_URL

__all__ = ["DEFAULT_URL", "ResultStore"]


def __getattr__(name: str) -> Any:
    if name == "ResultStore":
        from bitscale.harness.store.result_store import ResultStore

        return ResultStore
    raise AttributeError(f"module 'bitscale.harness.store' has no attribute {name!r}")


if TYPE_CHECKING:
    from bitscale.harness.store.result_store import ResultStore
