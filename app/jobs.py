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
`_lock`); the outboxes with the writer (under `_out`). The writer's code is app.writer; the
slot and seat records are app.seats.

Idle seats are not left idle while a sweep trains (app.sharing): a sweep taken when other
seats are free and nobody else waits is shared out, a part of its runs per seat. A part ends
with its runs' results instead of a final message; the writer stores the experiment's one
final status and summary when it stores the last part's end (after every part's epochs). The
parts beyond the first are *borrowed*: the next queued experiment goes to one at once, as its
*guest*, trained by the same process while the part pauses (app.worker), so a single run never
waits for someone else's sweep. A cancel, a failure or a dead process ends every part.

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
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from app.executor import Publish, QueueFull
from app.ml.config import ExperimentConfig
from app.seats import Job, Seat, Slot, Slots
from app.sharing import SharedExperiment, plan_parts
from app.store import Store
from app.worker import ProcessSlots, worker_main
from app.writer import StoreWriter

__all__ = ["LocalExecutor", "PoolExecutor", "Slot", "Slots"]

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0  # how often a runner says it is alive (at most; see _beat)
CANCEL_POLL_SECONDS = 2.0  # how often, with a shared database, it reads cancels asked elsewhere
STOP_GRACE_SECONDS = 1.0  # stop(): how long slots get to end before they are killed
STOP_FLUSH_SECONDS = 5.0  # stop(): how long the writer gets to store what it still holds
OUTBOX_LIMIT = 256  # messages read from a slot and not yet stored; then the slot waits
PACE_START = 0.02  # seconds per epoch of one run, until experiments have been timed here
WARMUP_GUESS = 3.0  # seconds until a slot that is starting can train


def new_runner_id() -> str:
    """Unique per server process, and readable in the database: host, pid, a random tag."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class PoolExecutor(StoreWriter):
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
    shared_total: int = 0  # experiments whose runs were shared out over idle slots
    guests_total: int = 0  # experiments that trained as the guest of a shared part
    _pool: list[Seat] = field(default_factory=list, init=False, repr=False)
    _queue: list[Job] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _out: threading.Condition = field(default_factory=threading.Condition, init=False,
                                      repr=False)
    _stopping: bool = field(default=False, init=False)
    _writer_done: bool = field(default=False, init=False)
    _failed_starts: int = field(default=0, init=False)  # in a row
    _failed_writes: int = field(default=0, init=False)  # in a row
    _db_retry_at: float = field(default=0.0, init=False)  # no writes before (monotonic)
    _pace: float = field(default=PACE_START, init=False)  # s per epoch of one run, recent
    _shared: dict[str, SharedExperiment] = field(default_factory=dict, init=False, repr=False)

    def start(self) -> None:
        self.workers = self.slots.open()
        self._wake_r, self._wake_w = os.pipe()
        for _ in range(self.workers):
            seat = Seat(None)
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
            for t in (w, w.guest):
                if t is not None and t.job and not t.final_read:
                    self._end_job(w, t, "failed", {
                        "error": "the server was stopped during training; the epochs "
                                 "trained before are kept"})
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
                mine = sum(1 for j in self._queue if j.owner == owner) + len(
                    {w.job for w in self._seats() if w.job and w.owner == owner})
            if owner is not None and mine >= self.max_per_client:
                raise QueueFull(f"you have {mine} experiments queued or running, the limit "
                                f"per person is {self.max_per_client}: wait for one to finish "
                                "or stop one",
                                retry_after=self._retry_after_locked(owner=owner))
            if address is None:
                return
            here = sum(1 for j in self._queue if j.address == address and j.exp_id != new) \
                + len({w.job for w in self._seats() if w.job and w.address == address})
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
            self._queue.append(Job(exp_id, owner, address, row.total_epochs if row else 0,
                                    row.n_runs if row else 1))
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
            seated = False if queued else self._mark_cancelled(exp_id)
        if queued:
            events = self.store.transition(exp_id, "cancelled", {}, only_from=("queued",))
            with self._lock:
                self._queue[:] = [j for j in self._queue if j.exp_id != exp_id]
                if not events:  # it started meanwhile: stop it on its seat
                    seated = self._mark_cancelled(exp_id)
            self.publish(exp_id, events)
            if events:
                return True
        if seated:
            self._wake()
        return seated

    def _mark_cancelled(self, exp_id: str) -> bool:
        """Mark every seat of an experiment (all its parts) to stop (under the lock); False
        when no seat holds it."""
        seats = [w for w in self._seats() if w.job == exp_id]
        now = time.monotonic()
        for seat in seats:
            if not seat.cancelled:
                seat.cancelled, seat.cancel_at = True, now
        return bool(seats)

    def _seats(self) -> list[Seat]:
        """Every seat holding or able to hold a job: the pool's, and the guests on them."""
        return [t for w in self._pool for t in (w, w.guest) if t is not None]

    # -- estimates (under the lock) -------------------------------------------------------------

    def _remaining(self, w: Seat, now: float) -> float:
        """Seconds until seat w is free: its job's rest at its own pace once it has trained a
        few epochs, else at the recent pace; 0 for an idle ready seat."""
        if w.slot is None:
            return max(0.0, w.restart_at - now) + WARMUP_GUESS
        if w.borrowed and not w.nested:  # a queued job trains there at once, as its guest
            return self._remaining(w.guest, now) if w.guest else 0.0
        if not w.job:
            return 0.0 if w.ready else WARMUP_GUESS
        elapsed = now - w.started
        if w.trained >= 3:
            rest = elapsed / w.trained * max(0, w.total - w.trained)
        else:
            rest = max(0.0, w.total * self._pace - elapsed)
        return max(0.1, min(rest, self.max_run_seconds + self.stop_grace_seconds - elapsed))

    def _duration(self, job: Job) -> float:
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
                    self._queue.append(Job(row.id, row.owner, None, row.total_epochs,
                                            row.n_runs))

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
            held = {w.job for w in self._seats() if w.job}
        for row in self.store.with_status("running"):
            if row.runner == self.runner and row.id not in held:
                self._finish(row.id, "failed", {"error": "training stopped unexpectedly; the "
                                                         "epochs trained before are kept"})

    def _start_slot(self, w: Seat) -> None:
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
            for w in self._seats():
                if w.job and not w.timed_out and now - w.started > self.max_run_seconds:
                    w.timed_out = True  # it stops between steps, says "cancelled"
                    if not w.cancelled:
                        w.cancelled, w.cancel_at = True, now

    def _send_cancels(self) -> None:
        """Tell slots of the cancels marked on their seats (by cancel(), the time limit, or a
        take-over). Run after _assign, whose train() clears the slot's flag: a cancel that came
        between _take_next and train() is so told again, never lost."""
        for w in self._seats():
            if w.cancelled and w.job and w.slot is not None and not w.final_read:
                w.slot.cancel(guest=w.nested)

    def _escalate(self) -> None:
        """Kill a slot that has not stopped within the grace of a cancel or of the time limit
        (hung, stopped by a signal, stuck in native code); _replace then fails its experiment
        with the reason and starts another. Time spent waiting on the database (a full
        outbox: the worker waits on us) does not count."""
        now = time.monotonic()
        for w in self._seats():
            if not (w.cancelled and w.job and not w.final_read and w.slot is not None
                    and w.kill_reason is None):
                continue
            host = self._host(w)
            with self._out:
                waiting_on_us = len(host.outbox) >= OUTBOX_LIMIT
            # a part paused under a guest cannot look before the guest has ended
            if waiting_on_us or (w.guest is not None and not w.guest.final_read):
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

    def _host(self, seat: Seat) -> Seat:
        """The pool seat whose slot a seat uses: itself, or a guest's host."""
        return next((w for w in self._pool if w.guest is seat), seat)

    def _take_next(self, w: Seat, host: Seat | None = None) -> Job | None:
        """Move the next job from the queue onto seat w (a guest of `host`, if given), in one
        step under the lock, so a cancel always finds the experiment either queued or on a
        seat. A sweep taken while other seats idle and nobody else waits is shared out over
        them (app.sharing): each gets a part of its runs.

        Fair order: the oldest job of the client with the fewest experiments running, so one
        person's long sweep never starves everyone else's single runs."""
        with self._lock:
            if not self._queue:
                return None
            running: dict[str | None, int] = {}
            for _exp, owner in {(o.job, o.owner) for o in self._seats() if o.job}:
                running[owner] = running.get(owner, 0) + 1
            job = min(enumerate(self._queue),
                      key=lambda item: (running.get(item[1].owner, 0), item[0]))[1]
            self._queue.remove(job)
            if host is not None:
                w.nested, host.guest = True, w
            seats = [w]
            if host is None and job.runs > 1 and self.slots.shares and not self._queue:
                seats += [o for o in self._pool if o is not w and o.ready and o.job is None
                          and o.slot is not None]
            parts = plan_parts(job.runs, len(seats)) if len(seats) > 1 else [None]
            for i, (seat, runs) in enumerate(zip(seats, parts)):
                self._seat_job(seat, job, runs)
                if runs is not None:
                    seat.part, seat.borrowed = i, i > 0
                    seat.total = job.total * len(runs) // job.runs
            if len(parts) > 1:
                self._shared[job.exp_id] = SharedExperiment(len(parts))
                self.shared_total += 1
            self.guests_total += host is not None
            return job

    def _seat_job(self, w: Seat, job: Job, runs: list[int] | None) -> None:
        w.job, w.owner, w.address, w.cancelled = job.exp_id, job.owner, job.address, False
        w.started, w.timed_out, w.final_read = time.monotonic(), False, False
        w.total, w.trained, w.runs = job.total, 0, runs

    def _release(self, w: Seat) -> None:
        """Seat w is free (under the lock)."""
        w.job = w.owner = w.address = None
        w.cancelled = w.timed_out = w.final_read = w.borrowed = False
        w.part = w.runs = None
        if w.nested:
            self._host(w).guest = None

    def _assign(self) -> None:
        """Queued jobs onto idle seats, then onto parts that yield (as their guests)."""
        for w in self._pool:
            if w.ready and w.job is None and w.slot is not None:
                job = self._take_next(w)
                if job is None:
                    return
                self._start(job)
        if not self.slots.shares:
            return
        for w in self._pool:
            if (w.borrowed and w.guest is None and w.slot is not None and not w.cancelled
                    and not w.final_read):
                job = self._take_next(Seat(w.slot, ready=True), host=w)
                if job is None:
                    return
                self._start(job)

    def _start(self, job: Job) -> None:
        """Tell the seats _take_next gave `job` to train it (only if still queued and still
        ours: a replica may have taken it over)."""
        with self._lock:
            seats = [w for w in self._seats() if w.job == job.exp_id]
        try:
            row = self.store.get(job.exp_id)
            events = self.store.transition(job.exp_id, "running", only_from=("queued",),
                                           held_by=self.runner) if row else []
        except Exception:  # the database failed: the job waits for the next step
            with self._lock:
                self._queue.insert(0, job)
                for w in seats:
                    self._release(w)
                self._shared.pop(job.exp_id, None)
            raise
        if not events:  # gone, cancelled or taken over in the meantime
            with self._lock:
                for w in seats:
                    self._release(w)
                self._shared.pop(job.exp_id, None)
            return
        self.publish(job.exp_id, events)
        if job.exp_id in self._shared:
            self._shared[job.exp_id].task = ExperimentConfig.model_validate_json(
                row.config).task
        for w in seats:
            w.slot.train(job.exp_id, row.config, w.runs, guest=w.nested)

    def _drain(self, w: Seat, limit: int | None = OUTBOX_LIMIT) -> None:
        """Move the messages waiting on a slot's connection into its seat's outbox, while the
        outbox has room (`limit`; None: everything, when the slot has ended)."""
        try:
            while (limit is None or len(w.outbox) < limit) and w.slot.conn.poll():
                self._take(w, w.slot.conn.recv())
        except (EOFError, OSError):
            pass  # the slot died; its sentinel fires next

    def _take(self, w: Seat, msg: tuple) -> None:
        """One message of seat w's slot, into w's outbox in the writer's terms (a guest's
        messages too: one slot, one outbox, in order)."""
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            return
        t = w.guest if w.guest is not None and w.guest.job == msg[1] else w  # whose job
        if kind in ("epochs", "snapshots"):  # kept in order, written together
            event = kind[:-1]
            if kind == "epochs" and msg[1] == t.job:
                t.trained += len(msg[2])
            self._put(w, ("events", msg[1], [(event, {"run": run, **m}) for run, m in msg[2]]))
        elif kind in ("finished", "part"):
            _, exp_id, status, result = msg
            extra = {"summary": result} if kind == "finished" else {"runs": result}
            if status == "cancelled" and t.timed_out and exp_id == t.job:
                status, extra["error"] = "failed", (
                    f"stopped after the time limit of {self.max_run_seconds:g} s per "
                    "experiment; the epochs trained before are kept")
            self._end_job(w, t, status, extra, exp_id)
        else:  # "error"
            self._end_job(w, t, "failed", {"error": msg[2]}, msg[1])

    def _put(self, w: Seat, entry: tuple) -> None:
        with self._out:
            w.outbox.append(entry)
            self._out.notify()

    def _end_job(self, w: Seat, t: Seat, status: str, extra: dict,
                 exp_id: str | None = None) -> None:
        """The job of seat t (w itself, or its guest) ended with `status`: its final message
        (a part's end, for a part of a shared experiment) goes into w's outbox. A part that
        did not finish stops the other parts."""
        exp_id = exp_id or t.job
        if exp_id != t.job or t.part is None:
            if exp_id == t.job:
                t.final_read = True
            self._put(w, ("final", exp_id, status, extra))
            return
        t.final_read = True
        self._put(w, ("part_end", exp_id, t.part, status, extra.get("runs"),
                      extra.get("error")))
        if status != "done":
            with self._lock:
                self._mark_cancelled(exp_id)

    def _replace(self, w: Seat) -> None:
        """A slot ended: store what it said, fail its experiments (epochs stay stored) and
        start another."""
        code = w.slot.join(5.0)
        log.warning("%r ended with exit code %s", w.slot, code)
        self._drain(w, limit=None)
        killed = any(t.kill_reason for t in (w, w.guest) if t is not None)
        for t in (w, w.guest):
            if t is None or not t.job or t.final_read:
                continue
            reason = t.kill_reason or f"the training process died (exit code {code})"
            if killed and not t.kill_reason:
                reason = ("the training process it shared with another experiment did not "
                          "stop in time and was replaced")
            elif code == -9 and not killed:
                reason += ", probably killed for using too much memory"
            self._end_job(w, t, "failed", {"error": reason})
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


class LocalExecutor(PoolExecutor):
    """The default executor: the pool with `workers` warm worker processes on this machine,
    `threads` torch threads each (app.worker). Only a constructor: the behaviour is the pool's
    and the slots'."""

    def __init__(self, store: Store, publish: Publish, workers: int, threads: int,
                 max_queued: int, *, target: Callable = worker_main, **limits) -> None:
        super().__init__(store, publish, ProcessSlots(workers, threads, target), max_queued,
                         workers=workers, **limits)
