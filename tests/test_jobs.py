"""app.jobs: the dispatcher, with real worker processes and a real store (SQLite in tmp).

Most tests share one pool of two warm workers (starting torch costs seconds) and leave it idle;
those that stop or reconfigure an executor start their own. Also checks that both executors,
and both kinds of slot, have every member of their protocols.
"""

from __future__ import annotations

import inspect
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
