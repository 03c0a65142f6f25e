"""app.bus: events and control messages between server processes, in one process (LocalBus)
and over PostgreSQL's NOTIFY (PostgresBus, on a real private server)."""

from __future__ import annotations

import json
import time

from app.bus import MAX_PAYLOAD, LocalBus, PostgresBus, _payloads
from app.store import Event, RoomRef, Store, tag


class Recorder:
    """Stands where the broker stands: records what the bus hands over."""

    def __init__(self):
        self.got: list[tuple[str, list[Event]]] = []

    def publish_threadsafe(self, topic, events):
        self.got.append((topic, list(events)))


def test_the_local_bus_hands_events_to_its_broker_and_control_to_its_handler():
    broker, controls = Recorder(), []
    bus = LocalBus(broker, on_control=controls.append)
    sent = [Event(1, "epoch", '{"epoch": 1}')]
    bus.publish("exp", sent)
    bus.control({"cancel": "exp"})
    assert broker.got == [("exp", sent)] and controls == [{"cancel": "exp"}]
    LocalBus(broker).control({"cancel": "exp"})  # nobody listening: nothing happens


def test_payloads_fit_notify_and_keep_every_event_in_order():
    events = [Event(i, "epoch", json.dumps({"run": i, "x": "y" * 300})) for i in range(1, 80)]
    big = Event(80, "snapshot", json.dumps({"surface": "z" * 9000}))
    payloads = _payloads("exp", [*events, big])
    assert len(payloads) > 1 and all(len(p.encode()) < MAX_PAYLOAD + 100 for p in payloads)
    carried = [item[0] for p in payloads for item in json.loads(p).get("e", [])]
    assert carried == list(range(1, 80))
    assert json.loads(payloads[-1]) == {"t": "exp", "ref": 80}


def test_a_room_event_travels_with_its_place_in_the_room_log():
    ref = RoomRef("ABC-DEF", 7, 3, 5)
    small, big = Event(4, "epoch", '{"exp": "e", "epoch": 1}', ref), Event(
        5, "done", json.dumps({"exp": "e", "summary": "z" * 9000}), ref)
    payloads = [json.loads(p) for p in _payloads("room:ABC-DEF", [small, big])]
    assert payloads == [{"t": "room:ABC-DEF", "e": [[4, "epoch", small.data, "ABC-DEF", 7, 3, 5]]},
                        {"t": "room:ABC-DEF", "ref": 5, "room": ["ABC-DEF", 7, 3, 5]}]


def test_the_postgres_bus_carries_events_and_control_to_every_process(postgres):
    url = postgres.new_database()
    store = Store(url)
    exp_id = store.create({}, 1, 1, None)
    big = store.append(exp_id, [("snapshot", {"surface": "z" * 9000})])
    # a room's experiment whose final event is too large too, and a room event of its own
    store.create_room("ABC-DEF", "", "h", {})
    (joined,) = store.join("ABC-DEF", "c", "Ada")
    in_room = store.create({}, 1, 1, None, room="ABC-DEF")
    store.transition(in_room, "running")
    (done,) = store.transition(in_room, "done", {"summary": "z" * 9000})
    room_copies = [Event(done.seq, done.kind, tag(in_room, done.data), done.ref), joined]
    brokers, controls = [Recorder(), Recorder()], []
    buses = [PostgresBus(url, b, store, on_control=controls.append) for b in brokers]
    for bus in buses:
        bus.start()
    try:
        sent = [Event(1, "epoch", '{"epoch": 1}'), Event(2, "epoch", '{"epoch": 2}')]
        buses[0].publish("some-exp", sent)
        buses[0].publish(exp_id, big)  # too large for NOTIFY: read back from the log
        buses[0].publish("room:ABC-DEF", room_copies)  # read back from the room's log
        buses[1].control({"cancel": "some-exp"})

        def arrived():
            return all(len(b.got) == 4 for b in brokers) and len(controls) == 2
        deadline = time.monotonic() + 10
        while not arrived() and time.monotonic() < deadline:
            time.sleep(0.02)
        for b in brokers:  # the sender hears its own events too
            assert b.got == [("some-exp", sent), (exp_id, big),
                             ("room:ABC-DEF", room_copies[:1]), ("room:ABC-DEF", [joined])]
        assert controls == [{"cancel": "some-exp"}] * 2
    finally:
        for bus in buses:
            bus.stop()
