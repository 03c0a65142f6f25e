"""Event streams within bounds, on a real server: a cap per server (503) and per address
(429), each with Retry-After; a client that stops reading is dropped after the send timeout,
and what it held is given back; an event id the log never gave is a 422; a stream of an
experiment deleted while it trains ends with a final event."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import FINAL, LONG, LiveServer, finished, iter_sse, wait_until
from procs import rss_mb

pytestmark = pytest.mark.e2e

MANY = {"dataset": {"n_train": 100}, "model": {"hidden": [8]}, "train": {"epochs": 1000}}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("streams"), DP_WORKERS="1",
                        DP_TRUSTED_PROXIES="127.0.0.1", DP_MAX_STREAMS="4",
                        DP_MAX_STREAMS_PER_ADDRESS="2", DP_SSE_SEND_TIMEOUT_SECONDS="2").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def many(server) -> str:
    """A finished experiment with over a thousand events (a long replay)."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        exp_id = http.post("/api/experiments", json=MANY).json()["id"]
        assert finished(http, exp_id, timeout=120)["status"] == "done"
    return exp_id


def open_raw(server: LiveServer, path: str, address: str, read_buffer: int = 4096
             ) -> socket.socket:
    """A client that sends its request and then reads nothing (a tiny receive buffer and
    segments of an internet path's size rather than loopback's 64 KB, so the kernel holds
    little for it and the server's sends back up quickly)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, read_buffer)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"X-Forwarded-For: {address}\r\n\r\n".encode())
    return sock


def status_of(sock: socket.socket) -> int:
    sock.settimeout(10)
    return int(sock.recv(64).split(b" ")[1])


def streams(server: LiveServer) -> int:
    return httpx.get(f"{server.url}/healthz").json()["streams"]


@pytest.fixture
def running(server) -> Iterator[str]:
    """An experiment training for minutes: its streams stay open."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        exp_id = http.post("/api/experiments", json=LONG).json()["id"]
        yield exp_id
        http.post(f"/api/experiments/{exp_id}/cancel")
        finished(http, exp_id)


def test_streams_are_capped_per_address_and_per_server_with_retry_after(server, running):
    path = f"/api/experiments/{running}/events"
    held = [open_raw(server, path, "10.0.0.1", 1 << 20) for _ in range(2)]
    try:
        wait_until(lambda: streams(server) == 2, 10)
        third = httpx.get(f"{server.url}{path}", headers={"X-Forwarded-For": "10.0.0.1"})
        assert third.status_code == 429 and 1 <= int(third.headers["Retry-After"]) <= 60
        assert "limit per address is 2" in third.json()["detail"]
        held += [open_raw(server, path, "10.0.0.2", 1 << 20) for _ in range(2)]
        wait_until(lambda: streams(server) == 4, 10)
        full = httpx.get(f"{server.url}{path}", headers={"X-Forwarded-For": "10.0.0.3"})
        assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
        assert "event streams" in full.json()["detail"]
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: streams(server) == 0, 10)  # their places are given back
    with httpx.stream("GET", f"{server.url}{path}",
                      headers={"X-Forwarded-For": "10.0.0.3"}) as again:
        assert again.status_code == 200


def test_a_client_that_stops_reading_is_dropped_and_gives_its_place_back(server, many):
    sock = open_raw(server, f"/api/experiments/{many}/events", "10.0.1.1")
    try:
        wait_until(lambda: streams(server) == 1, 10)
        start = time.monotonic()
        wait_until(lambda: streams(server) == 0, 20)  # the send timeout is 2 s
        assert time.monotonic() - start < 15
        sock.settimeout(10)  # the server closed it: what was sent, then the end
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") and b"event: done" not in received
    finally:
        sock.close()


def test_stalled_streams_hold_little_memory_and_give_it_back(tmp_path):
    """200 clients that never read a 1000-epoch replay, twice: the first round also grows
    what the process keeps whatever the load (threads, database connections), the second
    shows what a stalled stream costs and that it is given back."""
    server = LiveServer(tmp_path, DP_WORKERS="1", DP_SSE_SEND_TIMEOUT_SECONDS="3").start()

    def stalled_round(http: httpx.Client, exp_id: str) -> tuple[float, float]:
        before = rss_mb(server.proc.pid)
        socks = [open_raw(server, f"/api/experiments/{exp_id}/events", "x")
                 for _ in range(200)]
        wait_until(lambda: http.get("/healthz").json()["streams"] == 200, 30)
        time.sleep(1)  # each has replayed until its buffers are full
        held = rss_mb(server.proc.pid) - before
        wait_until(lambda: http.get("/healthz").json()["streams"] == 0, 30)
        for sock in socks:
            sock.close()
        time.sleep(2)
        return held, rss_mb(server.proc.pid) - before
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            exp_id = http.post("/api/experiments", json=MANY).json()["id"]
            finished(http, exp_id, timeout=120)
            stalled_round(http, exp_id)
            held, after = stalled_round(http, exp_id)
    finally:
        server.stop()
    assert held < 200 * 0.1, f"{held:.1f} MB for 200 stalled streams"  # < 100 KB each
    assert after < max(3.0, held / 2), f"{after:.1f} MB kept after they were dropped"


def test_an_event_id_the_log_never_gave_is_a_422(server, many):
    last = httpx.get(f"{server.url}/api/experiments/{many}").json()
    n = sum(len(r["epochs"]) for r in last["runs"])
    url = f"{server.url}/api/experiments/{many}/events"
    for bad in (2**63, 2**63 - 1, 10**15 + 1, n * 10):
        res = httpx.get(url, headers={"Last-Event-ID": str(bad)})
        assert res.status_code == 422, (bad, res.status_code)
        assert res.json()["detail"][0]["field"] == "header.Last-Event-ID"
        assert httpx.get(url, params={"after": bad}).status_code == 422
    assert httpx.get(url, headers={"Last-Event-ID": "-1"}).status_code == 422
    assert httpx.get(url, headers={"Last-Event-ID": "3"}).status_code == 200


def test_deleting_a_running_experiment_ends_its_streams_with_a_final_event(server):
    http = httpx.Client(base_url=server.url, timeout=30)
    res = http.post("/api/experiments", json=LONG)
    exp_id = res.json()["id"]
    events = []
    with http.stream("GET", f"/api/experiments/{exp_id}/events") as stream:
        for e in iter_sse(stream):
            if "comment" in e:
                continue
            events.append(e)
            if e["event"] == "epoch" and sum(x["event"] == "epoch" for x in events) == 2:
                assert http.delete(f"/api/experiments/{exp_id}").status_code == 204
    assert events[-1]["event"] == "cancelled" and events[-1]["data"]["deleted"] is True
    assert [e["event"] for e in events].count("cancelled") == 1
    assert not [e for e in events[:-1] if e["event"] in FINAL]
    assert http.get(f"/api/experiments/{exp_id}").status_code == 404
