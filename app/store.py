"""Persistence: experiments and their event log, through SQLAlchemy. The database is the truth.

Two tables. `experiments` holds one row per experiment (config, status, summary). `events` is
the append-only log of everything an experiment's stream ever said, numbered 1, 2, 3... per
experiment; that number is the SSE event id. Streams replay the log from any point and then
follow live, so a share link opened tomorrow and a chart watching a run now use the same path,
and per-epoch metrics are simply the `epoch` events.

All writes in a process go through one lock, each a short transaction (a batch of epochs, a
status change), so SQLite never sees two writers of ours at once. SQLite runs in WAL mode:
readers (pages, streams) never wait for the writer.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

FINAL_STATUSES = ("done", "failed", "cancelled")
STATUSES = ("queued", "running", *FINAL_STATUSES)


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


class RoomRow(Base):
    __tablename__ = "rooms"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)  # e.g. K7Q-2MX
    name: Mapped[str] = mapped_column(String(80), default="")
    presenter_key: Mapped[str] = mapped_column(String(64))  # sha256 of the presenter secret
    created_at: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(Text)  # JSON: challenge, locked, leaderboard, closed


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
class Event:
    seq: int
    kind: str
    data: str  # JSON text

    @property
    def final(self) -> bool:
        return self.kind in FINAL_STATUSES


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


def _add_missing_columns(engine: Engine) -> None:
    """Additive migration: a database made by an older version gets the nullable columns that
    were added since (create_all only creates missing tables)."""
    have = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            existing = {c["name"] for c in have.get_columns(table.name)}
            for column in table.columns:
                if column.name not in existing and column.nullable:
                    kind = column.type.compile(engine.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


class Store:
    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._write = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------------

    def create(self, config: dict, n_runs: int, total_epochs: int, owner: str | None,
               room: str | None = None, author: str | None = None) -> str:
        """Insert a queued experiment and its first event; returns its id."""
        exp_id = new_id()
        with self._write, Session(self.engine) as s, s.begin():
            s.add(ExperimentRow(
                id=exp_id, created_at=now(), status="queued", name=config.get("name", ""),
                config=json.dumps(config), n_runs=n_runs, total_epochs=total_epochs,
                owner=owner, last_seq=0, room=room, author=author,
            ))
            s.flush()
            self._append(s, exp_id, [("status", {"status": "queued"})])
        return exp_id

    def append(self, exp_id: str, events: Sequence[tuple[str, dict]], **fields) -> list[Event]:
        """Append events and update experiment fields in one transaction; returns the events."""
        with self._write, Session(self.engine) as s, s.begin():
            return self._append(s, exp_id, events, **fields)

    def _append(self, s: Session, exp_id: str, events, **fields) -> list[Event]:
        row = s.get(ExperimentRow, exp_id, with_for_update=True)
        if row is None:
            return []
        out = []
        for kind, data in events:
            row.last_seq += 1
            text = json.dumps(data)
            s.add(EventRow(experiment_id=exp_id, seq=row.last_seq, kind=kind, data=text))
            out.append(Event(row.last_seq, kind, text))
        row.epochs_done += sum(1 for kind, _ in events if kind == "epoch")
        for key, value in fields.items():
            setattr(row, key, value)
        return out

    def transition(self, exp_id: str, status: str, extra: dict | None = None,
                   **fields) -> list[Event]:
        """Move to `status` and log it: a `status` event, or the final event if final.

        Does nothing (returns []) if the experiment already ended, so a late cancel can never
        overwrite `done`, and a crash report never overwrites `cancelled`.
        """
        with self._write, Session(self.engine) as s, s.begin():
            row = s.get(ExperimentRow, exp_id)
            if row is None or row.status in FINAL_STATUSES:
                return []
            if status == "running":
                fields.setdefault("started_at", now())
            if status in FINAL_STATUSES:
                fields.setdefault("finished_at", now())
            kind = status if status in FINAL_STATUSES else "status"
            return self._append(s, exp_id, [(kind, {"status": status, **(extra or {})})],
                                status=status, **fields)

    def delete(self, exp_id: str) -> None:
        """Remove an experiment and its events."""
        with self._write, Session(self.engine) as s, s.begin():
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

    def set_room_state(self, code: str, state: dict) -> None:
        with self._write, Session(self.engine) as s, s.begin():
            s.execute(update(RoomRow).where(RoomRow.code == code)
                      .values(state=json.dumps(state)))

    def join(self, code: str, client: str, name: str) -> None:
        with self._write, Session(self.engine) as s, s.begin():
            member = s.get(MemberRow, (code, client))
            if member is None:
                s.add(MemberRow(room=code, client=client, name=name, joined_at=now()))
            else:
                member.name = name

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

    def count(self, *statuses: str) -> int:
        q = select(func.count()).select_from(ExperimentRow).where(
            ExperimentRow.status.in_(statuses))
        with Session(self.engine) as s:
            return s.scalar(q) or 0
