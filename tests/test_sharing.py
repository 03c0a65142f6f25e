"""A sweep shared out over idle workers (app.sharing, app.jobs), with real worker processes.

The parts' runs train to the numbers one process gives them; the experiment ends once, with
one summary over every run; other people's work does not wait for a shared sweep (it trains
as the guest of a part, which pauses); a cancel or a dead worker ends every part.
"""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
from test_jobs import add, ended, start_executor, stop_all, trained, wait_until

from app.ml.config import ExperimentConfig
from app.ml.summary import summarize
from app.ml.train import train
from app.sharing import SharedExperiment, plan_parts
from app.store import Store

SWEEP = {"dataset": {"name": "moons", "n_train": 100}, "model": {"hidden": [16, 16]},
         "train": {"epochs": 15}, "sweep": {"dropout": [0.0, 0.2, 0.4, 0.6, 0.8]}}
LONG_SWEEP = {"dataset": {"name": "moons", "n_train": 2000}, "model": {"hidden": [32]},
              "train": {"epochs": 1000}, "sweep": {"dropout": [0.0, 0.3, 0.5, 0.7]}}
SINGLE = {"dataset": {"name": "moons", "n_train": 60}, "model": {"hidden": [8]},
          "train": {"epochs": 5}}


def test_parts_cover_every_run_once_in_order_and_nearly_equal():
    for n in range(1, 40):
        for workers in range(1, 6):
            parts = plan_parts(n, workers)
            assert [i for p in parts for i in p] == list(range(n))
            assert len(parts) == min(n, workers)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_combined_end_is_the_worst_part_and_summarizes_every_run_in_order():
    tiny = ExperimentConfig.model_validate({**SWEEP, "train": {"epochs": 2},
                                            "sweep": {"dropout": [0.0, 0.3, 0.5, 0.7]}})
    runs = train(tiny).run_dicts()
    shared = SharedExperiment(2, "classification")
    shared.record(1, "done", runs[2:], None)
    assert not shared.complete
    shared.record(1, "done", runs[2:], None)  # a retried write: nothing changes
    shared.record(0, "done", runs[:2], None)
    assert shared.complete
    status, extra = shared.combine()
    assert status == "done" and extra["summary"] == summarize(runs, "classification")
    shared.record(0, "cancelled", runs[:1], None)
    assert shared.combine()[0] == "cancelled"
    shared.record(1, "failed", None, "the training process died (exit code -9)")
    assert shared.combine() == ("failed", {  # the runs reported before stay in the summary
        "summary": summarize(runs, "classification"),
        "error": "the training process died (exit code -9)"})


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two warm workers, one torch thread each."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('sharing') / 'db.sqlite'}")
    executor = start_executor(store, workers=2)
    yield store, executor
    executor.stop()
    store.close()


def _epochs(store: Store, exp_id: str, n_runs: int) -> list[list[dict]]:
    return [[{k: v for k, v in m.items() if k not in ("run", "ended_at")} for m in run]
            for run in store.epochs_by_run(exp_id, n_runs)]


def _close(a: list[list[dict]], b: list[list[dict]]) -> None:
    """Equal runs, epoch by epoch, up to float32 reassociation (batched vs alone)."""
    assert len(a) == len(b)
    for run_a, run_b in zip(a, b):
        assert [m["epoch"] for m in run_a] == [m["epoch"] for m in run_b]
        for ma, mb in zip(run_a, run_b):
            for key, value in ma.items():
                assert math.isclose(value, mb[key], rel_tol=1e-4, abs_tol=1e-6), key


def test_an_idle_pool_shares_a_sweep_and_every_run_has_the_numbers_of_one_process(pair):
    store, executor = pair
    before = executor.shared_total
    exp_id = add(store, executor, SWEEP)
    row = ended(store, exp_id)
    assert row.status == "done"
    assert executor.shared_total == before + 1
    config = ExperimentConfig.model_validate(SWEEP)
    alone = train(config)
    _close(_epochs(store, exp_id, config.n_runs),
           [[{k: v for k, v in m.items()} for m in r.epochs] for r in alone.runs])
    summary = json.loads(row.summary)
    assert summary == summarize(alone.run_dicts(), "classification") or _summaries_close(
        summary, summarize(alone.run_dicts(), "classification"))
    finals = [kind for exp, kind, _ in executor.publish.events
              if exp == exp_id and kind in ("done", "failed", "cancelled")]
    assert finals == ["done"]  # one end, however many parts


def _summaries_close(a, b) -> bool:
    """The same summary up to float32 noise in its numbers."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_summaries_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_summaries_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
    return a == b


def test_a_single_run_starts_at_once_while_a_shared_sweep_holds_every_worker(pair):
    store, executor = pair
    sweep = add(store, executor, LONG_SWEEP, owner="alice")
    trained(store, sweep, 4)  # both parts are training
    guests = executor.guests_total
    single = add(store, executor, SINGLE, owner="bob")
    assert ended(store, single).status == "done"
    # it did not wait for the sweep (minutes): it trained as a guest, the sweep still runs
    # (bench/sweep.py times how soon it starts)
    assert store.get(sweep).status == "running"
    assert executor.guests_total == guests + 1
    done_at = store.get(sweep).epochs_done
    trained(store, sweep, done_at + 4)  # the paused part goes on after its guest
    stop_all(store, executor, sweep)
    row = store.get(sweep)
    assert row.status == "cancelled"
    finals = [kind for exp, kind, _ in executor.publish.events
              if exp == sweep and kind in ("done", "failed", "cancelled")]
    assert finals == ["cancelled"]
    # the single run trained as if alone
    config = ExperimentConfig.model_validate(SINGLE)
    _close(_epochs(store, single, 1), [train(config).runs[0].epochs])


def test_a_dead_worker_fails_the_shared_sweep_once_and_stops_its_other_part(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    executor = start_executor(store, workers=2)
    try:
        sweep = add(store, executor, LONG_SWEEP)
        trained(store, sweep, 4)
        borrowed = wait_until(lambda: next((w for w in executor._pool if w.borrowed), None))
        os.kill(borrowed.slot.pid, signal.SIGKILL)
        row = ended(store, sweep, timeout=30)
        assert row.status == "failed" and "died" in row.error
        finals = [kind for exp, kind, _ in executor.publish.events
                  if exp == sweep and kind in ("done", "failed", "cancelled")]
        assert finals == ["failed"]
        wait_until(lambda: executor.ready_workers() == 2 and not any(
            w.job for w in executor._pool))  # both seats free again, a fresh worker ready
        after = add(store, executor, SWEEP)
        assert ended(store, after).status == "done"
    finally:
        executor.stop()
        store.close()


def test_a_guest_runs_even_when_its_host_is_being_cancelled_and_polls_its_own_cancel():
    """The worker's side of guests, in this process: a guest that was sent while its host part
    was being cancelled trains to its end, and one read after its host ended still obeys the
    guest's cancel byte (the one the parent sets for it), not the host's."""
    import multiprocessing as mp

    from app.worker import GUEST, GUEST_HOST, _serve

    host = {**SWEEP, "train": {"epochs": 3}}
    guest = {**SINGLE, "train": {"epochs": 2}}
    parent, child = mp.Pipe()
    cancel = mp.Array("b", 2, lock=False)
    cancel[GUEST_HOST] = 1  # the host part is being cancelled...
    parent.send(("train", "g1", json.dumps(guest), None, True))  # ...as its guest arrives
    assert _serve(child, cancel, ("train", "h1", json.dumps(host), [0, 1], False))
    said = []
    while parent.poll():
        said.append(parent.recv())
    ends = {m[1]: m[2] for m in said if m[0] in ("finished", "part")}
    assert ends == {"g1": "done", "h1": "cancelled"}
    assert sum(len(m[2]) for m in said if m[0] == "epochs" and m[1] == "g1") == 2
    # crossed: the guest is read only after its host ended, with the host's byte still set
    def end_of(exp_id: str) -> tuple:
        while (m := parent.recv())[0] not in ("finished", "part", "error"):
            pass
        assert m[1] == exp_id
        return m[:3]

    assert _serve(child, cancel, ("train", "g2", json.dumps(guest), None, True))
    assert end_of("g2") == ("finished", "g2", "done")
    cancel[GUEST] = 1  # and the guest's own byte stops it
    assert _serve(child, cancel, ("train", "g3", json.dumps(guest), None, True))
    assert end_of("g3") == ("finished", "g3", "cancelled")
