"""Benchmark: a cold server's first experiment, from the moment the server says it is ready.

Starts `python -m app serve` (2 workers x 1 thread) on a free port and a fresh data folder,
polls /healthz (alive) and /readyz (a worker is warm) every 10 ms, posts the default
experiment at the first /readyz 200 and reads its event stream until the first epoch. Baseline
in the same round: the same experiment posted again on the now warm server. Each round is a
new server; the statistic is the median over the rounds, with the range.

    python bench/coldstart.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from streams import free_port  # bench/streams.py


def first_epoch(base: str) -> float:
    """Seconds from posting the default experiment to its first epoch event."""
    start = time.perf_counter()
    exp = httpx.post(f"{base}/api/experiments", json={}, timeout=10).json()
    with httpx.stream("GET", f"{base}/api/experiments/{exp['id']}/events", timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("event: epoch"):
                return time.perf_counter() - start
    raise RuntimeError("the stream ended without an epoch")


def one_round() -> dict[str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir",
         tempfile.mkdtemp(prefix="dp-cold-")], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    alive = None
    try:
        while True:
            try:
                if alive is None and httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    alive = time.perf_counter() - start
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        ready = time.perf_counter() - start
        cold = first_epoch(base)
        warm = first_epoch(base)
        return {"alive": alive, "ready": ready, "cold": cold, "warm": warm}
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = []
    for r in range(args.rounds):
        rounds.append(one_round())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f} s" for k, v in rounds[-1].items()),
              flush=True)

    def line(key: str, text: str) -> str:
        values = [r[key] for r in rounds]
        return (f"{text:<58} median {statistics.median(values) * 1000:6.0f} ms "
                f"(range {min(values) * 1000:.0f}-{max(values) * 1000:.0f})")

    print()
    print(line("alive", "start -> /healthz 200"))
    print(line("ready", "start -> /readyz 200 (a worker is warm)"))
    print(line("cold", "first experiment at /readyz 200 -> its first epoch") + "  target <= 500 ms")
    print(line("warm", "the next one -> its first epoch (baseline)"))


if __name__ == "__main__":
    main()
