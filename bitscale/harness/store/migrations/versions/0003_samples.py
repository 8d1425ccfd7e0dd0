"""Kept samples: ``runs.samples``, the path of a cell's content-addressed ``.npz`` (``--keep-samples``).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("samples", sa.String(1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite drops columns only through a table copy
        batch.drop_column("samples")
