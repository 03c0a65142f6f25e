"""Benchmark: the server under training load, against baselines measured in the same run.

Starts `python -m app serve` (2 workers x 1 thread) on a free port and measures:
1. event latency: from an epoch ending in the worker (`ended_at`, wall clock) to the SSE event
   reaching a client, median and p95;
2. page and API latency (p50/p95) while both workers train, against the same requests on the
   idle server (the baseline): training must not block the web process;
3. training throughput through the server (started_at -> finished_at) against the engine
   alone in this process (1 torch thread) on the same config: the ratio engine/server.

    python bench/server.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LONG = {"dataset": {"name": "moons", "n_train": 2000}, "model": {"hidden": [256, 256]},
        "train": {"epochs": 1000}}
THROUGHPUT = {"dataset": {"name": "digits", "n_train": 1000}, "model": {"hidden": [256, 256]},
              "train": {"epochs": 30, "batch_size": 64}}
LATENCY = {"dataset": {"name": "moons", "n_train": 300}, "model": {"hidden": [128, 128]},
           "train": {"epochs": 200}}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DP_WORKERS": "2", "DP_THREADS_PER_WORKER": "1", "DP_MAX_QUEUED": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                             "--data-dir", data_dir], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def wait_done(http: httpx.Client, exp_id: str) -> dict:
    while True:
        body = http.get(f"/api/experiments/{exp_id}").json()
        if body["status"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.2)


def event_latency(http: httpx.Client) -> list[float]:
    exp_id = http.post("/api/experiments", json=LATENCY).json()["id"]
    delays = []
    with http.stream("GET", f"/api/experiments/{exp_id}/events", timeout=None) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and '"ended_at"' in line:
                delays.append(time.time() - json.loads(line[5:])["ended_at"])
            elif line.startswith("event: done"):
                break
    return delays


def request_latency(http: httpx.Client, paths: list[str], n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        r = http.get(paths[i % len(paths)])
        times.append(time.perf_counter() - start)
        assert r.status_code == 200, r.status_code
    return times


def watch(url: str, exp_id: str) -> None:
    """A browser watching a run: reads its stream to the end."""
    with httpx.stream("GET", f"{url}/api/experiments/{exp_id}/events", timeout=None) as r:
        for _ in r.iter_lines():
            pass


def seconds(body: dict) -> float:
    parse = datetime.fromisoformat
    return (parse(body["finished_at"]) - parse(body["started_at"])).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(tmp)
        try:
            run(url, args.requests)
        finally:
            proc.terminate()
            proc.wait(20)


def run(url: str, n: int) -> None:
    http = httpx.Client(base_url=url, timeout=30)
    while http.get("/healthz").json()["workers_ready"] < 2:  # workers import torch first
        time.sleep(0.2)
    # 3. throughput: through the server (alone on the machine) vs the engine in this process,
    # both warmed up on this config (both workers at once), then the best of three each
    for exp_id in [http.post("/api/experiments", json=THROUGHPUT).json()["id"] for _ in "ab"]:
        wait_done(http, exp_id)
    bodies = [wait_done(http, http.post("/api/experiments", json=THROUGHPUT).json()["id"])
              for _ in range(3)]
    server_s = min(seconds(b) for b in bodies)
    body = bodies[-1]
    import torch

    from app.ml.config import ExperimentConfig
    from app.ml.train import train

    torch.set_num_threads(1)
    config = ExperimentConfig.model_validate(THROUGHPUT)
    train(config)  # warm up, as the server's workers were
    engine_s = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        train(config)
        engine_s = min(engine_s, time.perf_counter() - start)

    # 1. event latency, one worker busy with this run only
    delays = event_latency(http)

    # 2. request latency, idle baseline, then with both workers training
    paths = ["/", f"/e/{body['id']}", f"/api/experiments/{body['id']}", "/partials/recent"]
    idle = request_latency(http, paths, n)
    busy_ids = [http.post("/api/experiments", json=LONG).json()["id"] for _ in range(2)]
    time.sleep(2)
    watchers = [threading.Thread(target=watch, args=(url, i), daemon=True) for i in busy_ids]
    for t in watchers:
        t.start()
    busy = request_latency(http, paths, n)
    running = [http.get(f"/api/experiments/{i}").json()["status"] for i in busy_ids]
    for i in busy_ids:
        http.post(f"/api/experiments/{i}/cancel")

    def row(label: str, t: list[float]) -> str:
        return f"  {label:<20} p50 {pct(t, .5) * 1e3:6.1f} ms   p95 {pct(t, .95) * 1e3:6.1f} ms"

    print(f"event latency, epoch end -> SSE client ({len(delays)} events): "
          f"median {statistics.median(delays) * 1e3:.1f} ms, p95 {pct(delays, .95) * 1e3:.1f} ms")
    print(f"page+API latency over {n} requests (/, /e/<id>, /api/experiments/<id>, recent):")
    print(row("idle server", idle))
    print(row("both workers busy", busy) + f"  (workers: {','.join(running)}; target p95 < 50 ms)")
    print(f"  ratio busy/idle p95  {pct(busy, .95) / pct(idle, .95):.2f}x")
    print(f"throughput, digits 64-256-256-10, 30 epochs: engine alone {engine_s:.2f} s, "
          f"through the server {server_s:.2f} s -> {engine_s / server_s:.2f}x (target >= 0.95x)")


if __name__ == "__main__":
    main()
