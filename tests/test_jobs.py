"""app.jobs: the dispatcher, with real worker processes and a real store (SQLite in tmp).

Also its faults: writes the database refuses wait in order and are stored once; a slot that
does not stop within the grace is killed and replaced; one address may not fill the queue;
waiting experiments get estimated starts.

Most tests share one pool of two warm workers (starting torch costs seconds) and leave it idle;
those that stop or reconfigure an executor start their own. Also checks that both executors,
and both kinds of slot, have every member of their protocols.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import time

import pytest

from app.executor import Executor, QueueFull
from app.jobs import LocalExecutor, PoolExecutor, Slot, Slots
from app.ml.config import ExperimentConfig
from app.store import FINAL_STATUSES, Store
from app.worker import ProcessSlot, ProcessSlots

TINY = {"dataset": {"name": "moons", "n_train": 50}, "model": {"hidden": [8]},
        "train": {"epochs": 3}}
LONG = {"dataset": {"name": "moons", "n_train": 2000}, "model": {"hidden": [8]},
        "train": {"epochs": 1000}}  # a minute or more: tests stop it


def wait_until(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


class Recorder:
    """The executor's `publish`: remembers every event, and the order experiments started."""

    def __init__(self):
        self.events: list[tuple[str, str, str]] = []  # (exp_id, kind, data)

    def __call__(self, exp_id, events) -> None:
        self.events += [(exp_id, e.kind, e.data) for e in events]

    def starts(self) -> list[str]:
        return [exp for exp, kind, data in self.events
                if kind == "status" and '"running"' in data]


def start_executor(store: Store, **options) -> LocalExecutor:
    options = {"workers": 1, "threads": 1, "max_queued": 10, **options}
    executor = LocalExecutor(store, Recorder(), **options)
    executor.start()
    wait_until(lambda: executor.ready_workers() == executor.workers)
    return executor


def add(store: Store, executor: LocalExecutor, config: dict, owner: str | None = None) -> str:
    """Store a queued experiment as the web layer does, and submit it."""
    cfg = ExperimentConfig.model_validate(config)
    exp_id = store.create(cfg.model_dump(mode="json"), cfg.n_runs,
                          cfg.n_runs * cfg.train.epochs, owner, runner=executor.runner)
    executor.submit(exp_id, owner)
    return exp_id


def status(store: Store, exp_id: str) -> str:
    return store.get(exp_id).status


def ended(store: Store, exp_id: str, timeout: float = 60.0):
    return wait_until(lambda: (row := store.get(exp_id)).status in FINAL_STATUSES and row,
                      timeout)


def trained(store: Store, exp_id: str, epochs: int = 1) -> None:
    wait_until(lambda: store.get(exp_id).epochs_done >= epochs)


def stop_all(store: Store, executor: LocalExecutor, *exp_ids: str) -> None:
    """Cancel (queued ones first, so none of them starts) and wait until each has ended."""
    for exp_id in reversed(exp_ids):
        executor.cancel(exp_id)
    for exp_id in exp_ids:
        ended(store, exp_id)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Two warm workers, at most 3 experiments per client; tests leave it idle."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('jobs') / 'db.sqlite'}")
    executor = start_executor(store, workers=2, max_per_client=3)
    yield store, executor
    executor.stop()
    store.close()


# -- the protocols ------------------------------------------------------------------------------

def _members(protocol: type) -> tuple[list[str], list[str]]:
    """(methods, data attributes) a protocol declares."""
    methods = [n for n, v in vars(protocol).items() if not n.startswith("_") and callable(v)]
    return methods, list(getattr(protocol, "__annotations__", {}))


def _conforms(protocol: type, cls: type, instance: object) -> None:
    methods, data = _members(protocol)
    for name in methods:
        want = inspect.signature(getattr(protocol, name)).parameters
        have = inspect.signature(getattr(cls, name)).parameters
        assert list(want) == list(have)[:len(want)], (cls, name)  # same names, same order
        extra = [p for p in list(have.values())[len(want):] if p.default is p.empty]
        assert not extra, (cls, name, extra)  # nothing more is required
    for name in data:
        assert hasattr(instance, name), (cls, name)


def test_both_executors_have_every_member_of_the_executor_protocol():
    ray_executor = pytest.importorskip("app.ray_executor")
    local = LocalExecutor(None, Recorder(), workers=1, threads=1, max_queued=1)
    ray = ray_executor.RayExecutor(None, Recorder(), max_queued=1)
    for executor in (local, ray):
        assert isinstance(executor, Executor) and isinstance(executor, PoolExecutor)
        _conforms(Executor, type(executor), executor)
    assert not issubclass(ray_executor.RayExecutor, LocalExecutor)  # composed, not derived


def test_both_kinds_of_slot_have_every_member_of_the_slot_protocol(pool):
    ray_executor = pytest.importorskip("app.ray_executor")
    process_slot = next(w.slot for w in pool[1]._pool if w.slot is not None)  # started
    ray_slot = ray_executor.RaySlot(1)
    _conforms(Slot, ProcessSlot, process_slot)
    _conforms(Slot, ray_executor.RaySlot, ray_slot)
    _conforms(Slots, ProcessSlots, ProcessSlots(1, 1))
    _conforms(Slots, ray_executor.RaySlots, ray_executor.RaySlots())
    ray_slot.conn.close()


# -- one pool, shared ---------------------------------------------------------------------------

def test_fair_order_serves_the_client_with_fewest_running_first(pool):
    store, executor = pool
    long_a = add(store, executor, LONG, "alice")
    other = add(store, executor, LONG, "carol")
    trained(store, long_a)
    trained(store, other)
    a1, a2 = add(store, executor, TINY, "alice"), add(store, executor, TINY, "alice")
    b1 = add(store, executor, TINY, "bob")
    assert [executor.queue_position(e) for e in (a1, a2, b1)] == [1, 2, 3]
    assert executor.queue_length() == 3
    executor.cancel(other)  # one worker frees up; alice still trains on the other
    for exp_id in (a1, a2, b1):
        assert ended(store, exp_id).status == "done"
    started = [e for e in executor.publish.starts() if e in (a1, a2, b1)]
    assert started == [b1, a1, a2]  # bob first: he had nothing running
    stop_all(store, executor, long_a)


def test_one_client_may_not_queue_more_than_the_limit_and_others_still_get_in(pool):
    store, executor = pool
    carols = [add(store, executor, LONG, "carol") for _ in range(3)]
    wait_until(lambda: executor.queue_length() == 1)  # two train, one waits
    with pytest.raises(QueueFull, match="you have 3 experiments queued or running, the limit "
                                        "per person is 3"):
        add(store, executor, TINY, "carol")
    assert executor.queue_length() == 1
    dave = add(store, executor, TINY, "dave")
    assert executor.queue_position(dave) == 2
    stop_all(store, executor, *carols)
    assert ended(store, dave).status == "done"


def test_a_full_queue_refuses_with_the_limit_and_the_value(store):
    executor = start_executor(store, workers=1, max_queued=2)
    try:
        running = add(store, executor, LONG, "erin")
        wait_until(lambda: status(store, running) == "running")
        waiting = [add(store, executor, TINY, f"client-{i}") for i in range(2)]
        with pytest.raises(QueueFull, match="2 experiments are waiting, the limit is 2"):
            add(store, executor, TINY, "frank")
        stop_all(store, executor, running, *waiting)
    finally:
        executor.stop()


def test_cancel_of_a_queued_experiment_ends_it_at_once_and_it_never_trains(pool):
    store, executor = pool
    busy = [add(store, executor, LONG) for _ in range(2)]
    wait_until(lambda: executor.queue_length() == 0)  # both workers busy
    waiting = add(store, executor, TINY)
    assert executor.queue_position(waiting) == 1
    assert executor.cancel(waiting) is True
    assert status(store, waiting) == "cancelled" and executor.queue_position(waiting) is None
    assert waiting not in executor.publish.starts()
    assert store.get(waiting).epochs_done == 0
    assert executor.cancel("no-such-experiment") is False
    stop_all(store, executor, *busy)


def test_cancel_of_a_running_experiment_stops_it_and_keeps_its_epochs(pool):
    store, executor = pool
    running = add(store, executor, LONG)
    trained(store, running, 2)
    assert executor.cancel(running) is True
    row = ended(store, running)
    assert row.status == "cancelled" and row.summary
    epochs = store.epochs_by_run(running, 1)[0]
    assert 2 <= len(epochs) == row.epochs_done < 1000
    assert [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))


def test_a_killed_worker_fails_its_experiment_keeps_its_epochs_and_is_replaced(pool):
    store, executor = pool
    running = add(store, executor, LONG)
    trained(store, running, 2)
    slot = next(w.slot for w in executor._pool if w.job == running)
    os.kill(slot.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    row = ended(store, running)
    assert row.status == "failed", row.status
    assert "exit code -9" in row.error and "too much memory" in row.error, row.error
    assert len(store.epochs_by_run(running, 1)[0]) == row.epochs_done >= 2
    wait_until(lambda: executor.ready_workers() == 2)
    assert all(w.slot.pid != slot.pid for w in executor._pool)
    assert ended(store, add(store, executor, TINY)).status == "done"


# -- executors of their own -------------------------------------------------------------------

def test_a_run_over_the_time_limit_fails_with_the_reason_and_keeps_its_epochs(store):
    executor = start_executor(store, max_run_seconds=1.0)
    try:
        exp_id = add(store, executor, LONG)
        row = ended(store, exp_id)
        assert row.status == "failed" and "time limit of 1 s" in row.error
        assert 0 < row.epochs_done == len(store.epochs_by_run(exp_id, 1)[0]) < 1000
        assert row.summary  # what trained before the limit is summarized
    finally:
        executor.stop()


def test_stop_fails_what_trains_and_the_next_executor_takes_over_the_queue(store):
    first = start_executor(store)
    running = add(store, first, LONG)
    queued = add(store, first, TINY)
    trained(store, running)
    first.stop()
    first.stop()  # safe twice (graceful shutdown, then the lifespan)
    row = store.get(running)
    assert row.status == "failed" and "stopped during training" in row.error
    assert row.epochs_done >= 1
    assert status(store, queued) == "queued"
    # a server that died without a word: its experiment in training is an orphan too
    lost = store.create(ExperimentConfig.model_validate(TINY).model_dump(mode="json"), 1, 3,
                        None, runner="a-server-that-crashed")
    store.transition(lost, "running")
    second = start_executor(store)
    try:
        assert ended(store, queued).status == "done"
        row = store.get(lost)
        assert row.status == "failed" and "restarted or stopped" in row.error
    finally:
        second.stop()


# -- storage faults, hung slots, per-address limits, estimates --------------------------------

class Flaky:
    """Wraps a store: its appends fail (as on a locked database) while `failing` is set."""

    def __init__(self, store: Store):
        self.store, self.failing, self.refused = store, False, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def append(self, *args, **kwargs):
        if self.failing:
            from sqlalchemy.exc import OperationalError

            self.refused += 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return self.store.append(*args, **kwargs)


def test_refused_writes_wait_in_order_and_every_epoch_is_stored_once(store):
    flaky = Flaky(store)
    executor = LocalExecutor(flaky, Recorder(), workers=1, threads=1, max_queued=10)
    executor.start()
    try:
        wait_until(lambda: executor.ready_workers() == 1)
        config = {**TINY, "train": {"epochs": 150}}
        exp_id = add(store, executor, config)
        trained(store, exp_id, 5)
        flaky.failing = True
        wait_until(lambda: executor.pending_writes() > 0 and flaky.refused >= 2, 30)
        stuck = store.get(exp_id).epochs_done
        time.sleep(1)
        assert store.get(exp_id).epochs_done == stuck  # nothing written, nothing dropped
        flaky.failing = False
        row = ended(store, exp_id)
        assert row.status == "done"
        assert [e["epoch"] for e in store.epochs_by_run(exp_id, 1)[0]] == list(range(1, 151))
        published = [json.loads(d)["epoch"] for e, kind, d in executor.publish.events
                     if e == exp_id and kind == "epoch"]
        assert published == list(range(1, 151))  # each published once, after it was stored
        assert executor.pending_writes() == 0 and executor.write_failures_total >= 2
        assert ended(store, add(store, executor, TINY)).status == "done"  # the seat is free
    finally:
        executor.stop()


def test_a_slot_that_does_not_stop_is_killed_after_the_grace_and_replaced(store):
    executor = start_executor(store, stop_grace_seconds=0.5)
    try:
        exp_id = add(store, executor, LONG)
        trained(store, exp_id, 2)
        slot = next(w.slot for w in executor._pool if w.job == exp_id)
        os.kill(slot.pid, signal.SIGSTOP)
        assert executor.cancel(exp_id) is True
        row = ended(store, exp_id, timeout=20)
        assert row.status == "failed" and "did not stop within 0.5 s" in row.error
        assert row.epochs_done == len(store.epochs_by_run(exp_id, 1)[0]) >= 2
        assert executor.killed_total == 1
        wait_until(lambda: executor.ready_workers() == 1)
        assert ended(store, add(store, executor, TINY)).status == "done"
    finally:
        executor.stop()


def test_one_address_may_not_fill_the_queue_outside_rooms(store):
    executor = start_executor(store, max_per_address=2)
    try:
        ids = []
        for i in range(2):
            cfg = ExperimentConfig.model_validate(LONG)
            exp_id = store.create(cfg.model_dump(mode="json"), 1, 1000, f"c{i}",
                                  runner=executor.runner)
            executor.submit(exp_id, f"c{i}", "10.0.0.1")
            ids.append(exp_id)
        with pytest.raises(QueueFull, match="the limit per address is 2") as refused:
            executor.check_room("c9", address="10.0.0.1")
        assert refused.value.retry_after >= 1
        executor.check_room("c9", address="10.0.0.2")  # another address
        executor.check_room("c9")  # in a room: not counted per address
        stop_all(store, executor, *ids)
    finally:
        executor.stop()


def test_waiting_experiments_get_growing_estimated_starts(store):
    executor = start_executor(store)
    try:
        running = add(store, executor, LONG)
        trained(store, running, 5)
        waiting = [add(store, executor, TINY) for _ in range(3)]
        starts = [executor.estimate_start(e) for e in waiting]
        assert all(s is not None and s > 0 for s in starts)
        assert starts == sorted(starts) and starts[0] < starts[-1]
        assert executor.estimate_start(running) is None
        with executor._lock:  # a full queue's Retry-After: when its head should start
            assert abs(executor._retry_after_locked() - math.ceil(starts[0])) <= 1
        stop_all(store, executor, running, *waiting)
    finally:
        executor.stop()
