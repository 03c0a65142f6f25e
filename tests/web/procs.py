"""Processes of a live server (tests/web/conftest.py LiveServer), seen through Linux /proc: its
training workers, which of them is busy, and how much memory the server holds. Used by the
fault tests to stop (SIGSTOP) or kill a worker as an operator or the kernel would."""

from __future__ import annotations

import time
from pathlib import Path


def worker_pids(pid: int) -> list[int]:
    """The server's training processes: its children started by multiprocessing's spawn."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    out = []
    for child in children:
        try:
            if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:
            continue
    return out


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def busiest_worker(pid: int, seconds: float = 0.5) -> int:
    """The worker that used the most CPU over `seconds`: the one training."""
    before = {w: cpu_ticks(w) for w in worker_pids(pid)}
    time.sleep(seconds)
    return max(before, key=lambda w: cpu_ticks(w) - before[w])


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T for stopped, Z...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
