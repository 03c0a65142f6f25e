"""app.events.Broker: live events reach every subscriber of a topic, a full subscriber loses
events (only it: the stream re-reads the database), and leaving cleans up."""

from __future__ import annotations

import asyncio
import threading

from app.events import QUEUE_SIZE, Broker
from app.store import Event


def events(first: int, n: int) -> list[Event]:
    return [Event(seq, "epoch", f'{{"epoch": {seq}}}') for seq in range(first, first + n)]


def drain(queue: asyncio.Queue) -> list[int]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait().seq)
    return out


def test_every_subscriber_of_a_topic_gets_its_events_in_order_and_only_those():
    broker = Broker()
    with broker.subscribe("a") as one, broker.subscribe("a") as two, \
            broker.subscribe("b") as other:
        broker.publish("a", events(1, 3))
        broker.publish("a", events(4, 1))
        assert drain(one) == drain(two) == [1, 2, 3, 4]
        assert drain(other) == []


def test_a_full_subscriber_loses_events_and_the_others_do_not():
    broker = Broker()
    with broker.subscribe("a") as slow, broker.subscribe("a") as fast:
        broker.publish("a", events(1, QUEUE_SIZE))
        assert drain(fast) == list(range(1, QUEUE_SIZE + 1))
        broker.publish("a", events(QUEUE_SIZE + 1, 3))  # slow's queue is full: dropped there
        assert drain(fast) == [QUEUE_SIZE + 1, QUEUE_SIZE + 2, QUEUE_SIZE + 3]
        assert drain(slow) == list(range(1, QUEUE_SIZE + 1))  # the hole shows in the seqs
        broker.publish("a", events(QUEUE_SIZE + 4, 1))  # room again: it gets the next one
        assert drain(slow) == [QUEUE_SIZE + 4]


def test_leaving_unsubscribes_and_forgets_an_empty_topic():
    broker = Broker()
    with broker.subscribe("a") as gone:
        pass
    with broker.subscribe("a") as stays:
        broker.publish("a", events(1, 1))
        assert drain(gone) == [] and drain(stays) == [1]
    broker.publish("a", events(2, 1))
    assert drain(stays) == []
    assert broker._subscribers == {}  # nothing kept for a topic nobody follows


def test_publish_threadsafe_hands_events_to_the_loop_that_owns_the_queues():
    async def main() -> list[int]:
        broker = Broker(asyncio.get_running_loop())
        with broker.subscribe("a") as queue:
            sender = threading.Thread(target=broker.publish_threadsafe, args=("a", events(1, 2)))
            sender.start()
            got = [(await asyncio.wait_for(queue.get(), 5)).seq for _ in range(2)]
            sender.join()
            return got

    assert asyncio.run(main()) == [1, 2]
    Broker().publish_threadsafe("a", events(1, 1))  # no loop yet: nothing to do, no error
