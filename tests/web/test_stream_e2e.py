"""Event streams end to end: a real uvicorn (`python -m app serve`) over real HTTP.

What CONTRACT.md promises about /api/experiments/<id>/events: every event has an id, ids count
1, 2, 3..., exactly one final event closes the stream, the epoch events are the stored epochs,
a reconnect with Last-Event-ID (or ?after=) misses nothing and repeats nothing, a finished
experiment replays in full, idle streams get keep-alive comments. And a training process killed
mid-run: the experiment fails with the exit code, keeps its epochs, and the pool carries on.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import FINAL, LONG, LiveServer, finished, iter_sse, parse_sse, wait_until

pytestmark = pytest.mark.e2e

SMALL = {"dataset": {"n_train": 100}, "model": {"hidden": [16]}, "train": {"epochs": 30}}
SWEEP = {**SMALL, "sweep": {"dropout": [0.0, 0.3, 0.6]}}
SLOW = {"dataset": {"n_train": 1000}, "model": {"hidden": [32]}, "train": {"epochs": 40}}


@pytest.fixture(scope="module", params=["sqlite+local", "postgres+ray"])
def http(request) -> Iterator[httpx.Client]:
    """The suite runs twice: on the default stack (SQLite, local worker processes) and on the
    scaled-out one (PostgreSQL with LISTEN/NOTIFY, training on a two-node Ray cluster)."""
    server = request.getfixturevalue(
        "live_server" if request.param == "sqlite+local" else "scaled_server")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def post(http: httpx.Client, config: dict) -> str:
    res = http.post("/api/experiments", json=config)
    assert res.status_code == 201, res.text
    return res.json()["id"]


def read(http: httpx.Client, exp_id: str, headers: dict | None = None,
         params: dict | None = None, stop: Callable[[list[dict]], bool] | None = None,
         timeout: float = 60.0) -> list[dict]:
    """Events of one connection, until the server closes it or stop(events) says so."""
    events: list[dict] = []
    with http.stream("GET", f"/api/experiments/{exp_id}/events", headers=headers,
                     params=params, timeout=timeout) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        for item in iter_sse(res):
            if "comment" in item:
                continue
            events.append(item)
            if stop and stop(events):
                break
    return events


def replay(http: httpx.Client, exp_id: str) -> list[dict]:
    return parse_sse(http.get(f"/api/experiments/{exp_id}/events").text)


def ids(events: list[dict]) -> list[int]:
    return [int(e["id"]) for e in events]


def epochs_by_run(events: list[dict], n_runs: int) -> list[list[dict]]:
    runs: list[list[dict]] = [[] for _ in range(n_runs)]
    for e in events:
        if e["event"] == "epoch":
            data = dict(e["data"])
            runs[data.pop("run")].append(data)
    return runs


def check_complete(events: list[dict], body: dict, final: str = "done") -> None:
    """A whole stream: ids 1..n, one final event and it is last, epochs = the stored epochs."""
    assert all("id" in e for e in events)
    assert ids(events) == list(range(1, len(events) + 1))
    assert [e["event"] for e in events if e["event"] in FINAL] == [final]
    assert events[-1]["event"] == final
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses == ["queued", "running"]
    assert epochs_by_run(events, len(body["runs"])) == [r["epochs"] for r in body["runs"]]
    assert events[-1]["data"]["status"] == body["status"] == final


@pytest.mark.parametrize(("config", "n_runs"), [(SMALL, 1), (SWEEP, 3)], ids=["one", "sweep"])
def test_stream_carries_every_stored_epoch_then_done(http, config, n_runs):
    exp_id = post(http, config)
    events = read(http, exp_id)  # opened at once: follows the experiment live
    body = finished(http, exp_id)
    check_complete(events, body)
    assert len(body["runs"]) == n_runs
    assert sum(e["event"] == "epoch" for e in events) == n_runs * 30
    assert events[-1]["data"]["summary"] == body["summary"]
    # a finished experiment replays everything, identically
    assert replay(http, exp_id) == events


def test_reconnect_with_last_event_id_misses_and_repeats_nothing(http):
    exp_id = post(http, SLOW)
    half = SLOW["train"]["epochs"] // 2
    first = read(http, exp_id, stop=lambda evs: sum(e["event"] == "epoch" for e in evs) >= half)
    assert first[-1]["event"] == "epoch"
    rest = read(http, exp_id, headers={"Last-Event-ID": first[-1]["id"]})
    body = finished(http, exp_id)
    joined = first + rest
    check_complete(joined, body)
    assert int(rest[0]["id"]) == int(first[-1]["id"]) + 1
    assert joined == replay(http, exp_id)


def test_after_query_parameter_works_like_last_event_id(http):
    exp_id = post(http, {**SMALL, "train": {"epochs": 5}})
    finished(http, exp_id)
    full = replay(http, exp_id)
    for after in (0, 1, 4, len(full) - 1):
        assert read(http, exp_id, params={"after": after}) == full[after:]
        assert read(http, exp_id, headers={"Last-Event-ID": str(after)}) == full[after:]


def test_reconnect_after_the_final_event_ends_at_once(http):
    exp_id = post(http, {**SMALL, "train": {"epochs": 2}})
    finished(http, exp_id)
    last = replay(http, exp_id)[-1]
    assert last["event"] == "done"
    try:
        with http.stream("GET", f"/api/experiments/{exp_id}/events",
                         headers={"Last-Event-ID": last["id"]}, timeout=3) as res:
            if res.status_code == 204:  # No Content: EventSource stops reconnecting
                return
            lines = list(res.iter_lines())
    except httpx.ReadTimeout:
        pytest.fail("the stream stayed open after its final event had been sent")
    assert res.status_code == 200
    assert parse_sse("\n".join(lines)) == []  # nothing after the final event


def test_stream_of_a_cancelled_experiment_ends_with_cancelled(http):
    exp_id = post(http, LONG)
    with http.stream("GET", f"/api/experiments/{exp_id}/events") as res:
        events: list[dict] = []
        asked = False
        for item in iter_sse(res):
            if "comment" in item:
                continue
            events.append(item)
            if not asked and sum(e["event"] == "epoch" for e in events) == 2:
                assert http.post(f"/api/experiments/{exp_id}/cancel").status_code == 200
                asked = True
    body = finished(http, exp_id)
    check_complete(events, body, final="cancelled")
    assert 2 <= len(body["runs"][0]["epochs"]) < LONG["train"]["epochs"]
    assert replay(http, exp_id) == events


def test_share_page_and_its_json_twin_show_the_stored_experiment(http):
    exp_id = post(http, {**SMALL, "name": "shared run", "train": {"epochs": 3}})
    body = finished(http, exp_id)
    page = http.get(f"/e/{exp_id}")
    assert page.status_code == 200
    assert "shared run" in page.text and f'data-exp="{exp_id}"' in page.text
    twin = http.get(f"/e/{exp_id}.json").json()
    assert twin["status"] == "done" and twin["runs"] == body["runs"]
    assert [e["epoch"] for e in twin["runs"][0]["epochs"]] == [1, 2, 3]


def test_unknown_experiment_stream_is_404(http):
    res = http.get("/api/experiments/nope/events")
    assert res.status_code == 404
    assert "nope" in res.json()["detail"]


# -- a server of its own: quick keep-alives, one worker, and a worker killed -----------------


@pytest.fixture(scope="module")
def lone(tmp_path_factory) -> Iterator[LiveServer]:
    """One worker, pings every 0.5 s; the crash test kills its worker, so nobody else uses it."""
    server = LiveServer(tmp_path_factory.mktemp("lone"), DP_WORKERS="1",
                        DP_SSE_PING_SECONDS="0.5").start()
    yield server
    server.stop()


def test_idle_stream_gets_keep_alive_comments(lone):
    with httpx.Client(base_url=lone.url, timeout=30) as c:
        busy = post(c, LONG)  # the only worker is taken: the next one waits in the queue
        waiting = post(c, SMALL)
        try:
            lines = []
            with c.stream("GET", f"/api/experiments/{waiting}/events") as res:
                deadline = time.monotonic() + 1.8
                for line in res.iter_lines():
                    lines.append(line)
                    if time.monotonic() > deadline:
                        break
            assert c.get(f"/api/experiments/{waiting}").json()["status"] == "queued"
        finally:
            for exp_id in (waiting, busy):
                c.post(f"/api/experiments/{exp_id}/cancel")
    pings = [line for line in lines if line.startswith(":")]  # comments: ": ping - <time>"
    assert len(pings) >= 2, lines
    events = parse_sse("\n".join(lines))
    assert [(e["id"], e["event"]) for e in events] == [("1", "status")]  # nothing else yet


def worker_pids(server: LiveServer) -> list[int]:
    """The server's training processes: its children started by multiprocessing's spawn."""
    children = []
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        children += [int(p) for p in (task / "children").read_text().split()]
    return [pid for pid in children
            if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_killed_worker_fails_its_experiment_and_is_replaced(lone):
    with httpx.Client(base_url=lone.url, timeout=30) as c:
        exp_id = post(c, LONG)
        with c.stream("GET", f"/api/experiments/{exp_id}/events") as res:
            events = []
            killed = None
            for item in iter_sse(res):
                if "comment" in item:
                    continue
                events.append(item)
                if killed is None and sum(e["event"] == "epoch" for e in events) == 3:
                    [killed] = worker_pids(lone)  # DP_WORKERS=1: the one training exp_id
                    before = cpu_ticks(killed)  # it is the one training: it uses the CPU
                    wait_until(lambda pid=killed, t=before: cpu_ticks(pid) > t, 10)
                    os.kill(killed, signal.SIGKILL)
        body = finished(c, exp_id)
        assert body["status"] == "failed"
        assert "exit code -9" in body["error"]
        check_complete(events, body, final="failed")
        assert "exit code" in events[-1]["data"]["error"]
        stored = body["runs"][0]["epochs"]
        assert 3 <= len(stored) < LONG["train"]["epochs"]
        assert body["progress"]["epochs_done"] == len(stored)
        # the pool started a fresh worker: a new experiment trains to the end
        after = finished(c, post(c, {**SMALL, "train": {"epochs": 3}}), timeout=90)
        assert after["status"] == "done", after.get("error")
        assert len(after["runs"][0]["epochs"]) == 3
        replacement = wait_until(lambda: worker_pids(lone), 10)
        assert killed not in replacement
