"""A workshop room's board with 40 connected viewers while both workers train.

Two participants keep both workers busy with experiments in the room; 40 viewers hold the
room's event stream open (as 40 projector/laptop boards would). Reports the delay from an
epoch ending in a worker (`ended_at`) to the event reaching the viewers (p50/p95 over all
viewers), how many events each viewer got, and the web process's CPU. Loopback only.

    python bench/room.py [--viewers 40] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from load import cpu_seconds  # noqa: E402
from server import pct, start_server  # noqa: E402

EXPERIMENT = {"dataset": {"name": "moons", "n_train": 300}, "model": {"hidden": [128, 128]},
              "train": {"epochs": 150}}


async def viewer(url: str, code: str, delays: list[float], counts: list[int],
                 stop: asyncio.Event) -> None:
    n = 0
    async with httpx.AsyncClient(base_url=url, timeout=None) as http, \
            http.stream("GET", f"/api/rooms/{code}/events") as res:
        event = ""
        async for line in res.aiter_lines():
            if stop.is_set():
                break
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "epoch":
                delays.append(time.time() - json.loads(line[5:])["ended_at"])
                n += 1
    counts.append(n)


async def participant(url: str, code: str, name: str, stop: asyncio.Event) -> int:
    started = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await http.post(f"/rooms/{code}/join", data={"name": name})
        while not stop.is_set():
            res = await http.post(f"/api/experiments?room={code}", json=EXPERIMENT)
            exp_id = res.json()["id"]
            started += 1
            async with http.stream("GET", f"/api/experiments/{exp_id}/events") as s:
                async for line in s.aiter_lines():
                    if stop.is_set() or line.startswith(("event: done", "event: failed")):
                        break
            if stop.is_set():
                await http.post(f"/api/experiments/{exp_id}/cancel")
    return started


async def main_async(viewers: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(tmp)
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                while (await http.get("/healthz")).json()["workers_ready"] < 2:
                    await asyncio.sleep(0.2)
                res = await http.post("/rooms", data={"name": "bench"})
                code = res.headers["location"].split("/rooms/")[1].split("/")[0]
            stop = asyncio.Event()
            delays: list[float] = []
            counts: list[int] = []
            watching = [asyncio.create_task(viewer(url, code, delays, counts, stop))
                        for _ in range(viewers)]
            await asyncio.sleep(1)
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            training = [asyncio.create_task(participant(url, code, f"p{i}", stop))
                        for i in range(2)]
            await asyncio.sleep(seconds)
            stop.set()
            wall, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
            started = await asyncio.gather(*training)
            proc.terminate()  # ends the viewers' streams
            await asyncio.wait(watching, timeout=10)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(20)
    print(f"{viewers} board viewers, 2 participants training ({sum(started)} experiments) "
          f"for {wall:.0f} s")
    print(f"  epoch event latency to viewers: p50 {pct(delays, .5) * 1e3:.1f} ms, "
          f"p95 {pct(delays, .95) * 1e3:.1f} ms over {len(delays)} deliveries")
    if counts:
        print(f"  events per viewer: min {min(counts)}, max {max(counts)}")
    print(f"  web process CPU: {cpu:.1f} s over {wall:.0f} s = {cpu / wall:.0%} of one core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    asyncio.run(main_async(args.viewers, args.seconds))


if __name__ == "__main__":
    main()
