"""Initial schema: protocols, runs, metrics.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "protocols",
        sa.Column("fingerprint", sa.String(32), primary_key=True),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cell_hash", sa.String(40), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("experiment", sa.String(200), nullable=False),
        sa.Column("family", sa.String(100), nullable=False),
        sa.Column("size", sa.String(100), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("loss", sa.String(100), nullable=True),
        sa.Column("precision", sa.String(64), nullable=False),
        sa.Column("w_bits", sa.Integer(), nullable=False),
        sa.Column("a_bits", sa.Integer(), nullable=False),
        sa.Column("w_format", sa.String(16), nullable=False),
        sa.Column("a_format", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("num_params", sa.BigInteger(), nullable=False),
        sa.Column("model_bits", sa.Float(), nullable=False),
        sa.Column("compute_bits", sa.Float(), nullable=False),
        sa.Column("effective_weight_bits", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("git_sha", sa.String(64), nullable=True),
        sa.Column("host", sa.String(200), nullable=True),
        sa.Column("device", sa.String(200), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("protocol_fingerprint", sa.String(32), sa.ForeignKey("protocols.fingerprint"), nullable=True),
    )
    op.create_index("ix_runs_cell_hash", "runs", ["cell_hash"], unique=True)
    op.create_index("ix_runs_family", "runs", ["family"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "name"),
    )
    op.create_index("ix_metrics_run_id", "metrics", ["run_id"])


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_table("runs")
    op.drop_table("protocols")
