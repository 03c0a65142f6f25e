"""The first schema: experiments, their event log, workshop rooms and their members.

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
        "experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("started_at", sa.String(32)),
        sa.Column("finished_at", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("n_runs", sa.Integer, nullable=False),
        sa.Column("total_epochs", sa.Integer, nullable=False),
        sa.Column("epochs_done", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("summary", sa.Text),
        sa.Column("owner", sa.String(64)),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("room", sa.String(16)),
        sa.Column("author", sa.String(40)),
    )
    for column in ("status", "owner", "room"):
        op.create_index(f"ix_experiments_{column}", "experiments", [column])
    op.create_table(
        "rooms",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("presenter_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "members",
        sa.Column("room", sa.String(16), sa.ForeignKey("rooms.code", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("joined_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("experiment_id", sa.String(32),
                  sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("events", "members", "rooms", "experiments"):
        op.drop_table(table)
