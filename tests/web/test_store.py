"""The store on both databases it supports (SQLite, PostgreSQL), its Alembic migrations, and the
runner bookkeeping that lets several servers share one database (the bus: tests/test_bus.py)."""

from __future__ import annotations

import threading
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from app.store import MIGRATIONS, Base, Store, engine_for


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres").new_database()


def revision(store: Store) -> str:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_a_new_database_gets_every_migration(db_url):
    store = Store(db_url)
    assert revision(store) == "0004"
    tables = set(inspect(store.engine).get_table_names())
    assert {"experiments", "events", "rooms", "members", "runners"} <= tables
    Store(db_url)  # opening it again changes nothing
    assert revision(store) == "0004"


def test_the_migrations_build_exactly_the_schema_the_models_describe(db_url):
    """What `alembic check` checks: autogenerate finds nothing left to migrate."""
    store = Store(db_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_migrations_go_down_and_up_again(db_url):
    store = Store(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
        assert "runner" not in {c["name"] for c in inspect(conn).get_columns("experiments")}
        command.upgrade(cfg, "head")
    assert revision(store) == "0004"


def test_a_database_from_before_migrations_is_upgraded_and_keeps_its_data(tmp_path):
    """Made by an older version (create_all, no alembic_version, no runner column)."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE experiments (id VARCHAR(32) PRIMARY KEY, created_at "
                          "VARCHAR(32), started_at VARCHAR(32), finished_at VARCHAR(32), status "
                          "VARCHAR(16), name VARCHAR(80), config TEXT, n_runs INTEGER, "
                          "total_epochs INTEGER, epochs_done INTEGER, error TEXT, summary TEXT, "
                          "owner VARCHAR(64), last_seq INTEGER)"))
        conn.execute(text("INSERT INTO experiments VALUES ('old', '2026-01-01', NULL, NULL, "
                          "'done', 'kept', '{}', 1, 3, 3, NULL, NULL, 'me', 0)"))
    engine.dispose()
    store = Store(url)
    assert revision(store) == "0004"
    row = store.get("old")
    assert row.name == "kept" and row.runner is None and row.room is None


def test_concurrent_appends_number_events_without_gaps(db_url):
    """On PostgreSQL from two engines, as two server processes would; SQLite serves one
    process, whose writers share one Store (and its lock)."""
    first = Store(db_url)
    second = Store(db_url) if first.shared else first
    exp_id = first.create({"name": "x"}, 1, 100, None)

    def write(store: Store, tag: str) -> None:
        for i in range(40):
            store.append(exp_id, [("epoch", {"run": 0, "epoch": i, "by": tag})])
    threads = [threading.Thread(target=write, args=(s, t))
               for s, t in ((first, "a"), (second, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = first.events_after(exp_id)
    assert [e.seq for e in events] == list(range(1, 82))
    assert first.get(exp_id).epochs_done == 80


def test_orphans_are_the_work_of_runners_that_are_gone(postgres):
    store = Store(postgres.new_database())
    store.heartbeat("alive")
    store.heartbeat("silent")
    mine = store.create({}, 1, 1, None, runner="alive")
    theirs = store.create({}, 1, 1, None, runner="silent")
    retired = store.create({}, 1, 1, None, runner="retired")
    nobody = store.create({}, 1, 1, None)
    time.sleep(1.2)
    store.heartbeat("alive")
    store.retire("retired")
    assert {r.id for r in store.orphans("alive", stale_after=1.0)} == {theirs, retired, nobody}
    assert mine not in {r.id for r in store.orphans("other", stale_after=30)}
    # two servers adopting the same orphan: exactly one wins
    assert store.claim(theirs, "alive", "silent") is True
    assert store.claim(theirs, "another", "silent") is False
    assert store.get(theirs).runner == "alive"


def test_a_cancel_asked_elsewhere_waits_in_the_database_for_its_runner(db_url):
    store = Store(db_url)
    running = store.create({}, 1, 1, None, runner="holder")
    store.transition(running, "running")
    other = store.create({}, 1, 1, None, runner="someone-else")
    ended = store.create({}, 1, 1, None, runner="holder")
    for exp_id in (running, other, ended):
        store.request_cancel(exp_id)
    store.transition(ended, "done")
    assert store.cancels_for("holder") == [running]


def test_sqlite_has_one_server_so_everything_not_mine_is_an_orphan(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.heartbeat("before-the-crash")  # still looks fresh: a SIGKILL leaves no retire
    old = store.create({}, 1, 1, None, runner="before-the-crash")
    assert [r.id for r in store.orphans("now", stale_after=30)] == [old]

