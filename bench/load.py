"""Load: 40 simulated workshop users against one server on this machine, for 2 minutes.

Each user is a browser of its own (its own cookie): opens the playground, starts a small
experiment, watches its event stream to the end, opens the share page and the JSON twin,
thinks for 1-3 s, and starts again. Refusals (429: queue or rate limit) are counted, waited
out (Retry-After) and retried. Traffic goes to 127.0.0.1 only and stops by itself.

Reports requests served, p50/p95 latency of pages and API calls, 5xx and other errors,
queue wait (created -> started), server CPU, and checks that every accepted experiment
reached a final state with all its epochs stored.

    python bench/load.py [--users 40] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from server import pct, start_server  # noqa: E402

CONFIG = {"dataset": {"name": "moons", "n_train": 200}, "model": {"hidden": [64, 64]},
          "train": {"epochs": 30}}


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[int, int] = defaultdict(int)
        self.errors: list[str] = []
        self.accepted: list[str] = []
        self.refused = 0

    async def get(self, http: httpx.AsyncClient, kind: str, url: str) -> httpx.Response:
        return await self._timed(kind, http.get(url))

    async def _timed(self, kind: str, call) -> httpx.Response:
        start = time.perf_counter()
        try:
            res = await call
        except httpx.HTTPError as e:
            self.errors.append(f"{kind}: {e!r}")
            raise
        self.latency[kind].append(time.perf_counter() - start)
        self.status[res.status_code] += 1
        return res


async def user(url: str, stats: Stats, deadline: float, n: int) -> None:
    rng = random.Random(n)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while time.monotonic() < deadline:
            try:
                await stats.get(http, "page", "/")
                config = {**CONFIG, "model": {**CONFIG["model"],
                                              "dropout": rng.choice([0.0, 0.2, 0.5])}}
                res = await stats._timed("api", http.post("/api/experiments", json=config))
                if res.status_code == 429:
                    stats.refused += 1
                    await asyncio.sleep(min(5, int(res.headers.get("Retry-After", "2"))))
                    continue
                exp_id = res.json()["id"]
                stats.accepted.append(exp_id)
                async with http.stream("GET", f"/api/experiments/{exp_id}/events") as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("event:") and line[6:].strip() in (
                                "done", "failed", "cancelled"):
                            break
                await stats.get(http, "page", f"/e/{exp_id}")
                await stats.get(http, "api", f"/api/experiments/{exp_id}")
            except httpx.HTTPError:
                await asyncio.sleep(1)
            await asyncio.sleep(rng.uniform(1, 3))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (the web server; workers are children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


async def main_async(users: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(tmp)
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                while (await http.get("/healthz")).json()["workers_ready"] < 2:
                    await asyncio.sleep(0.2)
            stats = Stats()
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            deadline = t0 + seconds
            await asyncio.gather(*(user(url, stats, deadline, i) for i in range(users)))
            wall, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
            await report(url, stats, users, wall, cpu)
        finally:
            proc.terminate()
            proc.wait(20)


async def report(url: str, stats: Stats, users: int, wall: float, cpu: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        bodies = [(await http.get(f"/api/experiments/{i}")).json() for i in stats.accepted]
    parse = datetime.fromisoformat
    waits = [(parse(b["started_at"]) - parse(b["created_at"])).total_seconds()
             for b in bodies if b.get("started_at")]
    final = [b for b in bodies if b["status"] in ("done", "failed", "cancelled")]
    complete = [b for b in bodies if b["status"] == "done"
                and len(b["runs"][0]["epochs"]) == CONFIG["train"]["epochs"]]
    served = sum(stats.status.values())
    fivexx = sum(n for code, n in stats.status.items() if code >= 500)
    print(f"{users} users for {wall:.0f} s: {served} requests served "
          f"({served / wall:.1f}/s), statuses {dict(sorted(stats.status.items()))}")
    for kind, label in (("page", "pages (/, /e/<id>)"), ("api", "API (create, read)")):
        t = stats.latency[kind]
        print(f"  {label:<20} p50 {pct(t, .5) * 1e3:6.1f} ms   p95 {pct(t, .95) * 1e3:6.1f} ms"
              f"   ({len(t)} requests)")
    print(f"  5xx: {fivexx}   transport errors: {len(stats.errors)}   "
          f"refused with 429 (limits): {stats.refused}")
    print(f"  experiments accepted {len(bodies)}, final {len(final)}, done with all "
          f"{CONFIG['train']['epochs']} epochs stored {len(complete)}")
    if waits:
        print(f"  queue wait (created -> started): median {statistics.median(waits):.2f} s, "
              f"p95 {pct(waits, .95):.2f} s, max {max(waits):.2f} s")
    print(f"  web process CPU: {cpu:.1f} s over {wall:.0f} s = {cpu / wall:.0%} of one core")
    if stats.errors:
        print("  first errors:", json.dumps(stats.errors[:3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    asyncio.run(main_async(args.users, args.seconds))


if __name__ == "__main__":
    main()
