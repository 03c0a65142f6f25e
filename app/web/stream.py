"""Server-Sent Events: an event log, replayed from the database, then followed live.

Two logs take this one path: an experiment's (`/api/experiments/<id>/events`) and a workshop
room's (`/api/rooms/<code>/events`: the room's own events and, through references, every event
of its experiments). The SSE `id:` of every event is its place in the log: `n` in an
experiment's, `r.n` in a room's (row r of the room's log, event n of the experiment it refers
to; `r` alone for the room's own events). A client that reconnects with `Last-Event-ID` (browsers
do this by themselves) gets every later event and nothing twice. The order of operations is
what makes that true:
1. subscribe to live events first (they queue up while we read the database);
2. replay stored events after the client's last id, in pages;
3. follow the queue, skipping anything already replayed; if the queue skipped ahead (it
   overflowed, see events.Broker), read the hole back from the database.
An experiment's stream ends with exactly one final event (done, failed or cancelled); a room's
never ends. Both end when the client goes away (sse-starlette cancels the generator) and when
the server shuts down (sse-starlette watches uvicorn's exit signal). Database reads run in a
thread so a slow disk never stalls the event loop; each read opens its own session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app import rooms
from app.events import Broker
from app.store import FINAL_STATUSES, Event, Store
from app.web.deps import BrokerDep, ExperimentDep, RoomDep, SettingsDep, StoreDep
from app.web.errors import responses

router = APIRouter(responses=responses(404, 503))
PAGE = 500  # events per database read during replay
POLL_SECONDS = 5.0  # re-check the database this often even without news (belt and braces)
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
ROOM_ID = r"^\d{1,15}(\.\d{1,15})?$"  # r or r.n: well inside a 64-bit integer


@router.get("/api/experiments/{exp_id}/events", response_class=EventSourceResponse,
            tags=["experiments"],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "The event log, then live events"},
                       204: {"description": "The client has the final event already"}})
async def experiment_events(
    row: ExperimentDep,
    store: StoreDep,
    broker: BrokerDep,
    settings: SettingsDep,
    last_event_id: int | None = Header(None, alias="Last-Event-ID", ge=0),
    after: int = Query(0, ge=0, description="Start after this event id (like Last-Event-ID)."),
) -> Response:
    """text/event-stream of `status`, `epoch` and one final `done`/`failed`/`cancelled` event."""
    start = last_event_id if last_event_id is not None else after
    if row.status in FINAL_STATUSES and start >= row.last_seq:
        # the client has the final event already: 204 tells EventSource to stop reconnecting
        return Response(status_code=204)
    return EventSourceResponse(follow(ExperimentLog(row.id, store), start, broker),
                               ping=settings.sse_ping_seconds, headers=HEADERS)


@router.get("/api/rooms/{code}/events", response_class=EventSourceResponse, tags=["rooms"],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "The room's log, then live events"}})
async def room_events(
    room: RoomDep,
    store: StoreDep,
    broker: BrokerDep,
    settings: SettingsDep,
    last_event_id: str | None = Header(None, alias="Last-Event-ID", pattern=ROOM_ID),
    after: str = Query("0", pattern=ROOM_ID,
                       description="Start after this event id (like Last-Event-ID)."),
) -> Response:
    """text/event-stream of the room's own events (`room` state, `member`, `experiment`) and
    every event of its experiments but snapshots (`status`, `epoch`, final), each with `exp`."""
    seq, _, sub = (last_event_id or after).partition(".")
    position = RoomPosition(int(seq), int(sub or 0))
    return EventSourceResponse(follow(RoomLog(room.code, store), position, broker),
                               ping=settings.sse_ping_seconds, headers=HEADERS)


# -- the two logs -------------------------------------------------------------------------------

class ExperimentLog:
    """An experiment's events: position n, then n+1; ends with its final event."""

    def __init__(self, exp_id: str, store: Store):
        self.topic, self.store = exp_id, store

    def read(self, after: int) -> list[Event]:
        return self.store.events_after(self.topic, after, limit=PAGE)

    @staticmethod
    def after(position: int, e: Event) -> int:
        return e.seq

    @staticmethod
    def relation(position: int, e: Event) -> str:
        """"old" (already sent), "next" (in order) or "hole" (something is missing)."""
        return "old" if e.seq <= position else "next" if e.seq == position + 1 else "hole"

    @staticmethod
    def sse(e: Event) -> ServerSentEvent | None:
        return ServerSentEvent(data=e.data, event=e.kind, id=str(e.seq))

    @staticmethod
    def ends(e: Event) -> bool:
        return e.final


@dataclass(frozen=True)
class RoomPosition:
    """Row `seq` of a room's log, its experiment event `sub` (0 for a room's own event), and
    the last experiment event that row covers (`last`; -1 when not known yet)."""

    seq: int
    sub: int = 0
    last: int = -1


class RoomLog:
    """A room's log (app.store.room_events_after): its own events, and its experiments'
    events through references, each with its `ref` (the row that carries it)."""

    def __init__(self, code: str, store: Store):
        self.code, self.store, self.topic = code, store, rooms.topic(code)

    def read(self, after: RoomPosition) -> list[Event]:
        return self.store.room_events_after(self.code, after.seq, after.sub, limit=PAGE)

    @staticmethod
    def after(position: RoomPosition, e: Event) -> RoomPosition:
        return RoomPosition(e.ref.seq, e.seq, e.ref.last)

    @staticmethod
    def relation(position: RoomPosition, e: Event) -> str:
        here, ref = (position.seq, position.sub), e.ref
        if (ref.seq, e.seq) <= here:
            return "old"
        if ref.seq == position.seq and e.seq == position.sub + 1:
            return "next"  # the next event of the same reference
        if ref.seq == position.seq + 1 and position.sub == position.last and e.seq == ref.first:
            return "next"  # the first of the next row, after the whole of this one
        return "hole"

    @staticmethod
    def sse(e: Event) -> ServerSentEvent | None:
        if e.kind == "snapshot":  # keeps its place in the log; rooms do not show them
            return None
        sse_id = f"{e.ref.seq}.{e.seq}" if e.seq else str(e.ref.seq)
        return ServerSentEvent(data=e.data, event=e.kind, id=sse_id)

    @staticmethod
    def ends(e: Event) -> bool:
        return False


# -- the one way to follow a log ---------------------------------------------------------------

async def follow(log: ExperimentLog | RoomLog, position, broker: Broker
                 ) -> AsyncIterator[ServerSentEvent]:
    with broker.subscribe(log.topic) as queue:
        async for e in _replay(log, position):
            position = log.after(position, e)
            if (out := log.sse(e)) is not None:
                yield out
            if log.ends(e):
                return
        while True:
            try:
                e = await asyncio.wait_for(queue.get(), POLL_SECONDS)
            except TimeoutError:
                e = None
            relation = "hole" if e is None else log.relation(position, e)
            if relation == "old":
                continue
            if relation == "hole":  # quiet, or something missing: the database knows
                async for stored in _replay(log, position):
                    position = log.after(position, stored)
                    if (out := log.sse(stored)) is not None:
                        yield out
                    if log.ends(stored):
                        return
                continue
            position = log.after(position, e)
            if (out := log.sse(e)) is not None:
                yield out
            if log.ends(e):
                return


async def _replay(log: ExperimentLog | RoomLog, after) -> AsyncIterator[Event]:
    while True:
        page = await anyio.to_thread.run_sync(log.read, after)
        for e in page:
            yield e
            after = log.after(after, e)
        if len(page) < PAGE:
            return
