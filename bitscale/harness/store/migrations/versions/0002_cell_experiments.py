"""Cell membership of experiments: a W16A16 cell shared by several experiments belongs to each.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cell_experiments",
        sa.Column("experiment", sa.String(200), primary_key=True),
        sa.Column("cell_hash", sa.String(40), primary_key=True),
    )
    # Every stored run belongs to the experiment that recorded it.
    op.execute("INSERT INTO cell_experiments (experiment, cell_hash) SELECT DISTINCT experiment, cell_hash FROM runs")


def downgrade() -> None:
    op.drop_table("cell_experiments")
