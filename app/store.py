"""Persistence: experiments and their event log, through SQLAlchemy. The database is the truth.

Two tables. `experiments` holds one row per experiment (config, status, summary). `events` is
the append-only log of everything an experiment's stream ever said, numbered 1, 2, 3... per
experiment; that number is the SSE event id. Streams replay the log from any point and then
follow live, so a share link opened tomorrow and a chart watching a run now use the same path,
and per-epoch metrics are simply the `epoch` events.

All writes in a process go through one lock, each a short transaction (a batch of epochs, a
status change), so SQLite never sees two writers of ours at once. SQLite runs in WAL mode:
readers (pages, streams) never wait for the writer.

The same code runs on PostgreSQL (`DP_DATABASE_URL=postgresql://...`), where several server
processes share one database: appending locks the experiment's row, so sequence numbers stay
1, 2, 3... whoever writes. Each process that trains registers as a *runner* with a heartbeat;
an experiment records its runner, so a server that starts never takes over the work of another
live one, only that of dead ones (`orphans`). The schema is versioned with Alembic
(app/migrations); `Store` upgrades the database when it opens it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    case,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    true,
    update,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

log = logging.getLogger(__name__)
FINAL_STATUSES = ("done", "failed", "cancelled")
STATUSES = ("queued", "running", *FINAL_STATUSES)


class DatabaseDamaged(Exception):
    """The database file is not a sound database (Store.check says what is wrong)."""


class Base(DeclarativeBase):
    pass


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(32))  # ISO 8601, UTC
    started_at: Mapped[str | None] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(80), default="")
    config: Mapped[str] = mapped_column(Text)  # validated ExperimentConfig as JSON
    n_runs: Mapped[int] = mapped_column(Integer)
    total_epochs: Mapped[int] = mapped_column(Integer)  # runs x epochs, for progress
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)  # JSON
    owner: Mapped[str | None] = mapped_column(String(64), index=True)  # browser client id
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    room: Mapped[str | None] = mapped_column(String(16), index=True)  # workshop room code
    author: Mapped[str | None] = mapped_column(String(40))  # display name in that room
    runner: Mapped[str | None] = mapped_column(String(64), index=True)  # server process on it
    cancel_requested: Mapped[bool | None] = mapped_column(Boolean)  # asked of another server


class RunnerRow(Base):
    __tablename__ = "runners"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    heartbeat: Mapped[float] = mapped_column(Float)  # unix time of its last sign of life


class RoomRow(Base):
    __tablename__ = "rooms"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)  # e.g. K7Q-2MX
    name: Mapped[str] = mapped_column(String(80), default="")
    presenter_key: Mapped[str] = mapped_column(String(64))  # sha256 of the presenter secret
    created_at: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(Text)  # JSON: challenge, locked, leaderboard, closed
    last_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # room log


class RoomEventRow(Base):
    """The room's log: its own events (state, members, new experiments) and references to
    ranges of its experiments' logs, numbered 1, 2, ... per room. An epoch is stored once, in
    its experiment's log; the room's stream reads it through the reference."""

    __tablename__ = "room_events"

    room: Mapped[str] = mapped_column(ForeignKey("rooms.code", ondelete="CASCADE"),
                                      primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "ref", or room, member, experiment
    data: Mapped[str | None] = mapped_column(Text)  # JSON payload of a room's own event
    experiment_id: Mapped[str | None] = mapped_column(String(32), index=True)  # a ref's
    first: Mapped[int | None] = mapped_column(Integer)  # a ref's range of experiment seqs
    last: Mapped[int | None] = mapped_column(Integer)


class MemberRow(Base):
    __tablename__ = "members"

    room: Mapped[str] = mapped_column(ForeignKey("rooms.code", ondelete="CASCADE"),
                                      primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    joined_at: Mapped[str] = mapped_column(String(32))


class EventRow(Base):
    __tablename__ = "events"

    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1, 2, ... = SSE event id
    kind: Mapped[str] = mapped_column(String(16))  # status, epoch, done, failed, cancelled
    data: Mapped[str] = mapped_column(Text)  # JSON payload, exactly as streamed


@dataclass(frozen=True)
class RoomRef:
    """Where an event sits in a room's log: row `seq` of room `code`, which covers the
    experiment events `first`..`last` (0, 0 for the room's own events)."""

    code: str
    seq: int
    first: int = 0
    last: int = 0


@dataclass(frozen=True)
class Event:
    seq: int  # in its experiment's log (0 for a room's own event)
    kind: str
    data: str  # JSON text
    ref: RoomRef | None = None  # set when the event is also part of a room's log

    @property
    def final(self) -> bool:
        return self.kind in FINAL_STATUSES


def tag(exp_id: str, data: str) -> str:
    """An experiment's event as a room shows it: its JSON object with `exp` first."""
    body = data[1:].lstrip()
    return f'{{"exp": {json.dumps(exp_id)}' + (", " + body if body != "}" else "}")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    """128 random bits, URL-safe: a share link nobody can guess."""
    return secrets.token_urlsafe(16)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL keeps it consistent
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_305_114_410  # PostgreSQL advisory lock: one server migrates at a time


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a new database gets all of them).

    A database made before migrations existed (tables, no alembic_version) gets the tables and
    nullable columns added since, then is stamped as current."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
        cfg.attributes["connection"] = conn
        tables = set(inspect(conn).get_table_names())
        if "experiments" in tables and "alembic_version" not in tables:
            Base.metadata.create_all(conn)
            _add_missing_columns(conn)
            command.stamp(cfg, "head")
        command.upgrade(cfg, "head")


def _add_missing_columns(conn) -> None:
    have = inspect(conn)
    for table in Base.metadata.sorted_tables:
        existing = {c["name"] for c in have.get_columns(table.name)}
        for column in table.columns:
            if column.name not in existing and column.nullable:
                kind = column.type.compile(conn.dialect)
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def engine_for(url: str) -> Engine:
    """An engine for a database URL; `postgresql://` means the psycopg (3) driver."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def open_store(url: str, check: bool = True) -> Store:
    """The store of a server at start: opened, migrated and checked. A file that is not a
    sound database raises DatabaseDamaged saying which file and what to do, instead of a
    server that answers 500s."""
    from sqlalchemy.exc import DatabaseError, OperationalError

    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else "the database"
    deadline = time.monotonic() + LOCKED_AT_START_SECONDS
    while True:
        try:
            store = Store(url)
            break
        except OperationalError as e:  # locked by another program, or unreachable: wait
            if time.monotonic() > deadline:
                raise
            log.warning("the database is not available yet (%s); retrying", _first_line(e))
            time.sleep(1.0)
        except DatabaseError as e:
            raise DatabaseDamaged(f"{where} cannot be opened as a database "
                                  f"({_first_line(e)}): {RESTORE}") from e
    try:
        if check:
            store.check()
    except (DatabaseDamaged, DatabaseError) as e:
        store.close()
        raise DatabaseDamaged(f"{where} is damaged ({_first_line(e)}): {RESTORE}") from e
    return store


LOCKED_AT_START_SECONDS = 60.0  # a database locked at start is waited for this long
RESTORE = ("restore it from a backup, or move it away to start with an empty one (the server "
           "refuses to run on it)")


def _first_line(e: Exception) -> str:
    text_ = str(getattr(e, "orig", None) or e)
    return (text_.splitlines() or [type(e).__name__])[0][:200]


class Store:
    def __init__(self, url: str):
        self.engine: Engine = engine_for(url)
        migrate(self.engine)
        self._write = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when other server processes may use this database too (not SQLite)."""
        return self.engine.dialect.name != "sqlite"

    def close(self) -> None:
        self.engine.dispose()

    def check(self) -> None:
        """At start: raise DatabaseDamaged unless the database is sound (SQLite: its own
        quick_check of every page; PostgreSQL checks itself)."""
        if self.shared:
            return
        with self.engine.connect() as conn:
            problems = [row[0] for row in conn.exec_driver_sql("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise DatabaseDamaged("; ".join(problems[:3]))

    def readable(self) -> None:
        """A cheap read of what the app needs (the schema's version, the newest experiment,
        the end of the event log): raises if the database cannot be read. Liveness. On
        SQLite through a connection of its own, opened for it, read-only: a pooled one keeps
        pages in memory and would not notice a file damaged under it."""
        queries = ["SELECT version_num FROM alembic_version",
                   "SELECT id FROM experiments ORDER BY created_at DESC LIMIT 1",
                   "SELECT seq FROM events ORDER BY experiment_id DESC, seq DESC LIMIT 1"]
        if self.shared:
            with self.engine.connect() as conn:
                for q in queries:
                    conn.execute(text(q)).all()
            return
        import sqlite3

        path = Path(self.engine.url.database).resolve()
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            for q in queries:
                conn.execute(q).fetchall()
        finally:
            conn.close()

    # -- writes -------------------------------------------------------------------------------

    def create(self, config: dict, n_runs: int, total_epochs: int, owner: str | None,
               room: str | None = None, author: str | None = None,
               runner: str | None = None) -> str:
        """Insert a queued experiment (held by `runner`) and its first event; returns its id."""
        return self.create_with_events(config, n_runs, total_epochs, owner, room, author,
                                       runner)[0]

    def create_with_events(self, config: dict, n_runs: int, total_epochs: int,
                           owner: str | None, room: str | None = None,
                           author: str | None = None, runner: str | None = None,
                           room_entry: dict | None = None) -> tuple[str, list[Event]]:
        """create(), also returning the events to publish. In a room, the room's log first
        gets an `experiment` event (`room_entry`, tagged with the id), so its board knows the
        experiment before any of its epochs."""
        exp_id = new_id()
        with self._write, self.engine.begin() as conn:
            conn.execute(insert(ExperimentRow).values(
                id=exp_id, created_at=now(), status="queued", name=config.get("name", ""),
                config=json.dumps(config), n_runs=n_runs, total_epochs=total_epochs,
                epochs_done=0, owner=owner, last_seq=0, room=room, author=author, runner=runner,
            ))
            out = []
            if room is not None:
                out += self._room_append(conn, room, "experiment",
                                         {"exp": exp_id, **(room_entry or {})})
            out += self._append(conn, exp_id, [("status", {"status": "queued"})])
        return exp_id, out

    def append(self, exp_id: str, events: Sequence[tuple[str, dict]],
               held_by: str | None = None, **fields) -> list[Event]:
        """Append events and update experiment fields in one transaction; returns the events
        ([] if `held_by` is given and no longer holds a running experiment: another server
        took it over)."""
        with self._write, self.engine.begin() as conn:
            only_from = ("running",) if held_by else None
            return self._append(conn, exp_id, events, only_from, held_by, **fields)

    def _append(self, conn: Connection, exp_id: str, events,
                only_from: Sequence[str] | None = None, held_by: str | None = None,
                **fields) -> list[Event]:
        """Two statements whatever the number of events: the experiment's row is updated (which
        locks it until commit, so sequence numbers never collide across servers) and returns
        the new last number; then the events are inserted together. With `only_from` (a
        status) or `held_by` (a runner), an experiment that is not so is left alone
        (returns [])."""
        n = len(events)
        q = update(ExperimentRow).where(ExperimentRow.id == exp_id)
        if only_from is not None:
            q = q.where(ExperimentRow.status.in_(only_from))
        if held_by is not None:
            q = q.where(ExperimentRow.runner == held_by)
        got = conn.execute(q.values(
            last_seq=ExperimentRow.last_seq + n,
            epochs_done=ExperimentRow.epochs_done + sum(1 for kind, _ in events if kind == "epoch"),
            **fields,
        ).returning(ExperimentRow.last_seq, ExperimentRow.room)).first()
        if got is None:
            return []
        last, room = got
        ref = None
        if room is not None and n:  # the room's log gets one reference to the whole batch
            ref = RoomRef(room, self._room_seq(conn, room), last - n + 1, last)
            conn.execute(insert(RoomEventRow).values(
                room=room, seq=ref.seq, kind="ref", experiment_id=exp_id, first=ref.first,
                last=ref.last))
        out = [Event(last - n + 1 + i, kind, json.dumps(data), ref) for i, (kind, data) in
               enumerate(events)]
        if out:
            conn.execute(insert(EventRow), [{"experiment_id": exp_id, "seq": e.seq,
                                             "kind": e.kind, "data": e.data} for e in out])
        return out

    @staticmethod
    def _room_seq(conn: Connection, code: str) -> int:
        """The room's next log number; the update locks the room's row until commit, so
        numbers never collide, whoever writes (as _append does for experiments)."""
        return conn.execute(update(RoomRow).where(RoomRow.code == code)
                            .values(last_seq=RoomRow.last_seq + 1)
                            .returning(RoomRow.last_seq)).scalar_one()

    def _room_append(self, conn: Connection, code: str, kind: str, data: dict) -> list[Event]:
        ref = RoomRef(code, self._room_seq(conn, code))
        text_ = json.dumps(data)
        conn.execute(insert(RoomEventRow).values(room=code, seq=ref.seq, kind=kind,
                                                 data=text_))
        return [Event(0, kind, text_, ref)]

    def transition(self, exp_id: str, status: str, extra: dict | None = None,
                   only_from: Sequence[str] = ("queued", "running"), held_by: str | None = None,
                   **fields) -> list[Event]:
        """Move to `status` and log it: a `status` event, or the final event if final.

        Does nothing (returns []) unless the status is one of `only_from`; by default, if the
        experiment already ended, so a late cancel can never overwrite `done`, and a crash
        report never overwrites `cancelled`. With `held_by`, only while that runner holds it.
        """
        if status == "running":
            fields.setdefault("started_at", now())
        if status in FINAL_STATUSES:
            fields.setdefault("finished_at", now())
        kind = status if status in FINAL_STATUSES else "status"
        with self._write, self.engine.begin() as conn:
            return self._append(conn, exp_id, [(kind, {"status": status, **(extra or {})})],
                                only_from, held_by, status=status, **fields)

    def delete(self, exp_id: str) -> None:
        """Remove an experiment and its events (its room's references to them too)."""
        with self._write, Session(self.engine) as s, s.begin():
            s.execute(sa_delete(RoomEventRow).where(RoomEventRow.experiment_id == exp_id))
            s.execute(sa_delete(EventRow).where(EventRow.experiment_id == exp_id))
            s.execute(sa_delete(ExperimentRow).where(ExperimentRow.id == exp_id))

    def rename(self, exp_id: str, name: str) -> None:
        with self._write, Session(self.engine) as s, s.begin():
            s.execute(update(ExperimentRow).where(ExperimentRow.id == exp_id).values(name=name))

    # -- reads --------------------------------------------------------------------------------

    def get(self, exp_id: str) -> ExperimentRow | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(ExperimentRow, exp_id)

    def events_after(self, exp_id: str, after: int = 0, kinds: Iterable[str] | None = None,
                     limit: int | None = None) -> list[Event]:
        q = select(EventRow.seq, EventRow.kind, EventRow.data).where(
            EventRow.experiment_id == exp_id, EventRow.seq > after
        ).order_by(EventRow.seq)
        if kinds is not None:
            q = q.where(EventRow.kind.in_(list(kinds)))
        if limit:
            q = q.limit(limit)
        with Session(self.engine) as s:
            return [Event(*r) for r in s.execute(q)]

    def epochs_by_run(self, exp_id: str, n_runs: int) -> list[list[dict]]:
        """Every stored epoch of every run, in order: the runs' curves."""
        runs: list[list[dict]] = [[] for _ in range(n_runs)]
        for e in self.events_after(exp_id, kinds=["epoch"]):
            data = json.loads(e.data)
            run = data.pop("run")
            runs[run].append(data)
        return runs

    def recent(self, owner: str, limit: int) -> list[ExperimentRow]:
        q = (select(ExperimentRow).where(ExperimentRow.owner == owner)
             .order_by(ExperimentRow.created_at.desc()).limit(limit))
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.scalars(q))

    def with_status(self, *statuses: str) -> list[ExperimentRow]:
        q = (select(ExperimentRow).where(ExperimentRow.status.in_(statuses))
             .order_by(ExperimentRow.created_at))
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.scalars(q))

    # -- rooms ----------------------------------------------------------------------------------

    def create_room(self, code: str, name: str, presenter_key: str, state: dict) -> bool:
        """False if the code is taken (the caller draws another)."""
        with self._write, Session(self.engine) as s, s.begin():
            if s.get(RoomRow, code) is not None:
                return False
            s.add(RoomRow(code=code, name=name, presenter_key=presenter_key,
                          created_at=now(), state=json.dumps(state)))
            return True

    def get_room(self, code: str) -> RoomRow | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(RoomRow, code)

    def set_room_state(self, code: str, state: dict) -> list[Event]:
        """Store the room's state and log it as a `room` event (returned, to publish)."""
        with self._write, self.engine.begin() as conn:
            conn.execute(update(RoomRow).where(RoomRow.code == code)
                         .values(state=json.dumps(state)))
            return self._room_append(conn, code, "room", state)

    def join(self, code: str, client: str, name: str) -> list[Event]:
        """Add a member (or rename one) and log a `member` event (returned, to publish)."""
        with self._write, self.engine.begin() as conn:
            key = {"room": code, "client": client}
            updated = conn.execute(update(MemberRow).filter_by(**key).values(name=name))
            if updated.rowcount == 0:
                conn.execute(insert(MemberRow).values(**key, name=name, joined_at=now()))
            return self._room_append(conn, code, "member", {"name": name})

    def room_events_after(self, code: str, seq: int = 0, sub: int = 0,
                          limit: int | None = None, owner: str | None = None) -> list[Event]:
        """The room's log after position (seq, sub), references expanded into their
        experiments' events, in order: row `seq` from its experiment event after `sub` on,
        then every later row. Snapshots keep their place, with their data only for the
        experiments of `owner` (a room shows each person their own). Each event's `ref` says
        where it sits."""
        e = EventRow.__table__.alias("e")
        r = RoomEventRow.__table__
        x = ExperimentRow.__table__
        others = (e.c.kind == "snapshot") & ((x.c.owner != owner) | x.c.owner.is_(None)
                                             if owner else true())
        data = case((others, ""), else_=e.c.data)
        q = (select(r.c.seq, r.c.kind, r.c.data, r.c.experiment_id, r.c.first, r.c.last,
                    e.c.seq, e.c.kind, data)
             .select_from(r.outerjoin(e, (r.c.kind == "ref")
                                      & (e.c.experiment_id == r.c.experiment_id)
                                      & e.c.seq.between(r.c.first, r.c.last))
                          .outerjoin(x, x.c.id == r.c.experiment_id))
             .where(r.c.room == code, (r.c.seq > seq) | ((r.c.seq == seq) & (e.c.seq > sub)))
             .order_by(r.c.seq, e.c.seq))
        if limit:
            q = q.limit(limit)
        out = []
        with self.engine.connect() as conn:
            for rseq, rkind, rdata, exp_id, first, last, eseq, ekind, edata in conn.execute(q):
                if rkind != "ref":
                    out.append(Event(0, rkind, rdata, RoomRef(code, rseq)))
                elif eseq is not None:  # (a deleted experiment leaves nothing to expand)
                    out.append(Event(eseq, ekind, tag(exp_id, edata) if edata else "",
                                     RoomRef(code, rseq, first, last)))
        return out

    def member(self, code: str, client: str) -> MemberRow | None:
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(MemberRow, (code, client))

    def members(self, code: str) -> list[MemberRow]:
        q = select(MemberRow).where(MemberRow.room == code).order_by(MemberRow.joined_at)
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.scalars(q))

    def in_room(self, code: str) -> list[ExperimentRow]:
        q = (select(ExperimentRow).where(ExperimentRow.room == code)
             .order_by(ExperimentRow.created_at))
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.scalars(q))

    def active_count(self, owner: str, leave_out: str | None = None) -> int:
        """Experiments of one browser that are queued or running (on any server)."""
        q = select(func.count()).select_from(ExperimentRow).where(
            ExperimentRow.owner == owner, ExperimentRow.status.in_(("queued", "running")),
            ExperimentRow.id != (leave_out or ""))
        with Session(self.engine) as s:
            return s.scalar(q) or 0

    def count(self, *statuses: str) -> int:
        q = select(func.count()).select_from(ExperimentRow).where(
            ExperimentRow.status.in_(statuses))
        with Session(self.engine) as s:
            return s.scalar(q) or 0

    # -- runners: which server process trains what ----------------------------------------------

    def _clock(self, s: Session) -> float:
        """Now, in unix seconds, by the database's clock when servers share it: their own
        clocks may disagree, and a server whose clock runs late must not look dead."""
        if not self.shared:
            return time.time()
        return float(s.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar())

    def heartbeat(self, runner: str) -> None:
        """Say `runner` is alive (every few seconds while it serves)."""
        with self._write, Session(self.engine) as s, s.begin():
            row = s.get(RunnerRow, runner)
            if row is None:
                s.add(RunnerRow(id=runner, heartbeat=self._clock(s)))
            else:
                row.heartbeat = self._clock(s)

    def retire(self, runner: str) -> None:
        """`runner` stopped cleanly: others need not wait for its heartbeat to go stale."""
        with self._write, Session(self.engine) as s, s.begin():
            s.execute(sa_delete(RunnerRow).where(RunnerRow.id == runner))

    def claim(self, exp_id: str, runner: str, previous: str | None) -> bool:
        """Take an orphan over from `previous`; False if another server was quicker."""
        with self._write, Session(self.engine) as s, s.begin():
            held_by = (ExperimentRow.runner.is_(None) if previous is None
                       else ExperimentRow.runner == previous)
            done = s.execute(update(ExperimentRow).where(ExperimentRow.id == exp_id, held_by)
                             .values(runner=runner))
            return done.rowcount == 1

    def request_cancel(self, exp_id: str) -> None:
        """Note that someone asked to stop it (its runner polls for these)."""
        with self._write, Session(self.engine) as s, s.begin():
            s.execute(update(ExperimentRow).where(ExperimentRow.id == exp_id)
                      .values(cancel_requested=True))

    def cancels_for(self, runner: str) -> list[str]:
        """Experiments of `runner`, still queued or running, that someone asked to stop."""
        q = select(ExperimentRow.id).where(
            ExperimentRow.runner == runner, ExperimentRow.cancel_requested.is_(True),
            ExperimentRow.status.in_(("queued", "running")))
        with Session(self.engine) as s:
            return list(s.scalars(q))

    def orphans(self, runner: str, stale_after: float) -> list[ExperimentRow]:
        """Queued or running experiments whose runner is gone: none recorded, retired, or
        silent for `stale_after` seconds. On SQLite only one server runs, so every experiment
        not of `runner` is an orphan."""
        q = select(ExperimentRow).where(ExperimentRow.status.in_(("queued", "running")))
        with Session(self.engine, expire_on_commit=False) as s:
            if self.shared:
                alive = select(RunnerRow.id).where(
                    RunnerRow.heartbeat > self._clock(s) - stale_after)
                q = q.where(ExperimentRow.runner.is_(None) | ExperimentRow.runner.not_in(alive))
            else:
                q = q.where(ExperimentRow.runner.is_(None) | (ExperimentRow.runner != runner))
            return list(s.scalars(q.order_by(ExperimentRow.created_at)))

