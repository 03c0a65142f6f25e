"""A workshop room's event stream end to end, over a real uvicorn (`python -m app serve`).

`/api/rooms/<code>/events` is a room's log: its own events (members, new experiments, the
presenter's changes) and every event of its experiments but snapshots, numbered `r` or `r.n`.
It replays from the start, follows live, and resumes after a cut with Last-Event-ID (or
?after=) missing nothing and repeating nothing, so what a board drew equals the database.
Runs on the default stack and again on PostgreSQL (LISTEN/NOTIFY) with Ray.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import FINAL, TINY, iter_sse, wait_until

pytestmark = pytest.mark.e2e

RUNNING = {"dataset": {"n_train": 300}, "model": {"hidden": [32]}, "train": {"epochs": 60},
           "sweep": {"dropout": [0.0, 0.5]}}


@pytest.fixture(scope="module", params=["sqlite+local", "postgres+ray"])
def server(request):
    return request.getfixturevalue(
        "live_server" if request.param == "sqlite+local" else "scaled_server")


def new_room(base: str) -> tuple[str, httpx.Client]:
    presenter = httpx.Client(base_url=base, timeout=30)
    link = presenter.post("/rooms", data={"name": "stream"}).headers["location"]
    assert presenter.get(link, follow_redirects=True).status_code == 200
    return link.split("/")[2], presenter


def participant(base: str, code: str, name: str) -> httpx.Client:
    browser = httpx.Client(base_url=base, timeout=30)
    assert browser.post(f"/rooms/{code}/join", data={"name": name}).status_code == 303
    return browser


def start(browser: httpx.Client, code: str, config: dict) -> str:
    res = browser.post(f"/api/experiments?room={code}", json=config)
    assert res.status_code == 201, res.text
    return res.json()["id"]


def read(base: str, code: str, stop, headers: dict | None = None, params: dict | None = None,
         seconds: float = 90.0) -> list[dict]:
    """Events of one connection until stop(events) says so; fails if `seconds` pass first."""
    events: list[dict] = []
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", f"{base}/api/rooms/{code}/events", headers=headers,
                      params=params, timeout=30) as res:
        assert res.status_code == 200, res.read()
        assert res.headers["content-type"].startswith("text/event-stream")
        for item in iter_sse(res):
            assert time.monotonic() < deadline, "the room stream went quiet"
            if "comment" in item:
                continue
            events.append(item)
            if stop(events):
                break
    return events


def position(event: dict) -> tuple[int, int]:
    seq, _, sub = event["id"].partition(".")
    return int(seq), int(sub or 0)


def finals(events: list[dict]) -> set[str]:
    return {e["data"]["exp"] for e in events if e["event"] in FINAL}


def test_the_room_stream_replays_the_room_then_follows_it_live(server):
    code, presenter = new_room(server.url)
    ada = participant(server.url, code, "Ada")
    solo = ada.post("/api/experiments", json=TINY).json()["id"]  # not in the room
    exp_id = start(ada, code, {**TINY, "train": {"epochs": 5}})
    wait_until(lambda: ada.get(f"/api/experiments/{exp_id}").json()["status"] == "done", 60)

    # opened after the fact: the whole history, in order, then live
    events = read(server.url, code, lambda ev: bool(finals(ev)))
    assert [e["event"] for e in events[:2]] == ["member", "experiment"]
    assert events[0]["data"] == {"name": "Ada"}
    entry = events[1]["data"]
    assert entry["exp"] == exp_id and entry["author"] == "Ada"
    assert entry["label"] == "16 relu · p = 0.5"  # the network and the rate run 0 trains at
    assert all(e["data"]["exp"] == exp_id for e in events[1:])  # tagged; never the solo one
    assert "snapshot" not in {e["event"] for e in events}
    assert [e["data"]["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3, 4, 5]
    assert events[-1]["event"] == "done"
    ids = [position(e) for e in events]
    assert ids == sorted(set(ids)), "ids increase, none twice"

    # a presenter's change reaches an open stream live, after everything before it
    def locked(ev):
        return any(e["event"] == "room" for e in ev)

    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(read(
        server.url, code, locked, headers={"Last-Event-ID": events[-1]["id"]})))
    reader.start()
    time.sleep(0.5)
    res = presenter.post(f"/api/rooms/{code}/settings", json={"locked": True})
    assert res.status_code == 200, res.text
    reader.join(30)
    assert [e["event"] for e in got] == ["room"] and got[0]["data"]["locked"] is True
    assert position(got[0]) > position(events[-1])
    assert ada.get(f"/api/experiments/{solo}").json()["room"] is None


def test_a_board_cut_mid_run_resumes_and_holds_exactly_what_the_database_holds(server):
    """Two participants train two-rate sweeps at once; a board reads the room's stream, loses
    its connection mid-run (twice: once resuming with Last-Event-ID, once with ?after=), and
    ends up with every stored event of both experiments, none twice."""
    code, _ = new_room(server.url)
    ids = [start(participant(server.url, code, name), code, RUNNING) for name in ("Ada", "Bo")]
    events = read(server.url, code, lambda ev: sum(e["event"] == "epoch" for e in ev) >= 25)
    events += read(server.url, code, lambda ev: sum(e["event"] == "epoch" for e in ev) >= 40,
                   headers={"Last-Event-ID": events[-1]["id"]})
    events += read(server.url, code, lambda ev: finals(events + ev) == set(ids),
                   params={"after": events[-1]["id"]})

    positions = [position(e) for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for exp_id in ids:
            stored = http.get(f"/api/experiments/{exp_id}").json()
            assert stored["status"] == "done"
            want = {(run["index"], e["epoch"], e["val_loss"]) for run in stored["runs"]
                    for e in run["epochs"]}
            got = [(e["data"]["run"], e["data"]["epoch"], e["data"]["val_loss"])
                   for e in events if e["event"] == "epoch" and e["data"]["exp"] == exp_id]
            assert len(got) == len(set(got)) == len(want) == 2 * 60
            assert set(got) == want


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "-1", "9" * 19, "1."])
def test_a_malformed_last_event_id_is_a_422(live_server, bad):
    code, _ = new_room(live_server.url)
    res = httpx.get(f"{live_server.url}/api/rooms/{code}/events",
                    headers={"Last-Event-ID": bad}, timeout=10)
    assert res.status_code == 422, (bad, res.status_code)
    assert "Last-Event-ID" in res.text


def test_each_viewer_gets_what_they_may_see(server):
    """A participant's page follows the room and their own run on one stream: their own
    snapshots come with it, others' never; with the leaderboard hidden, others' epochs and
    scores stay away from participants (not from the presenter), and each `room` event says
    whether the viewer now sees everyone."""
    code, presenter = new_room(server.url)
    ada, bo = participant(server.url, code, "Ada"), participant(server.url, code, "Bo")
    config = {"dataset": {"n_train": 100}, "model": {"hidden": [16]}, "train": {"epochs": 12}}
    mine, theirs = start(ada, code, config), start(bo, code, config)
    for exp in (mine, theirs):
        wait_until(lambda e=exp: ada.get(f"/api/experiments/{e}").json()["status"] == "done", 60)

    def everything(browser: httpx.Client) -> list[dict]:
        got = read(server.url, code, lambda ev: len(finals(ev)) == 2 and any(
            e["event"] == "room" for e in ev) if hidden else len(finals(ev)) == 2,
            headers={"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())})
        return got

    hidden = False
    seen = everything(ada)
    entries = {e["data"]["exp"]: e["data"] for e in seen if e["event"] == "experiment"}
    assert entries[mine]["mine"] is True and entries[theirs]["mine"] is False
    assert "owner" not in entries[mine]  # who owns what stays on the server
    def stored_snapshots(exp: str) -> int:
        return len(ada.get(f"/e/{exp}.json").json()["snapshots"])
    streamed = [e["data"]["exp"] for e in seen if e["event"] == "snapshot"]
    assert streamed.count(mine) == stored_snapshots(mine)  # (how many: their cost decides)
    assert theirs not in streamed and stored_snapshots(theirs) + stored_snapshots(mine) > 0
    assert {e["data"]["exp"] for e in seen if e["event"] == "epoch"} == {mine, theirs}

    hidden = True
    res = presenter.post(f"/api/rooms/{code}/settings", json={"leaderboard": False})
    assert res.status_code == 200
    seen = everything(ada)
    assert {e["data"]["exp"] for e in seen if e["event"] == "epoch"} == {mine}
    (their_final,) = [e for e in seen if e["event"] == "done" and e["data"]["exp"] == theirs]
    assert their_final["data"] == {"exp": theirs, "status": "done"}  # no summary, no scores
    (room_event,) = [e for e in seen if e["event"] == "room"]
    assert room_event["data"]["sees_all"] is False
    seen = everything(presenter)
    assert {e["data"]["exp"] for e in seen if e["event"] == "epoch"} == {mine, theirs}
    assert not [e for e in seen if e["event"] == "snapshot"]
    (room_event,) = [e for e in seen if e["event"] == "room"]
    assert room_event["data"]["sees_all"] is True
