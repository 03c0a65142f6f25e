"""Server-Sent Events: an experiment's event log, replayed from the database, then followed live.

The SSE `id:` of every event is its sequence number in the log. A client that reconnects with
`Last-Event-ID: n` (browsers do this by themselves) gets events n+1, n+2, ... and nothing twice.
The order of operations is what makes that true:
1. subscribe to live events first (they queue up while we read the database);
2. replay stored events after the client's last id, in pages;
3. follow the queue, skipping anything already replayed (seq <= sent); if the queue skipped
   ahead (it overflowed, see events.Broker), read the hole back from the database.
Every stream ends with exactly one final event (done, failed or cancelled) and then closes.
It also ends when the client goes away (sse-starlette cancels the generator) and when the
server shuts down (sse-starlette watches uvicorn's exit signal). Database reads run in a thread
so a slow disk never stalls the event loop; each read opens its own session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.events import Broker
from app.store import FINAL_STATUSES, Event, Store
from app.web.deps import BrokerDep, ExperimentDep, SettingsDep, StoreDep
from app.web.errors import responses

router = APIRouter(tags=["experiments"], responses=responses(404, 503))
PAGE = 500  # events per database read during replay
POLL_SECONDS = 5.0  # re-check the database this often even without news (belt and braces)


@router.get("/api/experiments/{exp_id}/events", response_class=EventSourceResponse,
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
    return EventSourceResponse(
        follow(row.id, start, store, broker), ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def follow(topic: str, sent: int, store: Store,
                 broker: Broker) -> AsyncIterator[ServerSentEvent]:
    with broker.subscribe(topic) as queue:
        async for e in _replay(topic, sent, store):
            yield _sse(e)
            sent = e.seq
            if e.final:
                return
        while True:
            try:
                e = await asyncio.wait_for(queue.get(), POLL_SECONDS)
            except TimeoutError:
                e = None
            if e is not None and e.seq <= sent:
                continue
            if e is None or e.seq > sent + 1:  # quiet, or a hole: the database knows
                async for stored in _replay(topic, sent, store):
                    yield _sse(stored)
                    sent = stored.seq
                    if stored.final:
                        return
                continue
            yield _sse(e)
            sent = e.seq
            if e.final:
                return


async def _replay(topic: str, after: int, store: Store) -> AsyncIterator[Event]:
    while True:
        page = await anyio.to_thread.run_sync(
            lambda a=after: store.events_after(topic, a, limit=PAGE)
        )
        for e in page:
            yield e
            after = e.seq
        if len(page) < PAGE:
            return


def _sse(e: Event) -> ServerSentEvent:
    return ServerSentEvent(data=e.data, event=e.kind, id=str(e.seq))
