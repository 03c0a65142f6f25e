"""Rooms get a log of their own, numbered like an experiment's: the room's events (state,
members, new experiments) and references to ranges of its experiments' logs, so a room's
stream is replayed and resumed with one Last-Event-ID while each epoch is stored once.

Rooms made before this revision get their members and experiments logged in the order they
came, each experiment followed by one reference to its whole log.

Revision ID: 0004
Revises: 0003
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"))
    log = op.create_table(
        "room_events",
        sa.Column("room", sa.String(16), sa.ForeignKey("rooms.code", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.Text),
        sa.Column("experiment_id", sa.String(32)),
        sa.Column("first", sa.Integer),
        sa.Column("last", sa.Integer),
    )
    op.create_index("ix_room_events_experiment_id", "room_events", ["experiment_id"])
    _backfill(op.get_bind(), log)


def _backfill(conn, log) -> None:
    rooms = conn.execute(sa.text("SELECT code FROM rooms")).scalars().all()
    for code in rooms:
        rows = []
        for (name,) in conn.execute(sa.text(
                "SELECT name FROM members WHERE room = :c ORDER BY joined_at"), {"c": code}):
            rows.append({"kind": "member", "data": json.dumps({"name": name})})
        for exp_id, author, name, config, last in conn.execute(sa.text(
                "SELECT id, author, name, config, last_seq FROM experiments WHERE room = :c "
                "ORDER BY created_at"), {"c": code}):
            model = json.loads(config).get("model", {})
            hidden = "-".join(str(w) for w in model.get("hidden", [])) or "linear"
            rows.append({"kind": "experiment", "data": json.dumps({
                "exp": exp_id, "author": author or "anonymous", "name": name,
                "label": f"{hidden} · p = {model.get('dropout')}"})})
            if last:
                rows.append({"kind": "ref", "experiment_id": exp_id, "first": 1, "last": last})
        for seq, row in enumerate(rows, 1):
            conn.execute(log.insert().values(room=code, seq=seq, **row))
        conn.execute(sa.text("UPDATE rooms SET last_seq = :n WHERE code = :c"),
                     {"n": len(rows), "c": code})


def downgrade() -> None:
    op.drop_index("ix_room_events_experiment_id", "room_events")
    op.drop_table("room_events")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("last_seq")
