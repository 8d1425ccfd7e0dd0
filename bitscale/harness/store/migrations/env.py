"""Alembic environment: bitscale runs migrations programmatically on the store's own connection."""

from alembic import context

from bitscale.harness.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite can only ALTER through table copies
)
with context.begin_transaction():
    context.run_migrations()
