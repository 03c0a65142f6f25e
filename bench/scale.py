"""Benchmark: the scaled-out stack against the single-machine one, in the same run.

Starts a private PostgreSQL and a local Ray cluster (head + worker node, 1 CPU each: two
worker processes on this 2-core machine), then real servers (`python -m app serve`):
1. Ray overhead: the same 30-run sweep (moons 300, 2x128, 60 epochs, 6 rates x 5 folds),
   submit -> done, alone and 4 at once, on the local pool (2 workers x 1 thread) vs on Ray
   (2 nodes x 1 CPU); both servers on PostgreSQL, so only the executor differs. Also a small
   single run (the playground default), where fixed costs show most.
2. Event latency, from an epoch ending in the trainer (`ended_at`) to the SSE client: one
   server on SQLite (in-process broker, the baseline), one on PostgreSQL (LISTEN/NOTIFY), and
   a second PostgreSQL server streaming an experiment that trains under the first.
3. Store write rate, for sizing: epoch transactions per second (one event each, as a running
   experiment writes them) from 4 writers at once, PostgreSQL (fsync on) vs SQLite.

    python bench/scale.py
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "web"))
from server import pct  # noqa: E402
from services import PostgresServer, RayCluster  # noqa: E402  (the tests' real services)

SWEEP = {"dataset": {"name": "moons", "n_train": 300}, "model": {"hidden": [128, 128]},
         "train": {"epochs": 60, "batch_size": 32},
         "sweep": {"dropout": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "folds": 5}}
DEFAULT = {}  # the playground's default experiment
LATENCY = {"dataset": {"name": "moons", "n_train": 300}, "model": {"hidden": [128, 128]},
           "train": {"epochs": 150}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix="dp-bench-")
        env = {**os.environ, "DP_WORKERS": "2", "DP_THREADS_PER_WORKER": "1",
               "DP_MAX_QUEUED": "100", "DP_MAX_QUEUED_PER_CLIENT": "100",
               "DP_CREATE_PER_MINUTE": "10000", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port",
                                      str(self.port), "--data-dir", self.data], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        for _ in range(600):
            try:
                health = self.http.get("/healthz").json()
                if health["workers_ready"] == health["workers"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def post(self, config: dict) -> str:
        return self.http.post("/api/experiments", json=config).json()["id"]

    def wait(self, exp_id: str) -> dict:
        while True:
            body = self.http.get(f"/api/experiments/{exp_id}").json()
            if body["status"] in ("done", "failed", "cancelled"):
                assert body["status"] == "done", body.get("error")
                return body
            time.sleep(0.05)

    def makespan(self, config: dict, copies: int) -> float:
        start = time.perf_counter()
        ids = [self.post(config) for _ in range(copies)]
        for exp_id in ids:
            self.wait(exp_id)
        return time.perf_counter() - start

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def latencies(source: Server, watcher: Server) -> list[float]:
    """ms from `ended_at` to arrival, for an experiment on `source` streamed from `watcher`."""
    exp_id = source.post(LATENCY)
    delays: list[float] = []
    with watcher.http.stream("GET", f"/api/experiments/{exp_id}/events", timeout=None) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and '"ended_at"' in line:
                delays.append(1000 * (time.time() - json.loads(line[5:])["ended_at"]))
            elif line.startswith("event: done"):
                break
    return delays


def write_rate(url: str, writers: int = 4, seconds: float = 3.0) -> float:
    """On SQLite the writers share one Store (one server process); on PostgreSQL each has its
    own, as separate server processes would."""
    from app.store import Store

    shared = Store(url)
    stores = [Store(url) if shared.shared else shared for _ in range(writers)]
    ids = [shared.create({}, 1, 10**6, None) for _ in range(writers)]
    counts = [0] * writers
    deadline = time.perf_counter() + seconds

    def write(i: int) -> None:
        while time.perf_counter() < deadline:
            stores[i].append(ids[i], [("epoch", {"run": 0, "epoch": counts[i], "val_loss": 0.1})])
            counts[i] += 1
    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):5.1f} ms, p95 {pct(ms, .95):5.1f} ms"


def main() -> None:
    pg = PostgresServer(free_port(), durable=True).start()
    cluster = RayCluster(free_port()).start()
    try:
        print("1. the same work on the local pool vs on Ray (both on PostgreSQL)")
        local = Server(DP_DATABASE_URL=pg.new_database())
        ray = Server(DP_DATABASE_URL=pg.new_database(), DP_EXECUTOR="ray",
                     DP_RAY_ADDRESS=cluster.address)
        for name, config, copies in [("default single run", DEFAULT, 1),
                                     ("30-run sweep", SWEEP, 1), ("30-run sweep x 4", SWEEP, 4)]:
            ray.makespan(config, 1)  # warm: Ray starts its worker processes on first use
            local.makespan(config, 1)
            t_local = min(local.makespan(config, copies) for _ in range(2))
            t_ray = min(ray.makespan(config, copies) for _ in range(2))
            print(f"  {name:20s} local {t_local:6.2f} s   Ray {t_ray:6.2f} s   "
                  f"= {t_ray / t_local:.2f}x")
        local.stop()
        ray.stop()

        print("2. event latency, epoch end -> SSE client (150 epochs each)")
        lite = Server()
        print(f"  SQLite, in-process broker        {summary(latencies(lite, lite))}")
        lite.stop()
        url = pg.new_database()
        first, second = Server(DP_DATABASE_URL=url), Server(DP_DATABASE_URL=url, DP_WORKERS="1")
        print(f"  PostgreSQL, NOTIFY, same server  {summary(latencies(first, first))}")
        print(f"  PostgreSQL, NOTIFY, other server {summary(latencies(first, second))}")
        for s in (first, second):
            s.stop()

        print("3. store: epoch transactions per second, 4 writers")
        lite_url = f"sqlite:///{tempfile.mkdtemp(prefix='dp-bench-')}/db.sqlite"
        for name, url in [("SQLite", lite_url), ("PostgreSQL", pg.new_database())]:
            print(f"  {name:11s} {write_rate(url):7.0f} transactions/s")
    finally:
        cluster.stop()
        pg.stop()


if __name__ == "__main__":
    main()
