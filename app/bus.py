"""Live events between server processes: who tells every open stream that something happened.

One server process (the default, SQLite): `LocalBus` hands events straight to the process's
broker (app.events). Several server processes on one PostgreSQL database (uvicorn workers, or
hosts behind a load balancer): `PostgresBus` sends them with NOTIFY, and every process, the
sender included, LISTENs and hands what arrives to its own broker; so a browser streaming from
process B sees the epochs of an experiment that trains under process A. No extra service: the
database already there carries them.

The bus also carries control messages (today: "cancel this experiment") to whichever process
holds the experiment. Streams never depend on the bus alone: the database is the truth, and a
stream that hears nothing re-reads it (app.web.stream), so a lost notification costs latency,
never an event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple

from app.events import Broker
from app.store import Event, RoomRef, Store

log = logging.getLogger(__name__)
Control = Callable[[dict], None]

EVENTS, CONTROL = "dp_events", "dp_control"  # NOTIFY channels
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more
BEYOND = 10**15  # an experiment seq past any reference's range: "after the whole row"
CONNECT_TIMEOUT = 5  # seconds: a database that does not answer must not hang a thread


class LocalBus:
    """Everything in one process."""

    shared = False

    def __init__(self, broker: Broker, on_control: Control | None = None):
        self.broker, self.on_control = broker, on_control

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        self.broker.publish_threadsafe(topic, events)

    def control(self, message: dict) -> None:
        if self.on_control is not None:
            self.on_control(message)


class PostgresBus:
    """NOTIFY out, LISTEN in (one listening connection per process, on its own thread)."""

    shared = True

    def __init__(self, url: str, broker: Broker, store: Store, on_control: Control | None = None):
        self.url = _libpq_url(url)
        self.broker, self.store, self.on_control = broker, store, on_control
        self._send_lock = threading.Lock()
        self._sender = None
        self._stopping = threading.Event()
        self._listening = threading.Event()

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._listen, name="bus-listener", daemon=True)
        self._thread.start()
        self._listening.wait(timeout)  # events sent from here on reach this process too

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5.0)
        with self._send_lock, contextlib.suppress(Exception):
            if self._sender is not None:
                self._sender.close()

    # -- out ----------------------------------------------------------------------------------

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        for payload in _payloads(topic, events):
            self._notify(EVENTS, payload)

    def control(self, message: dict) -> None:
        self._notify(CONTROL, json.dumps(message))

    def _notify(self, channel: str, payload: str) -> None:
        import psycopg

        with self._send_lock:
            for attempt in (1, 2):  # a dropped connection is reopened once
                try:
                    if self._sender is None or self._sender.closed:
                        self._sender = psycopg.connect(self.url, autocommit=True,
                                                       connect_timeout=CONNECT_TIMEOUT)
                    self._sender.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                    return
                except psycopg.OperationalError:
                    self._sender = None
                    if attempt == 2:
                        log.warning("NOTIFY failed; streams will catch up from the database")

    # -- in -----------------------------------------------------------------------------------

    def _listen(self) -> None:
        import psycopg

        delay = 0.5
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT) as conn:
                    conn.execute(f"LISTEN {EVENTS}")
                    conn.execute(f"LISTEN {CONTROL}")
                    self._listening.set()
                    delay = 0.5
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            try:
                                self._received(note.channel, note.payload)
                            except Exception:  # one bad note must not drop the others
                                log.exception("bus: could not handle a notification")
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("bus listener lost its connection; reconnecting in %.1f s", delay)
                time.sleep(delay)
                delay = min(10.0, delay * 2)

    def _received(self, channel: str, payload: str) -> None:
        message = json.loads(payload)
        if channel == CONTROL:
            if self.on_control is not None:
                try:
                    self.on_control(message)
                except Exception:  # e.g. the database is busy: keep listening
                    log.exception("control message %s failed", message)
            return
        topic = message["t"]
        if "ref" in message:  # an event too large to travel: read it from its log
            events = self._reread(topic, message["ref"], message.get("room"))
        else:
            events = [Event(seq, kind, data, RoomRef(*room) if room else None)
                      for seq, kind, data, *room in message["e"]]
        self.broker.publish_threadsafe(topic, events)

    def _reread(self, topic: str, seq: int, room: list | None) -> list[Event]:
        """The one event at `seq` of an experiment's log or, with `room` (its RoomRef), of a
        room's log: its own event (seq 0), or the experiment event it refers to."""
        if room is None:
            return self.store.events_after(topic, seq - 1, limit=1)
        ref = RoomRef(*room)
        if seq:
            return self.store.room_events_after(ref.code, ref.seq, seq - 1, limit=1)
        return self.store.room_events_after(ref.code, ref.seq - 1, BEYOND, limit=1)


def _payloads(topic: str, events: Sequence[Event]) -> list[str]:
    """Events as NOTIFY payloads under the size limit: as many per payload as fit; one that
    fits nowhere travels as a reference to its place in the log."""
    out, batch = [], []

    def flush() -> None:
        if batch:
            out.append(json.dumps({"t": topic, "e": batch}))
            batch.clear()

    size = len(json.dumps({"t": topic, "e": []}))
    for e in events:
        room = [] if e.ref is None else list(astuple(e.ref))
        item = [e.seq, e.kind, e.data, *room]
        item_size = len(json.dumps(item).encode()) + 2
        if size + item_size > MAX_PAYLOAD:
            flush()
            size = len(json.dumps({"t": topic, "e": []}))
            if size + item_size > MAX_PAYLOAD:
                out.append(json.dumps({"t": topic, "ref": e.seq, **({"room": room} if room
                                                                     else {})}))
                continue
        batch.append(item)
        size += item_size
    flush()
    return out


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq reads it (no `+driver`)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


Bus = LocalBus | PostgresBus


def bus_for(store: Store, url: str, broker: Broker, on_control: Control | None = None):
    """The bus that fits the database: NOTIFY/LISTEN on PostgreSQL, in-process otherwise."""
    if store.engine.dialect.name == "postgresql":
        return PostgresBus(url, broker, store, on_control)
    return LocalBus(broker, on_control)
