"""Server-side limits: per-client queue limit, creation rate limit, wall-time limit, fairness.

Each refusal must name the limit and the value, and store nothing.
"""

from __future__ import annotations

from conftest import LONG, TINY, cancel_quietly, experiment_count, finished
from fastapi.testclient import TestClient

from app.jobs import LocalExecutor
from app.settings import Settings
from app.web.main import create_app


def _app(tmp_path, **overrides) -> TestClient:
    settings = Settings(data_dir=tmp_path, workers=1, threads_per_worker=1, **overrides)
    return TestClient(create_app(settings))


def test_one_client_may_not_fill_the_queue_but_others_still_get_in(tmp_path):
    with _app(tmp_path, max_queued_per_client=2, create_per_minute=1000) as alice:
        ids = [alice.post("/api/experiments", json=LONG).json()["id"] for _ in range(2)]
        before = experiment_count(alice)
        res = alice.post("/api/experiments", json=TINY)
        assert res.status_code == 429 and res.headers["Retry-After"]
        assert "limit per person is 2" in res.json()["detail"]
        assert experiment_count(alice) == before  # nothing stored
        bob = TestClient(alice.app)  # same server, another browser (no cookie yet)
        other = bob.post("/api/experiments", json=TINY)
        assert other.status_code == 201
        cancel_quietly(alice, *ids, other.json()["id"])


def test_creation_is_rate_limited_per_client_with_retry_after(tmp_path):
    with _app(tmp_path, create_per_minute=3) as client:  # a burst of 1, then one per 20 s
        first = client.post("/api/experiments", json=TINY)
        assert first.status_code == 201
        before = experiment_count(client)
        res = client.post("/api/experiments", json=TINY)
        assert res.status_code == 429
        assert "3 per minute" in res.json()["detail"]
        assert 1 <= int(res.headers["Retry-After"]) <= 20
        assert experiment_count(client) == before
        # the form gets the same answer, readable in the page
        page = client.post("/play", data={"train.epochs": "2"}, headers={"HX-Request": "true"})
        assert page.status_code == 429 and "3 per minute" in page.text


def test_a_run_over_the_wall_time_limit_is_stopped_and_keeps_its_epochs(tmp_path):
    with _app(tmp_path, max_run_seconds=1.0) as client:
        exp_id = client.post("/api/experiments", json=LONG).json()["id"]
        body = finished(client, exp_id, timeout=60)
        assert body["status"] == "failed"
        assert "time limit of 1 s" in body["error"]
        epochs = body["runs"][0]["epochs"]
        assert 0 < len(epochs) < 1000
        assert body["progress"]["epochs_done"] == len(epochs)


def broken_worker(conn, cancel, threads) -> None:
    """A worker that dies while starting, as with a broken install."""
    raise SystemExit(3)


def test_a_worker_that_cannot_start_is_retried_with_backoff_not_in_a_loop(tmp_path):
    import time

    from app.store import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    executor = LocalExecutor(store, publish=lambda *a: None, workers=1, threads=1,
                             max_queued=5, target=broken_worker)
    executor.start()
    try:
        time.sleep(4)  # delays 1 s, 2 s, 4 s...: at most 3 failed starts in 4 s
        assert 1 <= executor.failed_starts_total <= 3
        assert executor.ready_workers() == 0
    finally:
        executor.stop()
