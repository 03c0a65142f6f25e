"""Several servers on one database: which server process runs each experiment, and the
heartbeats that tell live servers from dead ones (app.store.Store.orphans).

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
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("runner", sa.String(64)))
        batch.create_index("ix_experiments_runner", ["runner"])
    op.create_table(
        "runners",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("heartbeat", sa.Float, nullable=False),  # unix time of its last sign of life
    )


def downgrade() -> None:
    op.drop_table("runners")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_index("ix_experiments_runner")
        batch.drop_column("runner")
