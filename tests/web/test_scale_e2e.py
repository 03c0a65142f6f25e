"""Beyond one machine, end to end: several server processes on one PostgreSQL database, and
training on a local two-node Ray cluster.

The rest of the end-to-end suite (submit, stream, resume, cancel, share page) already runs on
both stacks (test_stream_e2e.py); this module checks what only the scaled-out stack has:
- live events reach the streams of *every* server process (LISTEN/NOTIFY), room boards too;
- a cancel sent to one server stops an experiment training under another, and the
  per-person limit counts a person's work on every server;
- a server that starts leaves the work of live servers alone, and takes over the queue of a
  dead one (failing what it was training, keeping its epochs);
- a Ray worker killed mid-experiment fails the experiment with the reason, keeps its epochs,
  and the next experiment trains.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import LONG, TINY, LiveServer, finished, iter_sse, wait_until
from fastapi.testclient import TestClient

from app.settings import Settings
from app.web.deps import CLIENT_COOKIE
from app.web.main import create_app

pytestmark = pytest.mark.e2e

SMALL = {"dataset": {"n_train": 100}, "model": {"hidden": [16]}, "train": {"epochs": 20}}
SLOW = {"dataset": {"n_train": 1000}, "model": {"hidden": [32]}, "train": {"epochs": 40}}


def post(server: LiveServer, config: dict, **params) -> str:
    res = httpx.post(f"{server.url}/api/experiments", json=config, params=params, timeout=10)
    assert res.status_code == 201, res.text
    return res.json()["id"]


def get(server: LiveServer, exp_id: str) -> dict:
    return httpx.get(f"{server.url}/api/experiments/{exp_id}", timeout=10).json()


def epochs_stored(server: LiveServer, exp_id: str) -> int:
    return get(server, exp_id)["progress"]["epochs_done"]


def stream(server: LiveServer, path: str, into: list, until=lambda e: False) -> threading.Thread:
    """Read an event stream on a thread, into `into`, until it ends or `until(event)`."""
    def run() -> None:
        with httpx.stream("GET", server.url + path, timeout=60) as res:
            for e in iter_sse(res):
                if "comment" not in e:
                    e["arrived"] = time.time()
                    into.append(e)
                    if until(e):
                        return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def pair(tmp_path, postgres) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two server processes (as behind a load balancer) on one fresh database, one local
    training worker each; a silent server counts as dead after 4 s."""
    url = postgres.new_database()
    env = {"DP_DATABASE_URL": url, "DP_WORKERS": "1", "DP_RUNNER_TIMEOUT_SECONDS": "4"}
    a = LiveServer(tmp_path / "a", **env)
    b = LiveServer(tmp_path / "b", **env)
    for server in (a, b):
        server.data_dir.mkdir()
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def test_events_reach_the_streams_of_every_server(pair):
    a, b = pair
    exp_id = post(a, SLOW)
    seen: list[dict] = []
    stream(b, f"/api/experiments/{exp_id}/events", seen).join(60)
    body = finished(httpx.Client(base_url=a.url), exp_id)
    assert body["status"] == "done"
    assert [e["event"] for e in seen][-1] == "done"
    assert [int(e["id"]) for e in seen] == list(range(1, len(seen) + 1))
    streamed = [e["data"] for e in seen if e["event"] == "epoch"]
    assert [{k: v for k, v in e.items() if k != "run"} for e in streamed] == \
        body["runs"][0]["epochs"]
    # live, through NOTIFY: not in the bursts of the stream's 5 s re-read of the database
    lags = sorted(e["arrived"] - e["data"]["ended_at"] for e in seen[len(seen) // 2:]
                  if e["event"] == "epoch")
    assert lags[len(lags) // 2] < 1.0, lags


def test_a_room_board_on_one_server_sees_what_happens_on_another(pair):
    a, b = pair
    presenter = httpx.Client(base_url=a.url, timeout=10)
    link = presenter.post("/rooms", data={"name": "two servers"}).headers["location"]
    code, key = re.fullmatch(r"/rooms/(.+)/present\?key=(.+)", link).groups()
    board: list[dict] = []
    watcher = stream(b, f"/api/rooms/{code}/events", board,
                     until=lambda e: e["event"] == "room")
    participant = httpx.Client(base_url=a.url, timeout=10)
    participant.post(f"/rooms/{code}/join", data={"name": "Ada"})
    wait_until(lambda: board and board[0]["event"] == "member", 10)  # following the room
    res = participant.post(f"/api/experiments?room={code}", json=TINY)
    exp_id = res.json()["id"]
    wait_until(lambda: any(e["event"] == "done" for e in board), 60)
    epochs = [e["data"] for e in board if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e["exp"] == exp_id for e in epochs)

    res = presenter.post(f"/api/rooms/{code}/settings", json={"locked": True},
                         headers={"X-Presenter-Key": key})
    assert res.status_code == 200
    watcher.join(10)
    assert board[-1]["event"] == "room" and board[-1]["data"]["locked"] is True


def test_a_cancel_sent_to_one_server_stops_training_under_another(pair):
    a, b = pair
    owner = {"X-Owner-Token": "one-script-of-ours"}  # only the owner may stop them
    exp_id = httpx.post(f"{a.url}/api/experiments", json=LONG, headers=owner).json()["id"]
    wait_until(lambda: epochs_stored(a, exp_id) >= 2, 60)
    queued = httpx.post(f"{a.url}/api/experiments", json=TINY, headers=owner).json()["id"]
    # behind it, in a's queue: cancelled at once, wherever asked
    res = httpx.post(f"{b.url}/api/experiments/{queued}/cancel", headers=owner, timeout=10)
    assert res.status_code == 200 and res.json()["status"] == "cancelled"

    res = httpx.post(f"{b.url}/api/experiments/{exp_id}/cancel", headers=owner, timeout=10)
    assert res.status_code == 200 and res.json()["cancel_requested"] is True
    body = finished(httpx.Client(base_url=b.url), exp_id, timeout=30)
    assert body["status"] == "cancelled"
    kept = body["runs"][0]["epochs"]
    assert [e["epoch"] for e in kept] == list(range(1, len(kept) + 1))
    assert body["summary"]["runs"][0]["epochs_trained"] == len(kept)
    assert get(a, queued)["progress"]["epochs_done"] == 0  # a skipped it: it never trained


def test_a_dead_servers_queue_moves_to_a_live_one_and_live_work_is_left_alone(pair):
    a, b = pair
    running = post(a, LONG)
    wait_until(lambda: epochs_stored(a, running) >= 2, 60)
    queued = post(a, TINY)  # a's only worker is busy: this waits in a's queue
    # b started after a and looks for orphans every 2 s: a is alive, so nothing moves
    time.sleep(6)
    assert get(b, running)["status"] == "running"
    assert get(b, queued)["status"] == "queued"

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    before = epochs_stored(b, running)
    body = finished(httpx.Client(base_url=b.url), running, timeout=30)
    assert body["status"] == "failed" and "restarted or stopped" in body["error"]
    assert len(body["runs"][0]["epochs"]) >= before  # nothing stored was lost
    done = finished(httpx.Client(base_url=b.url), queued, timeout=60)
    assert done["status"] == "done" and len(done["runs"][0]["epochs"]) == 3


def test_several_web_workers_on_one_host_share_the_state(postgres, tmp_path):
    server = LiveServer(tmp_path, DP_DATABASE_URL=postgres.new_database(), DP_WEB_WORKERS="2",
                        DP_WORKERS="1").start()
    try:
        runners: set[str] = set()  # each process answers some of the fresh connections
        wait_until(lambda: runners.add(httpx.get(f"{server.url}/healthz").json()["runner"])
                   or len(runners) == 2, 30)
        exp_id = post(server, SMALL)
        seen: list[dict] = []
        stream(server, f"/api/experiments/{exp_id}/events", seen).join(60)
        assert seen[-1]["event"] == "done"
        epochs = [e["data"]["epoch"] for e in seen if e["event"] == "epoch"]
        assert epochs == list(range(1, 21))
    finally:
        server.stop()


def test_several_web_workers_need_postgres(tmp_path):
    res = subprocess.run([sys.executable, "-m", "app", "serve", "--web-workers", "2",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert "web_workers > 1 needs a PostgreSQL database_url" in res.stderr


def test_the_per_person_limit_counts_their_work_on_every_server(postgres, tmp_path):
    url = postgres.new_database()
    apps = [create_app(Settings(data_dir=tmp_path / name, database_url=url, workers=1,
                                threads_per_worker=1, max_queued_per_client=2,
                                create_per_minute=1000)) for name in "ab"]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for client in (a, b):
            client.cookies.set(CLIENT_COOKIE, "one-browser")
        made = [a.post("/api/experiments", json=LONG) for _ in range(2)]
        assert [r.status_code for r in made] == [201, 201], made[-1].text
        ids = [r.json()["id"] for r in made]
        res = b.post("/api/experiments", json=TINY)
        assert res.status_code == 429
        assert "you have 2 experiments queued or running, the limit per person is 2" in \
            res.json()["detail"]
        for exp_id in ids:
            a.post(f"/api/experiments/{exp_id}/cancel")


# -- Ray -------------------------------------------------------------------------------------


def _task_pids() -> list[int]:
    """Ray worker processes running our experiment task (Ray names them after the task)."""
    out = subprocess.run(["pgrep", "-f", "ray::experiment_task"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def test_a_lost_ray_worker_fails_its_experiment_and_the_next_one_trains(scaled_server):
    exp_id = post(scaled_server, LONG)
    wait_until(lambda: epochs_stored(scaled_server, exp_id) >= 2, 60)
    pids = wait_until(_task_pids, 10)
    for pid in pids:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    body = finished(httpx.Client(base_url=scaled_server.url), exp_id, timeout=60)
    assert body["status"] == "failed"
    assert "Ray task was lost" in body["error"]
    kept = body["runs"][0]["epochs"]
    assert len(kept) >= 2 and [e["epoch"] for e in kept] == list(range(1, len(kept) + 1))

    after = post(scaled_server, TINY)
    done = finished(httpx.Client(base_url=scaled_server.url), after, timeout=60)
    assert done["status"] == "done" and len(done["runs"][0]["epochs"]) == 3


def test_a_sweep_trains_on_ray_as_one_task_and_summarizes_like_the_local_pool(scaled_server,
                                                                              live_server):
    sweep = {**SMALL, "sweep": {"dropout": [0.0, 0.5], "folds": 2}}
    on_ray = finished(httpx.Client(base_url=scaled_server.url), post(scaled_server, sweep))
    local = finished(httpx.Client(base_url=live_server.url), post(live_server, sweep))
    assert on_ray["status"] == local["status"] == "done"
    def numbers(runs: list[dict]) -> list[list[dict]]:  # ended_at is a wall-clock time
        return [[{k: v for k, v in e.items() if k != "ended_at"} for e in r["epochs"]]
                for r in runs]
    assert numbers(on_ray["runs"]) == numbers(local["runs"])  # the same, wherever trained
    assert json.dumps(on_ray["summary"], sort_keys=True) == \
        json.dumps(local["summary"], sort_keys=True)
