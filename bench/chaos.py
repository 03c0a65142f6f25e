"""Chaos: experiments keep arriving while the database is locked, workers are killed and
hung, and the server is killed and restarted, for a few minutes; then nothing may be stuck
and no epoch a client saw may be missing.

Runs `python -m app serve` (2 workers, a 30 s time limit, a 3 s stop grace) on its own data
dir and port. Meanwhile:
- a submitter posts a small experiment every 0.3-1.5 s (moons, circles, digits, sines; single
  runs and small sweeps; 20-300 epochs);
- every accepted experiment is followed by a client reading its event stream, which
  reconnects with Last-Event-ID after any lost connection (server restarts included) and
  records every epoch event delivered to it;
- every 2-8 s one fault, at random: the SQLite file locked with BEGIN EXCLUSIVE from another
  connection for 1-20 s; a worker killed (SIGKILL); a worker hung (SIGSTOP, and SIGCONT after
  0-10 s, or never: then the time limit and the grace reclaim it); the server killed
  (SIGKILL) and started again; the server stopped (SIGTERM) and started again.
After `--seconds`, faults and submissions stop; the server is started once more if it is
down, and the script waits until nothing is queued or running. Then it reports experiments
submitted (and refused), done, failed with a reason (by reason), cancelled, stuck (not final:
must be 0), and epochs lost (must be 0): every epoch any stream delivered is in the database,
with the same data, and every experiment's stored epochs are 1..n per run with no gap and no
duplicate.

    python bench/chaos.py [--seconds 180] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("done", "failed", "cancelled")
ENV = {"DP_WORKERS": "2", "DP_THREADS_PER_WORKER": "1", "DP_MAX_RUN_SECONDS": "30",
       "DP_STOP_GRACE_SECONDS": "3", "DP_MAX_QUEUED": "40", "DP_MAX_QUEUED_PER_CLIENT": "100",
       "DP_CREATE_PER_MINUTE": "10000", "DP_MAX_QUEUED_PER_ADDRESS": "100",
       "DP_CREATE_PER_MINUTE_PER_ADDRESS": "10000"}


class Server:
    """The server under test: started, killed and started again on one data dir and port."""

    def __init__(self, data_dir: str):
        self.data_dir = Path(data_dir)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 (lives as long)
        self.starts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)], cwd=ROOT, env={**os.environ, **ENV},
            stdout=self.log, stderr=self.log)
        self.starts += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def workers(self) -> list[int]:
        if not self.up():
            return []
        out = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for pid in (task / "children").read_text().split():
                    with contextlib.suppress(OSError):
                        if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            out.append(int(pid))
        return out

    def kill(self, sig: int) -> None:
        """Kill or stop the server; its workers die with it (they are reaped here if a
        SIGSTOP left them unable to notice)."""
        workers = self.workers()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Chaos:
    def __init__(self, server: Server, seed: int):
        self.server, self.rng = server, random.Random(seed)
        self.faults: Counter = Counter()
        self.submitted: list[str] = []
        self.refused: Counter = Counter()
        self.delivered: dict[str, dict[int, str]] = {}  # exp -> {seq: data} seen by clients
        self.followers: list[asyncio.Task] = []
        self.lock = threading.Lock()  # around the server's restarts
        self.stopping = False

    # -- the experiments --------------------------------------------------------------------

    def config(self) -> dict:
        rng = self.rng
        name = rng.choice(["moons", "circles", "digits", "sine", "xor"])
        config = {"dataset": {"name": name, "n_train": rng.choice([100, 200, 400])},
                  "model": {"hidden": rng.choice([[16], [32, 32], [64]]),
                            "dropout": rng.choice([0.0, 0.2, 0.5])},
                  "train": {"epochs": rng.randint(20, 300)}}
        if rng.random() < 0.2:
            config["sweep"] = {"dropout": [0.0, 0.3, 0.6]}
        return config

    async def submit(self, http: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            try:
                res = await http.post("/api/experiments", json=self.config())
                if res.status_code == 201:
                    exp_id = res.json()["id"]
                    self.submitted.append(exp_id)
                    self.delivered[exp_id] = {}
                    self.followers.append(asyncio.create_task(self.follow(exp_id)))
                else:
                    self.refused[res.status_code] += 1
            except httpx.HTTPError:
                self.refused["server down"] += 1
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))

    async def follow(self, exp_id: str) -> None:
        """Read the experiment's stream to its final event, resuming after every break."""
        last, seen = 0, self.delivered[exp_id]
        async with httpx.AsyncClient(base_url=self.server.url, timeout=httpx.Timeout(
                10, read=60)) as http:
            while True:
                headers = {"Last-Event-ID": str(last)} if last else {}
                try:
                    async with http.stream("GET", f"/api/experiments/{exp_id}/events",
                                           headers=headers) as res:
                        if res.status_code == 204:
                            return
                        if res.status_code != 200:
                            await asyncio.sleep(1)
                            continue
                        event: dict = {}
                        async for line in res.aiter_lines():
                            if line.startswith("id:"):
                                event["id"] = int(line[3:].strip())
                            elif line.startswith("event:"):
                                event["event"] = line[6:].strip()
                            elif line.startswith("data:"):
                                event["data"] = line[5:].strip()
                            elif line == "" and "id" in event:
                                last = event["id"]
                                if event.get("event") == "epoch":
                                    seen[last] = event["data"]
                                if event.get("event") in FINAL:
                                    return
                                event = {}
                except httpx.HTTPError:
                    pass
                if self.stopping and not self.server.up():
                    await asyncio.sleep(1)
                await asyncio.sleep(0.3)

    # -- the faults -------------------------------------------------------------------------

    def fault(self) -> None:
        rng, server = self.rng, self.server
        kind = rng.choices(["lock", "kill worker", "hang worker", "kill server",
                            "stop server"], weights=[4, 3, 3, 1, 1])[0]
        with self.lock:
            if not server.up():
                return
            if kind == "lock":
                hold = rng.uniform(1, 20)
                conn = sqlite3.connect(server.data_dir / "playground.db", timeout=10,
                                       check_same_thread=False)
                try:
                    conn.execute("BEGIN EXCLUSIVE")
                except sqlite3.OperationalError:
                    conn.close()
                    return
                self.faults[kind] += 1
                threading.Timer(hold, lambda: (conn.rollback(), conn.close())).start()
            elif kind in ("kill worker", "hang worker"):
                workers = server.workers()
                if not workers:
                    return
                # mostly the one training (the busiest over 0.2 s), sometimes any
                pid = _busiest(workers) if rng.random() < 0.8 else rng.choice(workers)
                self.faults[kind] += 1
                if kind == "kill worker":
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                else:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    if rng.random() < 0.6:  # else it stays hung until it is reclaimed
                        threading.Timer(rng.uniform(0, 10), _cont, (pid,)).start()
            else:
                self.faults[kind] += 1
                server.kill(signal.SIGKILL if kind == "kill server" else signal.SIGTERM)
                time.sleep(rng.uniform(0, 2))
                server.start()

    async def faults_until(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(2, 8))
            await asyncio.to_thread(self.fault)


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _busiest(pids: list[int]) -> int:
    before = {pid: _ticks(pid) for pid in pids}
    time.sleep(0.2)
    return max(pids, key=lambda pid: _ticks(pid) - before[pid])


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def check(server: Server, chaos: Chaos) -> None:
    """Compare what clients saw with what the database holds (read directly)."""
    db = sqlite3.connect(server.data_dir / "playground.db")
    status: Counter = Counter()
    reasons: Counter = Counter()
    stuck, lost, changed, gaps, delivered = [], 0, 0, [], 0
    for exp_id in chaos.submitted:
        row = db.execute("SELECT status, error, n_runs FROM experiments WHERE id = ?",
                         (exp_id,)).fetchone()
        st, error, n_runs = row
        status[st] += 1
        if st == "failed":
            reasons[_reason(error)] += 1
        if st not in FINAL:
            stuck.append(exp_id)
        stored = dict(db.execute("SELECT seq, data FROM events WHERE experiment_id = ? AND "
                                 "kind = 'epoch'", (exp_id,)).fetchall())
        for seq, data in chaos.delivered[exp_id].items():
            delivered += 1
            if seq not in stored:
                lost += 1
            elif json.loads(stored[seq]) != json.loads(data):
                changed += 1
        per_run: dict[int, list[int]] = {}
        for seq in sorted(stored):
            epoch = json.loads(stored[seq])
            per_run.setdefault(epoch["run"], []).append(epoch["epoch"])
        for run, epochs in per_run.items():
            if epochs != list(range(1, len(epochs) + 1)):
                gaps.append((exp_id, run))
        seqs = [s for (s,) in db.execute("SELECT seq FROM events WHERE experiment_id = ? "
                                         "ORDER BY seq", (exp_id,))]
        if seqs != list(range(1, len(seqs) + 1)):
            gaps.append((exp_id, "log"))
    print(f"faults: {dict(chaos.faults)}; server starts {server.starts}")
    print(f"experiments submitted {len(chaos.submitted)} (refused: {dict(chaos.refused)})")
    print(f"  done {status['done']}, failed with a reason {status['failed']}, cancelled "
          f"{status['cancelled']}, stuck {len(stuck)}")
    for reason, n in reasons.most_common():
        print(f"    failed {n:4d}: {reason}")
    print(f"epochs delivered to clients {delivered}: lost {lost}, different {changed}; "
          f"experiments with a gap or a duplicate: {len(gaps)}")
    if stuck or lost or changed or gaps:
        print("  NOT OK:", {"stuck": stuck[:5], "gaps": gaps[:5]})


def _reason(error: str | None) -> str:
    text = (error or "no reason").split(";")[0]
    for long, short in (("exit code -9", "exit code -9"), ("time limit", "time limit")):
        if long in text:
            return text[:text.index(long) + len(short)]
    return text[:90]


async def run(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(tmp)
        chaos = Chaos(server, args.seed)
        server.start()
        until = time.monotonic() + args.seconds
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                await asyncio.gather(chaos.submit(http, until), chaos.faults_until(until))
            chaos.stopping = True
            with chaos.lock:
                if not server.up():
                    server.start()
            for pid in server.workers():  # nothing stays hung after the chaos
                _cont(pid)
            deadline = time.monotonic() + args.drain
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                while time.monotonic() < deadline:
                    health = (await http.get("/healthz")).json()
                    db = sqlite3.connect(server.data_dir / "playground.db")
                    active = db.execute("SELECT count(*) FROM experiments WHERE status IN "
                                        "('queued', 'running')").fetchone()[0]
                    db.close()
                    if active == 0 and health["pending_writes"] == 0:
                        break
                    await asyncio.sleep(1)
            _, pending = await asyncio.wait(chaos.followers, timeout=60)
            for task in pending:  # a stream that never got its final event (reported)
                task.cancel()
            if pending:
                print(f"{len(pending)} streams did not get a final event")
            # the check reads the database after one more restart
            server.kill(signal.SIGTERM)
            server.start()
            check(server, chaos)
        finally:
            if server.up():
                server.kill(signal.SIGTERM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--drain", type=float, default=180,
                    help="seconds to wait for the queue to empty after the chaos")
    ap.add_argument("--seed", type=int, default=1)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
