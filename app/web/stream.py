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

What a stream may cost is bounded (app.web.limits.StreamCaps): a server serves at most
DP_MAX_STREAMS at once and one network address DP_MAX_STREAMS_PER_ADDRESS (503 or 429 with
Retry-After beyond); replay reads small pages and sends each as one encoded chunk, so a slow
reader holds one chunk; a client that takes no data for DP_SSE_SEND_TIMEOUT_SECONDS is dropped
(a browser reconnects and resumes); the database reads of all streams share a few threads of
their own, so a thousand streams replaying never keep a page request waiting for a thread.
An experiment deleted while its stream is open ends the stream with a final `cancelled`
event (`"deleted": true`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError

from app import rooms
from app.events import Broker
from app.store import FINAL_STATUSES, Event, Store
from app.web.deps import BrokerDep, RoomDep, SettingsDep, StoreDep, ViewerDep, get_experiment
from app.web.errors import responses

router = APIRouter(responses=responses(404, 429, 503))
log_ = logging.getLogger(__name__)
PAGE = 25  # events per database read during replay (what a slow reader holds at most)
LIVE_BATCH = 64  # live events sent in one chunk at most
READ_THREADS = 8  # threads for the database reads of all streams (see module docstring)
MAX_ID = 10**15  # an event id beyond any log: well inside a 64-bit integer
POLL_SECONDS = 5.0  # re-check the database this often even without news (belt and braces)
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
ROOM_ID = r"^\d{1,15}(\.\d{1,15})?$"  # r or r.n: well inside a 64-bit integer


@router.get("/api/experiments/{exp_id}/events", response_class=EventSourceResponse,
            tags=["experiments"],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "The event log, then live events"},
                       204: {"description": "The client has the final event already"}})
async def experiment_events(
    exp_id: str,
    store: StoreDep,
    broker: BrokerDep,
    settings: SettingsDep,
    request: Request,
    last_event_id: int | None = Header(None, alias="Last-Event-ID", ge=0, le=MAX_ID),
    after: int = Query(0, ge=0, le=MAX_ID,
                       description="Start after this event id (like Last-Event-ID)."),
) -> Response:
    """text/event-stream of `status`, `epoch` and one final `done`/`failed`/`cancelled` event."""
    # read on the streams' own threads (not a `def` dependency's): a thousand streams
    # opening at once must not keep the pages waiting for a thread
    row = await anyio.to_thread.run_sync(get_experiment, exp_id, store, limiter=_reads())
    start = last_event_id if last_event_id is not None else after
    if start > row.last_seq:  # an id this log never gave: the stream would wait forever
        where = "header" if last_event_id is not None else "query"
        name = "Last-Event-ID" if last_event_id is not None else "after"
        raise RequestValidationError([{
            "loc": (where, name), "type": "less_than_equal", "input": start,
            "msg": f"event id {start} is past this experiment's last event ({row.last_seq})"}])
    if row.status in FINAL_STATUSES and start >= row.last_seq:
        # the client has the final event already: 204 tells EventSource to stop reconnecting
        return Response(status_code=204)
    return open_stream(request, settings, follow(ExperimentLog(row.id, store), start, broker))


@router.get("/api/rooms/{code}/events", response_class=EventSourceResponse, tags=["rooms"],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "The room's log, then live events"}})
async def room_events(
    request: Request,
    room: RoomDep,
    viewer: ViewerDep,
    store: StoreDep,
    broker: BrokerDep,
    settings: SettingsDep,
    last_event_id: str | None = Header(None, alias="Last-Event-ID", pattern=ROOM_ID),
    after: str = Query("0", pattern=ROOM_ID,
                       description="Start after this event id (like Last-Event-ID)."),
) -> Response:
    """text/event-stream of the room's own events (`room` state, `member`, `experiment`) and
    every event of its experiments (`status`, `epoch`, final), each with `exp`, as this viewer
    may see them: their own experiments' snapshots too; others' epochs only while the
    leaderboard is shown (or to the presenter)."""
    seq, _, sub = (last_event_id or after).partition(".")
    position = RoomPosition(int(seq), int(sub or 0))
    log = RoomLog(room.code, store, viewer, rooms.state_of(room), room.last_seq)
    return open_stream(request, settings, follow(log, position, broker))


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

    def gone(self, position: int) -> Event | None:
        """The final event of an experiment deleted while its stream was open (its log is
        gone with it), or None while it exists."""
        if self.store.get(self.topic) is not None:
            return None
        return Event(position + 1, "cancelled", DELETED)


@dataclass(frozen=True)
class RoomPosition:
    """Row `seq` of a room's log, its experiment event `sub` (0 for a room's own event), and
    the last experiment event that row covers (`last`; -1 when not known yet)."""

    seq: int
    sub: int = 0
    last: int = -1


class RoomLog:
    """A room's log (app.store.room_events_after) as one viewer sees it: its own events, and
    its experiments' events through references, each with its `ref` (the row that carries it).

    What a viewer sees follows the room's state as the stream goes: a participant with the
    leaderboard hidden gets only their own experiments' epochs and scores (others': their
    status); snapshots only ever of their own. Each `experiment` event says whether it is the
    viewer's (`mine`), each `room` event whether they now see everyone (`sees_all`): a page
    that sees more than before reopens the stream from the start."""

    def __init__(self, code: str, store: Store, viewer: rooms.Viewer, state: rooms.RoomState,
                 state_seq: int):
        self.code, self.store, self.topic = code, store, rooms.topic(code)
        self.viewer, self.state = viewer, state
        self.state_seq = state_seq  # the room's log position of `state`: older room events
        self.mine: set[str] = set()  # replayed do not turn today's rules back

    def read(self, after: RoomPosition) -> list[Event]:
        return self.store.room_events_after(self.code, after.seq, after.sub, limit=PAGE,
                                            owner=self.viewer.client or None)

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

    def sse(self, e: Event) -> ServerSentEvent | None:
        sse_id = f"{e.ref.seq}.{e.seq}" if e.seq else str(e.ref.seq)
        data = self._shown(e)
        return None if data is None else ServerSentEvent(data=data, event=e.kind, id=sse_id)

    def _shown(self, e: Event) -> str | None:
        """The event's data as this viewer gets it, or None to skip it (its place counts)."""
        if e.kind == "experiment":
            entry = json.loads(e.data)
            mine = entry.pop("owner", None) == self.viewer.tag and bool(self.viewer.client)
            if mine:
                self.mine.add(entry["exp"])
            return json.dumps({**entry, "mine": mine})
        if e.kind == "room":
            state = rooms.RoomState.model_validate_json(e.data)
            if e.ref.seq > self.state_seq:
                self.state, self.state_seq = state, e.ref.seq
            return json.dumps({**json.loads(e.data),
                               "sees_all": self.viewer.sees_all(state)})
        if not e.seq:  # member
            return e.data
        if e.kind == "snapshot":  # (others' come without data from the database)
            return e.data if e.data and rooms.exp_of(e.data) in self.mine else None
        exp = rooms.exp_of(e.data)
        if exp in self.mine or self.viewer.sees_all(self.state):
            return e.data
        if e.kind == "epoch":
            return None
        return json.dumps({"exp": exp, "status": json.loads(e.data).get("status", e.kind)})

    @staticmethod
    def ends(e: Event) -> bool:
        return False


# -- the one way to follow a log ---------------------------------------------------------------

DELETED = json.dumps({"status": "cancelled", "deleted": True,
                      "error": "this experiment was deleted"})


class CappedStream(EventSourceResponse):
    """An event stream that holds a place in the caps until it ends, however it ends, and
    closes quietly on a client that took no data for the send timeout."""

    def __init__(self, content, release: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope, receive, send) -> None:
        async def bounded(message) -> None:  # the stream's last send too (sse-starlette
            with anyio.fail_after(self.send_timeout):  # bounds the others only)
                await send(message)
        try:
            await super().__call__(scope, receive, bounded)
        except (SendTimeoutError, TimeoutError):  # uvicorn closes it (left unfinished)
            log_.debug("dropped a stream whose client took no data for %s s",
                       self.send_timeout)
        finally:
            self._release()


def open_stream(request: Request, settings, content: AsyncIterator) -> Response:
    """Serve `content` as an event stream if the caps allow (else 503 or 429)."""
    caps, address = request.app.state.stream_caps, request.state.address
    caps.acquire(address)
    return CappedStream(content, release=lambda: caps.release(address),
                        ping=settings.sse_ping_seconds, headers=HEADERS,
                        send_timeout=settings.sse_send_timeout_seconds)


_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> limiter


def _reads() -> anyio.CapacityLimiter:
    """The streams' own threads for database reads, one set per event loop."""
    loop = asyncio.get_running_loop()
    limiter = _READERS.get(loop)
    if limiter is None:
        limiter = _READERS[loop] = anyio.CapacityLimiter(READ_THREADS)
    return limiter


async def follow(log: ExperimentLog | RoomLog, position, broker: Broker
                 ) -> AsyncIterator[bytes]:
    """The stream's body: encoded events, several to a chunk when several are ready (a page
    of the replay; what queued up while the client read), so a client that falls behind
    costs fewer sends, not more."""
    with broker.subscribe(log.topic) as queue:
        async for chunk, reached, ended in _replay(log, position):
            position = reached
            if chunk:
                yield chunk
            if ended:
                return
        while True:
            parts: list[bytes] = []
            for e in await _ready(queue) or [None]:
                relation = "hole" if e is None else log.relation(position, e)
                if relation == "old":
                    continue
                if relation == "hole":  # quiet, or something missing: the database knows
                    if parts:
                        yield b"".join(parts)
                        parts = []
                    before = position
                    async for chunk, reached, ended in _replay(log, position):
                        position = reached
                        if chunk:
                            yield chunk
                        if ended:
                            return
                    gone = getattr(log, "gone", None)  # (an experiment's log only)
                    if e is None and position == before and gone is not None and (
                            end := await anyio.to_thread.run_sync(gone, position,
                                                                  limiter=_reads())):
                        yield log.sse(end).encode()
                        return
                    continue
                position = log.after(position, e)
                if (out := log.sse(e)) is not None:
                    parts.append(out.encode())
                if log.ends(e):
                    yield b"".join(parts)
                    return
            if parts:
                yield b"".join(parts)


async def _ready(queue: asyncio.Queue) -> list[Event]:
    """The live events waiting (up to LIVE_BATCH), after waiting up to POLL_SECONDS for the
    first; [] when none came."""
    try:
        first = queue.get_nowait()
    except asyncio.QueueEmpty:
        try:
            async with asyncio.timeout(POLL_SECONDS):
                first = await queue.get()
        except TimeoutError:
            return []
    batch = [first]
    while len(batch) < LIVE_BATCH:
        try:
            batch.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    return batch


async def _replay(log: ExperimentLog | RoomLog, after
                  ) -> AsyncIterator[tuple[bytes, object, bool]]:
    """The stored events after `after`, a page at a time: (the page encoded, the position
    after it, whether it held the final event). Only the encoded page is kept while the
    client reads it."""
    while True:
        page = await anyio.to_thread.run_sync(log.read, after, limiter=_reads())
        full, parts, ended = len(page) == PAGE, [], False
        for e in page:
            after = log.after(after, e)
            if (out := log.sse(e)) is not None:
                parts.append(out.encode())
            if log.ends(e):
                ended = True
                break
        del page
        yield b"".join(parts), after, ended
        if ended or not full:
            return
