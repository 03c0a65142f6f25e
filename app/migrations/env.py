"""Alembic environment. The app migrates its own database at start (app.store.migrate hands
over its connection); developers use the `alembic` command (alembic.ini), which opens the
database the app would use (DP_DATABASE_URL, or SQLite in DP_DATA_DIR):

    .venv/bin/alembic revision --autogenerate -m "what changes"
    .venv/bin/alembic upgrade head
"""

from alembic import context

from app.store import Base

connection = context.config.attributes.get("connection")
if connection is None:  # the alembic command
    from app.settings import Settings
    from app.store import engine_for

    connection = engine_for(Settings().db_url).connect()
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
