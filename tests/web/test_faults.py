"""Faults, scripted: a server stopped gracefully (SIGTERM) and killed (SIGKILL) mid-training.

Each test runs its own real server (1 worker) on its own data dir, stops it with a signal while
one experiment trains and another waits in the queue, starts it again on the same data dir and
checks: the database is intact, every epoch stored before the stop is still there, the
interrupted experiment ends as failed with a reason, and the queued one runs to done.
"""

from __future__ import annotations

import signal
import threading

import httpx
import pytest
from conftest import LONG, TINY, LiveServer, finished, iter_sse, wait_until

pytestmark = pytest.mark.e2e


def _setup(tmp_path) -> tuple[LiveServer, httpx.Client, str, str]:
    server = LiveServer(tmp_path, DP_WORKERS="1").start()
    http = httpx.Client(base_url=server.url, timeout=10)
    running = http.post("/api/experiments", json=LONG).json()["id"]
    queued = http.post("/api/experiments", json=TINY).json()["id"]
    wait_until(lambda: http.get(f"/api/experiments/{running}").json()["progress"]["epochs_done"]
               >= 3, 60)
    assert http.get(f"/api/experiments/{queued}").json()["status"] == "queued"
    return server, http, running, queued


def _restart_and_check(server: LiveServer, running: str, queued: str, epochs_before: int,
                       reason: str) -> None:
    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        body = http.get(f"/api/experiments/{running}").json()
        assert body["status"] == "failed" and reason in body["error"]
        kept = len(body["runs"][0]["epochs"])
        assert kept >= epochs_before > 0  # nothing stored was lost
        assert [e["epoch"] for e in body["runs"][0]["epochs"]] == list(range(1, kept + 1))
        done = finished(http, queued, timeout=60)
        assert done["status"] == "done" and len(done["runs"][0]["epochs"]) == 3
        with http.stream("GET", f"/api/experiments/{running}/events") as res:
            events = list(iter_sse(res))
        finals = [e for e in events if e.get("event") in ("done", "failed", "cancelled")]
        assert len(finals) == 1 and finals[0]["event"] == "failed"
    server.stop()


def test_sigterm_ends_open_streams_with_a_final_event_and_keeps_everything(tmp_path):
    server, http, running, queued = _setup(tmp_path)
    seen: list[dict] = []

    def watch() -> None:
        with httpx.stream("GET", f"{server.url}/api/experiments/{running}/events",
                          timeout=30) as res:
            for e in iter_sse(res):
                seen.append(e)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    wait_until(lambda: any(e.get("event") == "epoch" for e in seen), 30)
    epochs_before = http.get(f"/api/experiments/{running}").json()["progress"]["epochs_done"]
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once it has shut down, so the exit reads as SIGTERM
    assert server.proc.wait(20) in (0, -signal.SIGTERM)
    watcher.join(10)
    assert not watcher.is_alive(), "the stream stayed open after the server stopped"
    assert seen[-1]["event"] == "failed" and "stopped" in seen[-1]["data"]["error"]
    _restart_and_check(server, running, queued, epochs_before, "stopped")


def test_sigkill_loses_nothing_stored_and_the_queue_runs_after_a_restart(tmp_path):
    server, http, running, queued = _setup(tmp_path)
    epochs_before = http.get(f"/api/experiments/{running}").json()["progress"]["epochs_done"]
    server.proc.kill()  # SIGKILL: no cleanup at all; its workers die with their pipes
    server.proc.wait(10)
    _restart_and_check(server, running, queued, epochs_before, "restarted")


def test_a_locked_database_answers_503_saves_nothing_and_recovers(tmp_path):
    import sqlite3

    from fastapi.testclient import TestClient

    from app.settings import Settings
    from app.store import STATUSES
    from app.web.main import create_app

    settings = Settings(data_dir=tmp_path, workers=1, threads_per_worker=1)
    with TestClient(create_app(settings)) as client:
        store = client.app.state.store
        before = store.count(*STATUSES)
        blocker = sqlite3.connect(tmp_path / "playground.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
        try:
            res = client.post("/api/experiments", json=TINY)  # waits out the busy timeout
        finally:
            blocker.rollback()
            blocker.close()
        assert res.status_code == 503 and res.headers["Retry-After"]
        assert "database is unavailable" in res.json()["detail"]
        assert store.count(*STATUSES) == before  # nothing half-written
        again = client.post("/api/experiments", json=TINY)
        assert again.status_code == 201
        assert finished(client, again.json()["id"])["status"] == "done"
