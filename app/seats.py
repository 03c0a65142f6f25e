"""What the dispatcher (app.jobs) works with: slots that train, and the seats that hold jobs.

A `Slot` trains one experiment at a time (a warm worker process, app.worker.ProcessSlot, or a
thread following Ray tasks, app.ray_executor.RaySlot); `Slots` makes them. A `Seat` is the
dispatcher's record of one place in its pool: the slot, the job on it, the job's messages not
yet stored (its outbox) and, while it trains a borrowed part of a shared sweep, the guest
experiment that the same slot trains meanwhile (app.sharing). A `Job` is a queued experiment.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Protocol


class Slot(Protocol):
    """What trains experiments for the dispatcher, one at a time. Only the dispatcher's thread
    calls it. It speaks app.worker's protocol on `conn`: ("ready",) once, then per job
    "epochs"/"snapshots" batches and one "finished" or "error"."""

    conn: Connection  # its messages; the dispatcher waits on it (set by start())
    sentinel: int  # a handle wait() sees ready once the slot has ended (set by start())

    def start(self) -> None:
        """Begin warming up (in the background: it says "ready" when done)."""

    def train(self, exp_id: str, config_json: str, runs: list[int] | None = None,
              guest: bool = False) -> None:
        """Train one experiment, or its part `runs` (the slot is ready and idle, or, with
        `guest`, trains a part that yields to it); clears an earlier cancel of that level."""

    def cancel(self, guest: bool = False) -> None:
        """Ask the experiment it trains (or its guest) to stop at its next step
        (idempotent)."""

    def stop(self) -> None:
        """Ask it to end once idle."""

    def join(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` s for its end: its exit code, or None while it still runs."""

    def kill(self) -> None:
        """End it now, saying nothing more (a hung slot, or the executor stopping)."""


class Slots(Protocol):
    """Where a pool's slots come from: opened once at start, closed at stop."""

    shares: bool  # its slots take guests, so a sweep may borrow idle ones (app.sharing)

    def open(self) -> int:
        """Get ready (connect to a cluster, ...); returns how many slots to run at once."""

    def new(self) -> Slot:
        """A slot, not yet started."""

    def close(self) -> None:
        """After every slot has ended."""



@dataclass
class Job:
    exp_id: str
    owner: str | None
    address: str | None = None  # network address it counts against (None: not counted)
    total: int = 0  # epochs to train, all runs (for estimates)
    runs: int = 1  # runs of the experiment (a sweep of several may be shared out)


@dataclass
class Seat:
    """A place in the pool: its slot, the job on it and the job's messages not yet stored.

    job/owner/address/cancelled: under the executor's lock; outbox: under `_out`. The seat
    keeps its job until the writer has stored the job's final message."""

    slot: Slot | None  # None: a slot that died while starting, waiting for restart_at
    job: str | None = None
    owner: str | None = None
    address: str | None = None
    ready: bool = False
    cancelled: bool = False  # asked to stop; the dispatcher tells the slot (_send_cancels)
    cancel_at: float = 0.0  # time.monotonic() of that ask: the grace counts from here
    started: float = 0.0  # time.monotonic() when the job started
    timed_out: bool = False
    total: int = 0  # the job's epochs, all runs
    trained: int = 0  # epochs its slot has reported
    final_read: bool = False  # the job's final message is in the outbox: the slot stopped
    kill_reason: str | None = None  # set when the dispatcher kills a slot that did not stop
    restart_at: float = 0.0
    outbox: deque = field(default_factory=deque)  # ("events", exp, [...]) | ("final", ...)
    # | ("part_end", exp, part, status, run_dicts, error)
    part: int | None = None  # which part of a shared experiment the job is (app.sharing)
    runs: list[int] | None = None  # that part's run indices (None: the whole experiment)
    borrowed: bool = False  # a part beyond the first: it yields to a guest
    guest: Seat | None = None  # another experiment training on this slot, the part paused
    nested: bool = False  # this seat is a guest (its slot is its host's)
