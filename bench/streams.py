"""Streams: many reading clients and many stalled ones on one server, on this machine.

Starts `python -m app serve` (1 worker, default caps) and one running experiment, then opens
`--readers` clients that read its event stream from the start to its final event, and
`--stalled` clients that send their request and never read (a tiny receive buffer and
internet-sized segments, so the server's sends back up soon). With `--history-runs R`, the
stalled clients ask instead for a finished sweep of R runs x `--history-epochs` epochs (the
issue's worst case was 64,000 events). Clients come from several loopback addresses
(127.0.1.x, 127.0.2.x, ...), `--per-address` each, as several venues would. A separate
process asks for GET / every 0.2 s, first alone (the baseline), then during the streams.

Reports streams served (HTTP 200) and refused (anything else: refusing does not pass),
readers that received every event exactly once in order and the final event, their
reconnects; GET / latency p50/p95/max against the baseline; the server process's RSS before,
at the peak and after every client has gone (stalled ones are dropped after
DP_SSE_SEND_TIMEOUT_SECONDS); its CPU. Targets: GET / p95 < 200 ms, RSS growth < 100 MB,
memory returned afterwards.

    python bench/streams.py [--readers 1000] [--stalled 1000] [--epochs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from server import pct  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNNING = {"dataset": {"name": "digits", "n_train": 1000}, "model": {"hidden": [256, 256]},
           "train": {"epochs": 300, "batch_size": 32}}
FINAL = (b"done", b"failed", b"cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(data_dir: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(Path(data_dir) / "server.log", "wb") as log:  # the child keeps its own handle
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--data-dir", data_dir],
            cwd=ROOT, env={**os.environ, "DP_WORKERS": "1", "DP_THREADS_PER_WORKER": "1",
                           **env}, stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not get ready")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def address(group: int, n: int, per_address: int) -> str:
    return f"127.0.{group + n // per_address}.1"


# -- clients ------------------------------------------------------------------------------------

class Reader:
    """One client reading a stream to its final event over raw HTTP/1.0 (no chunking), with
    the reconnect a browser does (Last-Event-ID); checks every id arrives once, in order."""

    def __init__(self, port: int, path: str, local: str):
        self.port, self.path, self.local = port, path, local
        self.last, self.epochs, self.ok, self.final = 0, 0, True, False
        self.statuses: list[int] = []
        self.reconnects = 0

    async def run(self, deadline: float) -> None:
        while not self.final and time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                await self._once()
            if not self.final:
                self.reconnects += 1
                await asyncio.sleep(0.5)

    async def _once(self) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.local, 0))
        try:
            resume = f"Last-Event-ID: {self.last}\r\n" if self.last else ""
            w.write(f"GET {self.path} HTTP/1.0\r\nHost: x\r\n{resume}\r\n".encode())
            head = await r.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            self.statuses.append(status)
            if status != 200:
                retry = 5
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"retry-after:"):
                        retry = int(line.split(b":")[1])
                await asyncio.sleep(retry)
                return
            buf = b""
            while chunk := await r.read(65536):
                buf += chunk
                *blocks, buf = buf.split(b"\r\n\r\n")
                for block in blocks:
                    self._event(block)
                    if self.final:
                        return
        finally:
            w.close()

    def _event(self, block: bytes) -> None:
        kind, sid = None, None
        for line in block.split(b"\r\n"):
            if line.startswith(b"event: "):
                kind = line[7:]
            elif line.startswith(b"id: "):
                sid = int(line[4:])
        if sid is None:
            return  # a keep-alive comment
        if sid != self.last + 1:
            self.ok = False  # a gap or a repeat
        self.last = sid
        if kind == b"epoch":
            self.epochs += 1
        elif kind in FINAL:
            self.final = True


def open_stalled(port: int, path: str, local: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    sock.bind((local, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def probe(url: str, seconds: float, stop, out) -> None:
    """GET / every 0.2 s for `seconds` or until `stop` is set (in a process of its own: the
    readers' work must not delay the measurement); puts the latencies on `out`."""
    times = []  # (wall clock when sent, latency)
    with httpx.Client(timeout=60) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            sent, start = time.time(), time.perf_counter()
            try:
                http.get(url).raise_for_status()
                times.append((sent, time.perf_counter() - start))
            except httpx.HTTPError:
                times.append((sent, float("inf")))
            time.sleep(max(0.0, 0.2 - (time.perf_counter() - start)))
    out.put(times)


class Probe:
    """The GET / prober, in a spawned process."""

    def __init__(self, url: str, seconds: float):
        ctx = mp.get_context("spawn")
        self.stop, self.out = ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=probe, args=(url, seconds, self.stop, self.out))
        self.proc.start()

    def result(self) -> list[tuple[float, float]]:
        self.stop.set()
        times = self.out.get(timeout=120)
        self.proc.join(10)
        return times


# -- the run ------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=1000)
    ap.add_argument("--stalled", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=RUNNING["train"]["epochs"])
    ap.add_argument("--per-address", type=int, default=500)
    ap.add_argument("--history-runs", type=int, default=0)
    ap.add_argument("--history-epochs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the clients (a new experiment each time) on the same server")
    ap.add_argument("--linger", type=float, default=0,
                    help="seconds to keep the server after the run (to inspect it)")
    ap.add_argument("--send-timeout", type=float, default=None,
                    help="DP_SSE_SEND_TIMEOUT_SECONDS for the server (default: its own)")
    args = ap.parse_args()
    env = {} if args.send_timeout is None else {
        "DP_SSE_SEND_TIMEOUT_SECONDS": str(args.send_timeout)}
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = launch(tmp, env)
        try:
            run(proc, port, args)
            if args.linger:
                print(f"server pid {proc.pid} stays for {args.linger:g} s", flush=True)
                time.sleep(args.linger)
        finally:
            proc.terminate()
            proc.wait(30)


def run(proc: subprocess.Popen, port: int, args) -> None:
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60)
    stalled_path = None
    if args.history_runs:
        sweep = {"dataset": {"name": "moons", "n_train": 100}, "model": {"hidden": [8]},
                 "train": {"epochs": args.history_epochs},
                 "sweep": {"dropout": [round(i / (args.history_runs * 2), 4)
                                       for i in range(args.history_runs)]}}
        hist = http.post("/api/experiments", json=sweep).json()["id"]
        t0 = time.monotonic()
        while http.get(f"/api/experiments/{hist}").json()["status"] not in ("done", "failed"):
            time.sleep(1)
        stalled_path = f"/api/experiments/{hist}/events"
        print(f"history: a finished sweep of {args.history_runs} x {args.history_epochs} "
              f"epochs, trained in {time.monotonic() - t0:.0f} s")
        http.get(stalled_path)  # once, so the first replay's caches are not counted
    baseline = Probe(url + "/", 5)
    time.sleep(5.5)
    baseline = baseline.result()
    start_rss = rss_mb(proc.pid)
    for n in range(args.rounds):
        if args.rounds > 1:
            print(f"round {n + 1} of {args.rounds} (server RSS at the start of the run: "
                  f"{start_rss:.0f} MB)")
        clients(proc, port, http, url, args, baseline, stalled_path)


def clients(proc: subprocess.Popen, port: int, http: httpx.Client, url: str, args, baseline,
            stalled_path: str | None) -> None:
    rss0, cpu0 = rss_mb(proc.pid), cpu_seconds(proc.pid)
    config = {**RUNNING, "train": {**RUNNING["train"], "epochs": args.epochs}}
    exp_id = http.post("/api/experiments", json=config).json()["id"]
    path = f"/api/experiments/{exp_id}/events"
    stalled_path = stalled_path or path
    peak = [rss0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            peak[0] = max(peak[0], rss_mb(proc.pid))
    threading.Thread(target=sample, daemon=True).start()
    prober = Probe(url + "/", 10_000)  # stopped below
    t0, wall0 = time.monotonic(), time.time()
    readers_groups = 1
    stalled_group = 1 + (args.readers + args.per_address - 1) // args.per_address
    stalled = [open_stalled(port, stalled_path, address(stalled_group, n, args.per_address))
               for n in range(args.stalled)]
    readers = [Reader(port, path, address(readers_groups, n, args.per_address))
               for n in range(args.readers)]

    async def read_all() -> None:
        deadline = time.monotonic() + 900
        await asyncio.gather(*(r.run(deadline) for r in readers))
    asyncio.run(read_all())
    read_time = time.monotonic() - t0
    body = http.get(f"/api/experiments/{exp_id}").json()
    served_stalled = refused_stalled = 0
    for sock in stalled:
        sock.settimeout(5)
        try:
            head = sock.recv(12, socket.MSG_PEEK)
        except OSError:
            head = b""
        if head.startswith(b"HTTP/1.1 200"):
            served_stalled += 1
        else:
            refused_stalled += 1
    # the stalled ones are dropped by the send timeout; then every place is free
    while http.get("/healthz").json()["streams"] > 0 and time.monotonic() - t0 < 1200:
        time.sleep(0.5)
    drop_time = time.monotonic() - t0
    during = prober.result()
    for sock in stalled:
        sock.close()
    time.sleep(8)  # the hand-back of memory runs when the streams have closed
    sampling.set()
    rss_after, cpu = rss_mb(proc.pid), cpu_seconds(proc.pid) - cpu0
    report(args, body, readers, served_stalled, refused_stalled, baseline, during, rss0,
           peak[0], rss_after, read_time, drop_time, cpu, http.get("/healthz").json(), wall0)


def report(args, body, readers, served_stalled, refused_stalled, baseline, during, rss0, peak,
           rss_after, read_time, drop_time, cpu, health, wall0) -> None:
    expected = body["progress"]["epochs_total"]
    statuses = [s for r in readers for s in r.statuses]
    served_readers = sum(1 for r in readers if 200 in r.statuses)
    complete = sum(1 for r in readers if r.ok and r.final and r.epochs == expected)
    refused = sum(1 for s in statuses if s != 200) + refused_stalled
    print(f"{args.readers} readers + {args.stalled} stalled clients, {args.per_address} per "
          f"address; experiment {body['status']} with {expected} epochs")
    print(f"  streams served: {served_readers + served_stalled} "
          f"({served_readers} readers, {served_stalled} stalled); refused: {refused}")
    print(f"  readers with every event once, in order, and the final event: {complete} / "
          f"{args.readers}; reconnects {sum(r.reconnects for r in readers)}; all read in "
          f"{read_time:.0f} s")
    print(f"  stalled ones dropped by the send timeout: every stream closed after "
          f"{drop_time:.0f} s")
    for label, sample in (("baseline (idle)", baseline), ("during the streams", during)):
        t = [latency for _, latency in sample]
        if t:
            print(f"  GET / {label:<20} p50 {pct(t, .5) * 1e3:7.1f} ms  p95 "
                  f"{pct(t, .95) * 1e3:7.1f} ms  max {max(t) * 1e3:7.1f} ms  ({len(t)})")
    slowest = sorted(during, key=lambda x: -x[1])[:3]
    print("  slowest GET / (seconds after the clients started: ms): " + ", ".join(
        f"{sent - wall0:.1f}: {latency * 1e3:.0f}" for sent, latency in slowest))
    print(f"  server RSS: before {rss0:.0f} MB, peak {peak:.0f} MB (+{peak - rss0:.0f} MB, "
          f"{(peak - rss0) * 1024 / max(1, args.readers + args.stalled):.0f} KB per stream), "
          f"after {rss_after:.0f} MB (+{rss_after - rss0:.0f} MB)")
    print(f"  server CPU: {cpu:.0f} s over {drop_time:.0f} s; healthz after: streams "
          f"{health['streams']}, ok {health['ok']}")


if __name__ == "__main__":
    main()
