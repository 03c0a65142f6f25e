"""In-process live-event broker: tells open streams that an experiment has new events.

The database is the truth; the broker only saves streams from polling it. Concurrency rules:
- `publish` runs in the event loop (the executor thread hands events over with
  `loop.call_soon_threadsafe`), so subscriber sets are only touched from one thread.
- A subscriber's queue is bounded. When it is full the broker drops the event for that
  subscriber; the stream notices the hole in the sequence numbers and re-reads the log from the
  database, so a slow client never loses an event and never blocks the others.
- A stream subscribes *before* replaying stored events, then skips live events it already
  replayed (seq <= last sent): no gap between replay and live, and no duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from app.store import Event

QUEUE_SIZE = 1024


class Broker:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}
        self.loop = loop  # the event loop that owns the queues

    def publish_threadsafe(self, topic: str, events: Sequence[Event]) -> None:
        """publish() from any thread (the executor's, a sync request handler's)."""
        if events and self.loop is not None:
            self.loop.call_soon_threadsafe(self.publish, topic, events)

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.setdefault(topic, set()).add(queue)
        try:
            yield queue
        finally:
            subs = self._subscribers.get(topic)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subscribers[topic]

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        for queue in self._subscribers.get(topic, ()):
            for e in events:
                try:
                    queue.put_nowait(e)
                except asyncio.QueueFull:
                    break  # the stream sees the gap and re-reads from the database
