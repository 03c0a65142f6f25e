"""The dispatcher: a bounded queue of experiments in front of a pool of slots that train them.

`PoolExecutor` is the executor (app.executor.Executor) both deployments run; what trains an
experiment sits behind `Slot`: a warm worker process here (app.worker.ProcessSlot, for
`LocalExecutor`), or a thread following Ray tasks (app.ray_executor, for `RayExecutor`). So the
queue, the fair order, the per-client and per-address limits, the time limit, the store/publish
path and the orphan and heartbeat bookkeeping are this one piece of code for both.

Training never runs in the server's event loop or its threads (torch holds the GIL for its
Python-level work, so a training thread would make every page slow). Two threads run the pool:
- the *dispatcher* owns the slots (the only thread that talks to them). It waits on every
  slot's connection, every slot's sentinel and a wake-up pipe at once
  (`multiprocessing.connection.wait`); assigns queued experiments to idle slots (fair order,
  below), marking them running; moves each message a slot sends into that seat's *outbox*;
  tells slots of cancels; and escalates: a slot that has not stopped within
  `stop_grace_seconds` of a cancel or of the time limit is killed and replaced, its experiment
  failed with that reason (epochs kept). When a slot dies (a crash, an OOM kill, that kill),
  the rest of its messages and a `failed` final with the reason go to the outbox, and a fresh
  slot starts (with a growing delay when it dies while starting: no crash loop).
- the *writer* empties the outboxes into the store, in order: each run of epoch messages in
  one transaction, then the final status; only what the database took is published to live
  streams. A write that fails (the database is locked by another program, the disk is full)
  is retried, with a growing pause, until it is taken: a message is never dropped and never
  written twice (each write is one transaction). An outbox is bounded (`OUTBOX_LIMIT`): when it
  is full the dispatcher stops reading that slot, its pipe fills and the worker waits in its
  `send` (back-pressure); a stop that waits on the database does not count toward the grace.
A seat keeps its experiment until the writer has stored its final message, so an experiment
marked running always has a seat, and a seat is free again only once its experiment has ended
in the database. The queue and the seats' job fields are shared with request handlers (under
`_lock`); the outboxes with the writer (under `_out`).

Each executor is a *runner* (app.store): it holds the experiments it queued, says it is alive
every few seconds, and takes over only orphans, the experiments of runners that stopped or went
silent: at start, and (with several servers on PostgreSQL) every little while after.

The queue also says when each waiting experiment should start (`estimate_start`): every seat's
remaining time (from its own pace once it has trained a few epochs, else the recent pace per
epoch) and the waiting experiments ahead, in order. The same estimate sets a refusal's
`retry_after` (the time until a place frees up).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Protocol

from app.executor import Publish, QueueFull
from app.store import Store
from app.worker import ProcessSlots, worker_main

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0  # how often a runner says it is alive (at most; see _beat)
CANCEL_POLL_SECONDS = 2.0  # how often, with a shared database, it reads cancels asked elsewhere
STOP_GRACE_SECONDS = 1.0  # stop(): how long slots get to end before they are killed
STOP_FLUSH_SECONDS = 5.0  # stop(): how long the writer gets to store what it still holds
OUTBOX_LIMIT = 256  # messages read from a slot and not yet stored; then the slot waits
WRITE_BATCH = 64  # epoch messages of one experiment written in one transaction, at most
RETRY_PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)  # between failed writes (then 2 s each)
PACE_START = 0.02  # seconds per epoch of one run, until experiments have been timed here
WARMUP_GUESS = 3.0  # seconds until a slot that is starting can train


class Slot(Protocol):
    """What trains experiments for the dispatcher, one at a time. Only the dispatcher's thread
    calls it. It speaks app.worker's protocol on `conn`: ("ready",) once, then per job
    "epochs"/"snapshots" batches and one "finished" or "error"."""

    conn: Connection  # its messages; the dispatcher waits on it (set by start())
    sentinel: int  # a handle wait() sees ready once the slot has ended (set by start())

    def start(self) -> None:
        """Begin warming up (in the background: it says "ready" when done)."""

    def train(self, exp_id: str, config_json: str) -> None:
        """Train one experiment (the slot is ready and idle); clears an earlier cancel."""

    def cancel(self) -> None:
        """Ask the experiment it trains to stop at its next step (idempotent)."""

    def stop(self) -> None:
        """Ask it to end once idle."""

    def join(self, timeout: float | None = None) -> int | None:
        """Wait up to `timeout` s for its end: its exit code, or None while it still runs."""

    def kill(self) -> None:
        """End it now, saying nothing more (a hung slot, or the executor stopping)."""


class Slots(Protocol):
    """Where a pool's slots come from: opened once at start, closed at stop."""

    def open(self) -> int:
        """Get ready (connect to a cluster, ...); returns how many slots to run at once."""

    def new(self) -> Slot:
        """A slot, not yet started."""

    def close(self) -> None:
        """After every slot has ended."""


def new_runner_id() -> str:
    """Unique per server process, and readable in the database: host, pid, a random tag."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class _Job:
    exp_id: str
    owner: str | None
    address: str | None = None  # network address it counts against (None: not counted)
    total: int = 0  # epochs to train, all runs (for estimates)


@dataclass
class _Seat:
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


@dataclass
class PoolExecutor:
    """The dispatcher over slots from `slots` (see module docstring): an app.executor.Executor."""

    store: Store
    publish: Publish
    slots: Slots
    max_queued: int
    max_per_client: int = 1_000_000  # queued + running experiments of one client
    max_per_address: int = 1_000_000  # ... of one network address (outside rooms)
    max_run_seconds: float = float("inf")  # wall time of one experiment
    stop_grace_seconds: float = 10.0  # a slot asked to stop is killed after this
    runner_timeout: float = 30.0  # a runner silent this long is taken for dead
    runner: str = field(default_factory=new_runner_id)
    workers: int = 0  # slots at once (start() asks `slots`)
    failed_starts_total: int = 0  # slots that died before they were ready
    killed_total: int = 0  # slots killed for not stopping within the grace
    write_failures_total: int = 0  # writes the database refused (then retried)
    _pool: list[_Seat] = field(default_factory=list, init=False, repr=False)
    _queue: list[_Job] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _out: threading.Condition = field(default_factory=threading.Condition, init=False,
                                      repr=False)
    _stopping: bool = field(default=False, init=False)
    _writer_done: bool = field(default=False, init=False)
    _failed_starts: int = field(default=0, init=False)  # in a row
    _failed_writes: int = field(default=0, init=False)  # in a row
    _db_retry_at: float = field(default=0.0, init=False)  # no writes before (monotonic)
    _pace: float = field(default=PACE_START, init=False)  # s per epoch of one run, recent

    def start(self) -> None:
        self.workers = self.slots.open()
        self._wake_r, self._wake_w = os.pipe()
        for _ in range(self.workers):
            seat = _Seat(None)
            self._start_slot(seat)
            self._pool.append(seat)
        with contextlib.suppress(Exception):  # a locked database: the beats go on trying
            self.store.heartbeat(self.runner)
        self._beats = threading.Event()  # set: stop beating
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()
        self._adopt_pending = True
        with contextlib.suppress(Exception):  # a locked database: the dispatcher retries
            self._adopt_orphans()
            self._adopt_pending = False
        self._adopt_at = self._cancels_at = time.monotonic()
        self._writer = threading.Thread(target=self._write_loop, name="store-writer",
                                        daemon=True)
        self._writer.start()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the slots; experiments still running are marked failed (their epochs are
        kept, and what the writer still holds is stored first, for up to
        STOP_FLUSH_SECONDS). Safe to call twice (graceful shutdown calls it before the
        lifespan does)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout)  # from here on, this thread alone touches the slots
        live = [w.slot for w in self._pool if w.slot is not None]
        for w in self._pool:
            if w.slot is not None:
                self._drain(w, limit=None)
            if w.job and not w.final_read:
                self._put_final(w, w.job, "failed", {
                    "error": "the server was stopped during training; the epochs trained "
                             "before are kept"})
        self._flush_all(STOP_FLUSH_SECONDS)
        for slot in live:
            slot.stop()
        # retired: our queue goes to the next server that looks (another replica, or this one
        # restarted)
        with contextlib.suppress(Exception):
            self.store.retire(self.runner)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        # one deadline for all, then the stragglers are killed together
        stragglers = [s for s in live if s.join(max(0.0, deadline - time.monotonic())) is None]
        for slot in stragglers:
            slot.kill()
        for slot in stragglers:
            slot.join(10.0)
        self.slots.close()
        self._beats.set()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- called from request handlers ----------------------------------------------------------

    def check_room(self, owner: str | None, new: str | None = None,
                   address: str | None = None) -> None:
        """Raise QueueFull (with the limit, the value and when to come back) if `owner` (and
        `address`, for work outside rooms) may not queue one more (`new`: the experiment
        being submitted, already stored, so not counted)."""
        with self._lock:
            if len(self._queue) >= self.max_queued:
                raise QueueFull(f"the server is busy: {len(self._queue)} experiments are "
                                f"waiting, the limit is {self.max_queued}",
                                retry_after=self._retry_after_locked())
            if self.store.shared:  # several servers: count this person's work on all of them
                mine = self.store.active_count(owner, new) if owner is not None else 0
            else:
                mine = sum(1 for j in self._queue if j.owner == owner) + sum(
                    1 for w in self._pool if w.job and w.owner == owner)
            if owner is not None and mine >= self.max_per_client:
                raise QueueFull(f"you have {mine} experiments queued or running, the limit "
                                f"per person is {self.max_per_client}: wait for one to finish "
                                "or stop one",
                                retry_after=self._retry_after_locked(owner=owner))
            if address is None:
                return
            here = sum(1 for j in self._queue if j.address == address and j.exp_id != new) \
                + sum(1 for w in self._pool if w.job and w.address == address)
            if here >= self.max_per_address:
                raise QueueFull(f"your network address has {here} experiments queued or "
                                f"running, the limit per address is {self.max_per_address} "
                                "(inside a workshop room each member counts alone)",
                                retry_after=self._retry_after_locked(address=address))

    def submit(self, exp_id: str, owner: str | None = None,
               address: str | None = None) -> None:
        self.check_room(owner, exp_id, address)
        row = self.store.get(exp_id)
        with self._lock:
            self._queue.append(_Job(exp_id, owner, address, row.total_epochs if row else 0))
        self._wake()

    def ready_workers(self) -> int:
        """Slots that finished warming up (a worker process: importing torch)."""
        return sum(1 for w in self._pool if w.ready and w.slot is not None)

    def queue_length(self) -> int:
        return len(self._queue)

    def queue_position(self, exp_id: str) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        with self._lock:
            ids = [j.exp_id for j in self._queue]
        return ids.index(exp_id) + 1 if exp_id in ids else None

    def estimate_start(self, exp_id: str) -> float | None:
        """Seconds until a waiting experiment should start (None when not waiting here)."""
        with self._lock:
            return self._starts_locked().get(exp_id)

    def pending_writes(self) -> int:
        """Messages read from slots and not yet stored (the database is slow or locked)."""
        with self._out:
            return sum(len(w.outbox) for w in self._pool)

    def cancel(self, exp_id: str) -> bool:
        """Ask an experiment to stop; True if it was queued or running here. A queued one is
        cancelled at once (the database first: if it refuses, it stays queued); a running one
        is only marked here: the dispatcher, woken at once, tells its slot, and kills it if it
        has not stopped within the grace."""
        with self._lock:
            queued = any(j.exp_id == exp_id for j in self._queue)
            seat = None if queued else self._mark_cancelled(exp_id)
        if queued:
            events = self.store.transition(exp_id, "cancelled", {}, only_from=("queued",))
            with self._lock:
                self._queue[:] = [j for j in self._queue if j.exp_id != exp_id]
                if not events:  # it started meanwhile: stop it on its seat
                    seat = self._mark_cancelled(exp_id)
            self.publish(exp_id, events)
            if events:
                return True
        if seat is not None:
            self._wake()
        return seat is not None

    def _mark_cancelled(self, exp_id: str) -> _Seat | None:
        seat = next((w for w in self._pool if w.job == exp_id), None)
        if seat is not None and not seat.cancelled:
            seat.cancelled, seat.cancel_at = True, time.monotonic()
        return seat

    # -- estimates (under the lock) -------------------------------------------------------------

    def _remaining(self, w: _Seat, now: float) -> float:
        """Seconds until seat w is free: its job's rest at its own pace once it has trained a
        few epochs, else at the recent pace; 0 for an idle ready seat."""
        if w.slot is None:
            return max(0.0, w.restart_at - now) + WARMUP_GUESS
        if not w.job:
            return 0.0 if w.ready else WARMUP_GUESS
        elapsed = now - w.started
        if w.trained >= 3:
            rest = elapsed / w.trained * max(0, w.total - w.trained)
        else:
            rest = max(0.0, w.total * self._pace - elapsed)
        return max(0.1, min(rest, self.max_run_seconds + self.stop_grace_seconds - elapsed))

    def _duration(self, job: _Job) -> float:
        return min(self.max_run_seconds, max(0.1, job.total * self._pace))

    def _starts_locked(self) -> dict[str, float]:
        """Seconds from now until each waiting experiment starts: seats free up at their
        remaining times and take the queue in order."""
        now = time.monotonic()
        free = [self._remaining(w, now) for w in self._pool] or [0.0]
        heapq.heapify(free)
        starts = {}
        for job in self._queue:
            t = heapq.heappop(free)
            starts[job.exp_id] = t
            heapq.heappush(free, t + self._duration(job))
        return starts

    def _retry_after_locked(self, owner: str | None = None,
                            address: str | None = None) -> int:
        """Seconds until a refused client may succeed: until one of its own experiments ends
        (a person's or an address's limit), or until the queue moves (the queue is full)."""
        now = time.monotonic()
        starts = self._starts_locked()
        if owner is None and address is None:
            waits = [starts[self._queue[0].exp_id]] if self._queue else [0.0]
        else:
            def ours(owner_, address_) -> bool:
                return (owner is not None and owner_ == owner) or (
                    address is not None and address_ == address)
            waits = [self._remaining(w, now) for w in self._pool if w.job and ours(
                w.owner, w.address)]
            waits += [starts[j.exp_id] + self._duration(j) for j in self._queue
                      if ours(j.owner, j.address)]
        return max(1, min(3600, math.ceil(min(waits, default=1.0))))

    # -- the dispatcher thread ----------------------------------------------------------------

    def _adopt_orphans(self) -> None:
        """Take over the experiments of runners that are gone (a crash, a kill, a power loss, a
        server scaled away): the ones they were training are marked failed, keeping their
        stored epochs; their queue runs here, in order."""
        for row in self.store.orphans(self.runner, self.runner_timeout):
            if not self.store.claim(row.id, self.runner, row.runner):
                continue  # another live server took it first
            if row.status == "running":
                self._finish(row.id, "failed", {"error": "the server training it restarted or "
                                                         "stopped; the epochs trained before "
                                                         "are kept"})
            else:
                with self._lock:
                    self._queue.append(_Job(row.id, row.owner, None, row.total_epochs))

    def _beat(self) -> None:
        """Heartbeats well inside the timeout, on a thread of their own: a dispatcher busy with
        a slow database must not make this server look dead to the others."""
        while not self._beats.wait(min(HEARTBEAT_SECONDS, self.runner_timeout / 3)):
            try:
                self.store.heartbeat(self.runner)
            except Exception as e:  # a locked database: the next beat tries again
                log.warning("heartbeat failed: %s", str(e).splitlines()[0][:200])

    def _keep_alive(self) -> None:
        """With a shared database, every 2 s: the cancels other servers noted for ours (the bus
        brings them at once; this is for a lost message). Twice per timeout: take over orphans
        (shared database, or a start that found the database locked), and fail any
        experiment of ours marked running that no seat holds (a failure halfway through a
        hand-over)."""
        now = time.monotonic()
        if self.store.shared and now - self._cancels_at >= CANCEL_POLL_SECONDS:
            self._cancels_at = now
            for exp_id in self.store.cancels_for(self.runner):
                self.cancel(exp_id)
        period = self.runner_timeout / 2
        if self._adopt_pending:
            period = min(period, 5.0)
        if now - self._adopt_at < period:
            return
        self._adopt_at = now
        if self.store.shared or self._adopt_pending:
            self._adopt_orphans()
            self._adopt_pending = False
        with self._lock:
            held = {w.job for w in self._pool if w.job}
        for row in self.store.with_status("running"):
            if row.runner == self.runner and row.id not in held:
                self._finish(row.id, "failed", {"error": "training stopped unexpectedly; the "
                                                         "epochs trained before are kept"})

    def _start_slot(self, w: _Seat) -> None:
        w.slot = self.slots.new()
        w.slot.start()
        w.ready, w.kill_reason = False, None

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception:  # e.g. the database is locked or the disk is full: keep serving
                log.exception("dispatcher error")
                self._db_retry_at = time.monotonic() + 1.0
                time.sleep(0.5)

    def _step(self) -> None:
        self._respawn_due()
        self._escalate()
        self._enforce_time_limit()
        self._send_cancels()
        live = [w for w in self._pool if w.slot is not None]
        with self._out:  # a full outbox: leave the slot's messages in its pipe (back-pressure)
            readable = [w for w in live if len(w.outbox) < OUTBOX_LIMIT]
        conns = {w.slot.conn: w for w in readable}
        sentinels = {w.slot.sentinel: w for w in live}
        for ready in wait([*conns, *sentinels, self._wake_r], timeout=1.0):
            if ready == self._wake_r:
                os.read(self._wake_r, 4096)
            elif ready in conns:
                self._drain(conns[ready])
        for ready in wait(list(sentinels), timeout=0):  # after reading what they said
            self._replace(sentinels[ready])
        if time.monotonic() >= self._db_retry_at:  # the database takes writes again
            self._keep_alive()
            self._assign()
            self._send_cancels()  # a cancel that came while assigning

    def _enforce_time_limit(self) -> None:
        now = time.monotonic()
        with self._lock:
            for w in self._pool:
                if w.job and not w.timed_out and now - w.started > self.max_run_seconds:
                    w.timed_out = True  # it stops between steps, says "cancelled"
                    if not w.cancelled:
                        w.cancelled, w.cancel_at = True, now

    def _send_cancels(self) -> None:
        """Tell slots of the cancels marked on their seats (by cancel(), the time limit, or a
        take-over). Run after _assign, whose train() clears the slot's flag: a cancel that came
        between _take_next and train() is so told again, never lost."""
        for w in self._pool:
            if w.cancelled and w.job and w.slot is not None and not w.final_read:
                w.slot.cancel()

    def _escalate(self) -> None:
        """Kill a slot that has not stopped within the grace of a cancel or of the time limit
        (hung, stopped by a signal, stuck in native code); _replace then fails its experiment
        with the reason and starts another. Time spent waiting on the database (a full
        outbox: the worker waits on us) does not count."""
        now = time.monotonic()
        for w in self._pool:
            if not (w.cancelled and w.job and not w.final_read and w.slot is not None
                    and w.kill_reason is None):
                continue
            with self._out:
                waiting_on_us = len(w.outbox) >= OUTBOX_LIMIT
            if waiting_on_us:
                w.cancel_at = now
                continue
            if now - w.cancel_at < self.stop_grace_seconds:
                continue
            why = (f"stopped after the time limit of {self.max_run_seconds:g} s per experiment"
                   if w.timed_out else "asked to stop")
            w.kill_reason = (f"{why}; the training process did not stop within "
                             f"{self.stop_grace_seconds:g} s and was replaced; the epochs "
                             "trained before are kept")
            log.warning("killing %r: %s", w.slot, w.kill_reason)
            self.killed_total += 1
            w.slot.kill()

    def _take_next(self, w: _Seat) -> _Job | None:
        """Move the next job from the queue onto seat w, in one step under the lock, so a
        cancel always finds the experiment either queued or on a seat.

        Fair order: the oldest job of the client with the fewest experiments running, so one
        person's long sweep never starves everyone else's single runs."""
        with self._lock:
            if not self._queue:
                return None
            running: dict[str | None, int] = {}
            for other in self._pool:
                if other.job:
                    running[other.owner] = running.get(other.owner, 0) + 1
            job = min(enumerate(self._queue),
                      key=lambda item: (running.get(item[1].owner, 0), item[0]))[1]
            self._queue.remove(job)
            w.job, w.owner, w.address, w.cancelled = job.exp_id, job.owner, job.address, False
            w.started, w.timed_out, w.final_read = time.monotonic(), False, False
            w.total, w.trained = job.total, 0
            return job

    def _release(self, w: _Seat) -> None:
        """Seat w is free (under the lock)."""
        w.job = w.owner = w.address = None
        w.cancelled = w.timed_out = w.final_read = False

    def _assign(self) -> None:
        for w in self._pool:
            if not (w.ready and w.job is None and w.slot is not None):
                continue
            job = self._take_next(w)
            if job is None:
                return
            try:  # only if still queued and still ours (a replica may have taken it over)
                row = self.store.get(job.exp_id)
                events = self.store.transition(job.exp_id, "running", only_from=("queued",),
                                               held_by=self.runner) if row else []
            except Exception:  # the database failed: the job waits for the next step
                with self._lock:
                    self._queue.insert(0, job)
                    self._release(w)
                raise
            if not events:  # gone, cancelled or taken over in the meantime
                with self._lock:
                    self._release(w)
                continue
            self.publish(job.exp_id, events)
            w.slot.train(job.exp_id, row.config)

    def _drain(self, w: _Seat, limit: int | None = OUTBOX_LIMIT) -> None:
        """Move the messages waiting on a slot's connection into its seat's outbox, while the
        outbox has room (`limit`; None: everything, when the slot has ended)."""
        try:
            while (limit is None or len(w.outbox) < limit) and w.slot.conn.poll():
                self._take(w, w.slot.conn.recv())
        except (EOFError, OSError):
            pass  # the slot died; its sentinel fires next

    def _take(self, w: _Seat, msg: tuple) -> None:
        """One message of a slot, into the outbox in the writer's terms."""
        kind = msg[0]
        if kind == "ready":
            w.ready = True
        elif kind in ("epochs", "snapshots"):  # kept in order, written together
            event = kind[:-1]
            if kind == "epochs" and msg[1] == w.job:
                w.trained += len(msg[2])
            self._put(w, ("events", msg[1], [(event, {"run": run, **m}) for run, m in msg[2]]))
        elif kind == "finished":
            _, exp_id, status, summary = msg
            if status == "cancelled" and w.timed_out and exp_id == w.job:
                self._put_final(w, exp_id, "failed", {
                    "summary": summary,
                    "error": f"stopped after the time limit of {self.max_run_seconds:g} s per "
                             "experiment; the epochs trained before are kept"})
            else:
                self._put_final(w, exp_id, status, {"summary": summary})
        else:  # "error"
            self._put_final(w, msg[1], "failed", {"error": msg[2]})

    def _put(self, w: _Seat, entry: tuple) -> None:
        with self._out:
            w.outbox.append(entry)
            self._out.notify()

    def _put_final(self, w: _Seat, exp_id: str, status: str, extra: dict) -> None:
        if exp_id == w.job:
            w.final_read = True
        self._put(w, ("final", exp_id, status, extra))

    def _replace(self, w: _Seat) -> None:
        """A slot ended: store what it said, fail its experiment (epochs stay stored) and
        start another."""
        code = w.slot.join(5.0)
        log.warning("%r ended with exit code %s", w.slot, code)
        self._drain(w, limit=None)
        if w.job and not w.final_read:
            reason = w.kill_reason or f"the training process died (exit code {code})"
            if code == -9 and not w.kill_reason:
                reason += ", probably killed for using too much memory"
            self._put_final(w, w.job, "failed", {"error": reason})
        if w.ready:  # it had started fine: replace it at once
            self._failed_starts = 0
            self._start_slot(w)
            return
        # It died while starting (a broken install, no memory): retry with a growing delay
        # instead of a tight crash loop.
        self._failed_starts += 1
        delay = min(60.0, 0.5 * 2 ** self._failed_starts)
        log.error("a slot failed to start (exit code %s); retrying in %.0f s", code, delay)
        w.slot, w.restart_at = None, time.monotonic() + delay
        self.failed_starts_total += 1

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for w in self._pool:
            if w.slot is None and now >= w.restart_at:
                self._start_slot(w)

    # -- the writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Store the outboxes, in order, until stop() says so; a refused write is retried
        after a growing pause (see module docstring)."""
        while True:
            with self._out:
                while not self._writer_done and not any(w.outbox for w in self._pool):
                    self._out.wait(1.0)
                if self._writer_done:
                    return
            pause = self._db_retry_at - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, 0.5))
                continue
            try:
                for w in self._pool:
                    self._flush(w)
                self._failed_writes = 0
            except Exception as e:
                self.write_failures_total += 1
                pause = RETRY_PAUSES[min(self._failed_writes, len(RETRY_PAUSES) - 1)]
                self._failed_writes += 1
                self._db_retry_at = time.monotonic() + pause
                if self._failed_writes in (1, 10) or self._failed_writes % 100 == 0:
                    log.warning("storing training messages failed %d time(s) in a row "
                                "(%s); they wait, in order, and are retried",
                                self._failed_writes, str(e).splitlines()[0][:200])
            self._wake()  # room in the outboxes again, or seats free

    def _flush(self, w: _Seat) -> None:
        """Store seat w's outbox, oldest first: a run of epoch messages of one experiment in
        one transaction, a final message in another. Raises on the first refusal, leaving it
        and everything after it in the outbox."""
        while True:
            with self._out:
                if not w.outbox:
                    return
                head = w.outbox[0]
                batch: list[tuple] = [head]
                if head[0] == "events":
                    for entry in list(w.outbox)[1:WRITE_BATCH]:
                        if entry[0] != "events" or entry[1] != head[1]:
                            break
                        batch.append(entry)
            exp_id = head[1]
            if head[0] == "events":
                events = self.store.append(exp_id, [e for entry in batch for e in entry[2]],
                                           held_by=self.runner)
                if not events:  # no longer ours and running (taken over, deleted): stop it
                    with self._lock:
                        self._mark_cancelled(exp_id)
            else:
                _, _, status, extra = head
                events = self._finish(exp_id, status, extra)
            with self._out:
                for _ in batch:
                    w.outbox.popleft()
            if head[0] == "final":  # (_finish has published it)
                self._ended(w, exp_id, status)
            else:
                self.publish(exp_id, events)

    def _ended(self, w: _Seat, exp_id: str, status: str) -> None:
        """An experiment's final message is stored: its seat is free (and a finished run
        teaches the estimate its pace)."""
        with self._lock:
            if w.job != exp_id:
                return
            if status == "done" and w.total:
                pace = (time.monotonic() - w.started) / w.total
                self._pace = 0.7 * self._pace + 0.3 * pace
            self._release(w)

    def _flush_all(self, timeout: float) -> None:
        """Let the writer store what the outboxes hold (up to `timeout` s), then end it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._out:
                if not any(w.outbox for w in self._pool):
                    break
                self._out.notify()
            time.sleep(0.05)
        with self._out:
            left = sum(len(w.outbox) for w in self._pool)
            self._writer_done = True
            self._out.notify_all()
        self._writer.join(timeout)
        if left:
            log.error("the database did not take %d training messages before the stop; the "
                      "next start marks their experiments failed", left)

    def _finish(self, exp_id: str, status: str, extra: dict) -> list:
        fields = {}
        if "summary" in extra:
            fields["summary"] = json.dumps(extra["summary"])
        if "error" in extra:
            fields["error"] = extra["error"]
        events = self.store.transition(exp_id, status, extra, **fields)
        self.publish(exp_id, events)
        return events


class LocalExecutor(PoolExecutor):
    """The default executor: the pool with `workers` warm worker processes on this machine,
    `threads` torch threads each (app.worker). Only a constructor: the behaviour is the pool's
    and the slots'."""

    def __init__(self, store: Store, publish: Publish, workers: int, threads: int,
                 max_queued: int, *, target: Callable = worker_main, **limits) -> None:
        super().__init__(store, publish, ProcessSlots(workers, threads, target), max_queued,
                         workers=workers, **limits)
