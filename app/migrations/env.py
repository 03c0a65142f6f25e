"""Alembic environment: migrations run on the connection app.store hands over (see
app.store.migrate), so the app upgrades its own database at start, on SQLite and PostgreSQL."""

from alembic import context

from app.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
