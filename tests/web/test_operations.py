"""Running the server, on real servers: liveness apart from readiness, the database checked at
start (a damaged file is refused with a clear message), a request-header limit that answers
431 at once, a malformed or empty client cookie replaced (never a 500), and queue feedback:
each waiting experiment's place and estimated start, from the same estimate that sets a full
queue's Retry-After."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import LONG, ROOT, TINY, LiveServer, finished, html_tree, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """One worker and room for two waiting experiments."""
    server = LiveServer(tmp_path_factory.mktemp("ops"), DP_WORKERS="1", DP_MAX_QUEUED="2",
                        DP_MAX_QUEUED_PER_ADDRESS="10").start()
    yield server
    server.stop()


def serve(data_dir, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m app serve` that is expected to refuse to start."""
    return subprocess.run([sys.executable, "-m", "app", "serve", "--port", "1",
                           "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_liveness_says_the_database_is_readable_and_readiness_that_a_worker_is_warm(server):
    wait_until(lambda: httpx.get(f"{server.url}/readyz").status_code == 200, 60)
    live = httpx.get(f"{server.url}/healthz")
    assert live.status_code == 200 and live.json()["database"] == "readable"
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["ready"] is True and ready["workers_ready"] == 1


def damage_header(db) -> None:
    with db.open("r+b") as f:  # what a bad disk or a stray write would do
        f.write(b"this is no longer an SQLite database" * 3)


def test_a_damaged_database_fails_liveness_and_readiness_and_never_answers_500(tmp_path):
    server = LiveServer(tmp_path, DP_WORKERS="1").start()
    try:
        exp_id = httpx.post(f"{server.url}/api/experiments", json=TINY).json()["id"]
        damage_header(tmp_path / "playground.db")
        live = httpx.get(f"{server.url}/healthz")
        assert live.status_code == 503 and live.json()["ok"] is False
        assert "not a database" in live.json()["database"]
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        for res in (httpx.get(f"{server.url}/api/experiments/{exp_id}"),
                    httpx.get(f"{server.url}/e/{exp_id}"),
                    httpx.post(f"{server.url}/api/experiments", json=TINY)):
            assert res.status_code != 500, res.text  # what the pool still holds, or a 503
    finally:
        server.stop()


def test_a_database_error_is_a_503_that_says_so(tmp_path):
    from fastapi.testclient import TestClient

    from app.settings import Settings
    from app.web.main import create_app

    with TestClient(create_app(Settings(data_dir=tmp_path, workers=1))) as client:
        client.app.state.store.engine.dispose()  # new connections meet the damage
        damage_header(tmp_path / "playground.db")
        res = client.post("/api/experiments", json=TINY)
        assert res.status_code == 503 and res.headers["Retry-After"]
        assert "may be damaged" in res.json()["detail"]
        page = client.get("/partials/recent")
        assert page.status_code == 503 and "may be damaged" in page.text


def test_the_server_refuses_to_start_on_a_damaged_database(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "playground.db").write_bytes(b"not a database at all\n" * 500)
    done = serve(garbage)
    assert done.returncode == 2
    assert "cannot be opened as a database" in done.stderr and "backup" in done.stderr

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    server = LiveServer(damaged, DP_WORKERS="1").start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(3):
            finished(http, http.post("/api/experiments", json=TINY).json()["id"])
    server.stop()
    db = damaged / "playground.db"
    data = bytearray(db.read_bytes())
    page = 4096
    for n in range(2, len(data) // page):  # scribble over every page but the first
        data[n * page + 100:n * page + 400] = b"\xff" * 300
    db.write_bytes(bytes(data))
    done = serve(damaged)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "is damaged" in done.stderr and "playground.db" in done.stderr


def test_an_oversized_request_header_is_refused_at_once_and_the_server_stays_quick(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, start = 0, time.monotonic()
        try:
            while sent < 100 * 1024 * 1024:  # the attack: 100 MB of one header
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:  # the server answered and closed
            pass
        sock.settimeout(5)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    # cut off after the limit; what got further was in the sockets' kernel buffers
    assert sent < 16 * 1024 * 1024 and time.monotonic() - start < 5
    quick = time.monotonic()
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert time.monotonic() - quick < 2
    normal = httpx.get(f"{server.url}/healthz", headers={"X-Fine": "a" * 8000})
    assert normal.status_code == 200


@pytest.mark.parametrize("cookie", ["dp_client=", "dp_client=%%%", 'dp_client=""',
                                    "dp_client=" + "a" * 500, "dp_client"])
def test_a_malformed_or_empty_client_cookie_is_replaced_never_a_500(server, cookie):
    exp_id = httpx.post(f"{server.url}/api/experiments", json=TINY).json()["id"]
    code = httpx.post(f"{server.url}/rooms", data={"name": "c"}).headers["location"].split("/")[2]
    headers = {"Cookie": cookie}
    for method, path, kwargs in (("GET", f"/e/{exp_id}", {}), ("GET", f"/rooms/{code}", {}),
                                 ("GET", "/partials/recent", {}), ("GET", "/", {}),
                                 ("POST", "/api/experiments", {"json": TINY})):
        res = httpx.request(method, f"{server.url}{path}", headers=headers, **kwargs)
        assert res.status_code in (200, 201), (path, res.status_code)
        new = res.cookies.get("dp_client")
        assert new and 16 <= len(new) <= 64, (path, res.headers.get("set-cookie"))
    finished(httpx.Client(base_url=server.url), exp_id)


def test_waiting_experiments_show_their_place_and_start_and_retry_after_follows(server):
    http = httpx.Client(base_url=server.url, timeout=30)
    wait_until(lambda: http.get("/readyz").status_code == 200, 60)
    first = http.post("/api/experiments", json={**LONG, "train": {"epochs": 300}}).json()["id"]
    wait_until(lambda: http.get(f"/api/experiments/{first}").json()["progress"]
               ["epochs_done"] >= 5, 60)
    waiting = [http.post("/api/experiments", json=TINY).json() for _ in range(2)]
    try:
        assert [w["queue_position"] for w in waiting] == [1, 2]
        starts = [http.get(f"/api/experiments/{w['id']}").json()["estimated_start_seconds"]
                  for w in waiting]
        # asked one after the other, and the running experiment's pace (hence every estimate)
        # moves between the two answers on a busy machine ([8.9, 8.1] was seen): the second
        # may not be told it starts sooner than the first by more than that drift
        assert 0 < starts[0] <= starts[1] * 1.25 and starts[1] < 600, starts
        bar = html_tree(http.get(f"/e/{waiting[1]['id']}/statusbar").text)
        text = bar.find(data_role="queue").text
        assert text.startswith("2nd in the queue, starts in about"), text
        assert "every 5s" in bar.find(class_="statusbar").attrs["hx-trigger"]
        full = http.post("/api/experiments", json=TINY)
        assert full.status_code == 429
        head = http.get(f"/api/experiments/{waiting[0]['id']}").json()
        retry = int(full.headers["Retry-After"])
        assert abs(retry - math.ceil(head["estimated_start_seconds"])) <= 2, (retry, head)
        assert f"about {retry} s" in full.json()["detail"] or "min" in full.json()["detail"]
    finally:
        for exp in reversed(waiting):
            http.post(f"/api/experiments/{exp['id']}/cancel")
        http.post(f"/api/experiments/{first}/cancel")
    finished(http, first)


def test_a_long_queue_gives_a_longer_retry_after(server):
    """Retry-After follows what is in the queue: a run that needs minutes ahead of it."""
    http = httpx.Client(base_url=server.url, timeout=30)
    slow = {"dataset": {"name": "digits", "n_train": 1000}, "model": {"hidden": [256, 256]},
            "train": {"epochs": 1000, "batch_size": 16}}
    first = http.post("/api/experiments", json=slow).json()["id"]
    wait_until(lambda: http.get(f"/api/experiments/{first}").json()["progress"]
               ["epochs_done"] >= 3, 60)
    waiting = [http.post("/api/experiments", json=slow).json()["id"] for _ in range(2)]
    try:
        full = http.post("/api/experiments", json=TINY)
        assert full.status_code == 429 and int(full.headers["Retry-After"]) > 30
    finally:
        for exp_id in (*waiting[::-1], first):
            http.post(f"/api/experiments/{exp_id}/cancel")
    finished(http, first)
