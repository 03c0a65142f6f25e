"""Storage faults and hung workers, on a real server (`python -m app serve`, 2 workers).

- The SQLite file is locked by another program (BEGIN EXCLUSIVE from another connection) for
  10 s and for 30 s while two runs train: no epoch is lost or written twice, they are stored
  in order, every stream (one opened before the lock, one during it) receives every epoch,
  both runs finish, and both workers are free afterwards (two new runs train at once).
- A worker stopped with SIGSTOP (hung) is killed and replaced after the grace that follows
  the time limit, or a cancel; its experiment fails with that reason and keeps its epochs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import FINAL, LONG, TINY, LiveServer, finished, iter_sse, wait_until
from procs import busiest_worker, state, worker_pids

pytestmark = pytest.mark.e2e

TWO = {"dataset": {"n_train": 1000}, "model": {"hidden": [64, 64]}, "train": {"epochs": 300}}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("lock"), DP_WORKERS="2").start()
    yield server
    server.stop()


class Watcher:
    """One event stream of an experiment, read on a thread until its final event."""

    def __init__(self, url: str, exp_id: str):
        self.events: list[dict] = []
        self.thread = threading.Thread(target=self._read, args=(url, exp_id), daemon=True)
        self.thread.start()

    def _read(self, url: str, exp_id: str) -> None:
        with httpx.stream("GET", f"{url}/api/experiments/{exp_id}/events", timeout=180) as r:
            for e in iter_sse(r):
                if "comment" in e:
                    continue
                self.events.append(e)
                if e["event"] in FINAL:
                    return


def epochs(body: dict) -> list[int]:
    return [e["epoch"] for e in body["runs"][0]["epochs"]]


@pytest.mark.parametrize("hold", [10, 30])
def test_a_locked_database_loses_no_epoch_and_frees_both_workers(server, hold):
    http = httpx.Client(base_url=server.url, timeout=30)
    ids = [http.post("/api/experiments", json=TWO).json()["id"] for _ in range(2)]
    early = [Watcher(server.url, i) for i in ids]
    wait_until(lambda: min(http.get(f"/api/experiments/{i}").json()["progress"]["epochs_done"]
                           for i in ids) >= 10, 60)
    blocker = sqlite3.connect(server.data_dir / "playground.db", timeout=10)
    blocker.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    locked_at = time.monotonic()
    try:
        # the workers go on until their messages back up: the writer holds them, in order
        wait_until(lambda: http.get("/healthz").json()["pending_writes"] > 0, hold / 2)
        late = [Watcher(server.url, i) for i in ids]  # opened during the lock: replay, follow
        stored = [http.get(f"/api/experiments/{i}").json()["progress"]["epochs_done"]
                  for i in ids]
        time.sleep(max(0.0, hold - (time.monotonic() - locked_at)))
        assert [http.get(f"/api/experiments/{i}").json()["progress"]["epochs_done"]
                for i in ids] == stored  # nothing was written while locked
    finally:
        blocker.rollback()
        blocker.close()
    for exp_id, watchers in zip(ids, zip(early, late)):
        body = finished(http, exp_id, timeout=180)
        assert body["status"] == "done", body.get("error")
        assert epochs(body) == list(range(1, 301))  # every epoch once, in order
        for w in watchers:
            w.thread.join(30)
            assert [int(e["id"]) for e in w.events] == list(range(1, len(w.events) + 1))
            assert [e["data"]["epoch"] for e in w.events if e["event"] == "epoch"] == \
                epochs(body)
            assert w.events[-1]["event"] == "done"
    health = http.get("/healthz").json()
    assert health["pending_writes"] == 0 and health["workers_ready"] == 2
    # both workers are free: two new runs train at the same time
    new = [http.post("/api/experiments", json=LONG).json()["id"] for _ in range(2)]
    try:
        wait_until(lambda: all(http.get(f"/api/experiments/{i}").json()["status"] == "running"
                               for i in new), 60)
    finally:
        for exp_id in new:
            http.post(f"/api/experiments/{exp_id}/cancel")
    for exp_id in new:
        finished(http, exp_id)


@pytest.fixture(scope="module")
def hung(tmp_path_factory) -> Iterator[LiveServer]:
    """One worker, a 6 s time limit and a grace of 1.5 s after a stop is asked."""
    server = LiveServer(tmp_path_factory.mktemp("hung"), DP_WORKERS="1",
                        DP_MAX_RUN_SECONDS="6", DP_STOP_GRACE_SECONDS="1.5").start()
    yield server
    server.stop()


def _stop_the_worker(server: LiveServer, http: httpx.Client, exp_id: str) -> int:
    wait_until(lambda: http.get(f"/api/experiments/{exp_id}").json()["progress"]
               ["epochs_done"] >= 2, 60)
    pid = busiest_worker(server.proc.pid)
    os.kill(pid, signal.SIGSTOP)  # hung: it never reads its cancel flag again
    return pid


def _check_replaced(server: LiveServer, http: httpx.Client, exp_id: str, pid: int,
                    reason: str) -> None:
    body = finished(http, exp_id, timeout=30)
    assert body["status"] == "failed"
    assert reason in body["error"] and "did not stop within 1.5 s and was replaced" in \
        body["error"], body["error"]
    kept = epochs(body)
    assert len(kept) >= 2 and kept == list(range(1, len(kept) + 1))  # epochs kept
    wait_until(lambda: state(pid) in (None, "Z"), 10)  # killed
    wait_until(lambda: http.get("/healthz").json()["workers_ready"] == 1, 60)
    assert pid not in worker_pids(server.proc.pid)
    after = finished(http, http.post("/api/experiments", json=TINY).json()["id"], timeout=60)
    assert after["status"] == "done"


def test_a_hung_worker_past_the_time_limit_is_killed_and_replaced(hung):
    http = httpx.Client(base_url=hung.url, timeout=30)
    exp_id = http.post("/api/experiments", json=LONG).json()["id"]
    pid = _stop_the_worker(hung, http, exp_id)
    _check_replaced(hung, http, exp_id, pid, "stopped after the time limit of 6 s")


def test_a_hung_worker_that_ignores_a_cancel_is_killed_and_replaced(hung):
    http = httpx.Client(base_url=hung.url, timeout=30)
    exp_id = http.post("/api/experiments", json=LONG).json()["id"]
    pid = _stop_the_worker(hung, http, exp_id)
    asked = time.monotonic()
    assert http.post(f"/api/experiments/{exp_id}/cancel").status_code == 200
    _check_replaced(hung, http, exp_id, pid, "asked to stop")
    assert time.monotonic() - asked < 20
