"""A cancel asked of one server for an experiment another server trains is also written here,
so a lost notification delays it, never loses it (app.jobs polls it).

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
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("cancel_requested", sa.Boolean))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("cancel_requested")
