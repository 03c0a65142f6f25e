"""The dispatcher: a bounded queue of experiments in front of a pool of slots that train them.

`PoolExecutor` is the executor (app.executor.Executor) both deployments run; what trains an
experiment sits behind `Slot`: a warm worker process here (app.worker.ProcessSlot, for
`LocalExecutor`), or a thread following Ray tasks (app.ray_executor, for `RayExecutor`). So the
queue, the fair order, the per-client limits, the time limit, the store/publish path and the
orphan and heartbeat bookkeeping are this one piece of code for both.

Training never runs in the server's event loop or its threads (torch holds the GIL for its
Python-level work, so a training thread would make every page slow). One dispatcher thread owns
the pool; it is the only place that talks to slots, so none of the state below needs a lock
except the queue and the seats' job fields, shared with request handlers.

The dispatcher waits on every slot's connection, every slot's sentinel and a wake-up pipe at
once (`multiprocessing.connection.wait`), and:
- assigns queued experiments to idle slots (fair order, below), marking them running;
- writes each batch of epochs a slot sends in one transaction, then publishes the stored events
  to live streams (through `publish`, which must be thread-safe);
- on a finished/error message, records the final status and frees the slot;
- when a slot dies (a worker crash, an OOM kill), marks its experiment failed with the exit
  code, keeps the epochs already stored, and starts a fresh slot (with a growing delay when it
  dies while starting, so a broken install is no crash loop).
Cancel of a queued experiment removes it from the queue; of a running one marks its seat, and
the dispatcher tells the slot, whose trainer stops between steps.

Each executor is a *runner* (app.store): it holds the experiments it queued, says it is alive
every few seconds, and takes over only orphans, the experiments of runners that stopped or went
silent: at start, and (with several servers on PostgreSQL) every little while after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
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
        """End it now, saying nothing more (used only when the executor stops)."""


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


@dataclass
class _Seat:
    """A place in the pool: its slot, and the job on it (job/owner/cancelled: under the lock)."""

    slot: Slot | None  # None: a slot that died while starting, waiting for restart_at
    job: str | None = None
    owner: str | None = None
    ready: bool = False
    cancelled: bool = False  # asked to stop; the dispatcher tells the slot (_send_cancels)
    started: float = 0.0  # time.monotonic() when the job started
    timed_out: bool = False
    restart_at: float = 0.0


@dataclass
class PoolExecutor:
    """The dispatcher over slots from `slots` (see module docstring): an app.executor.Executor."""

    store: Store
    publish: Publish
    slots: Slots
    max_queued: int
    max_per_client: int = 1_000_000  # queued + running experiments of one client
    max_run_seconds: float = float("inf")  # wall time of one experiment
    runner_timeout: float = 30.0  # a runner silent this long is taken for dead
    runner: str = field(default_factory=new_runner_id)
    workers: int = 0  # slots at once (start() asks `slots`)
    failed_starts_total: int = 0  # slots that died before they were ready
    _pool: list[_Seat] = field(default_factory=list, init=False, repr=False)
    _queue: list[_Job] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopping: bool = field(default=False, init=False)
    _failed_starts: int = field(default=0, init=False)  # in a row

    def start(self) -> None:
        self.workers = self.slots.open()
        self._wake_r, self._wake_w = os.pipe()
        for _ in range(self.workers):
            self._pool.append(self._new_seat())
        self.store.heartbeat(self.runner)
        self._beats = threading.Event()  # set: stop beating
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()
        self._adopt_orphans()
        self._adopt_at = self._cancels_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the slots; experiments still running are marked failed (their epochs are
        kept). Safe to call twice (graceful shutdown calls it before the lifespan does)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout)  # from here on, this thread alone touches the slots
        live = [w.slot for w in self._pool if w.slot is not None]
        for w in self._pool:
            if w.slot is not None and w.job:
                self._finish(w.job, "failed", {"error": "the server was stopped during "
                                                        "training; the epochs trained before "
                                                        "are kept"})
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

    def check_room(self, owner: str | None, new: str | None = None) -> None:
        """Raise QueueFull (with the limit and the value) if `owner` may not queue one more
        (`new`: the experiment being submitted, already stored, so not counted)."""
        with self._lock:
            if len(self._queue) >= self.max_queued:
                raise QueueFull(f"the server is busy: {len(self._queue)} experiments are "
                                f"waiting, the limit is {self.max_queued}")
            if self.store.shared:  # several servers: count this person's work on all of them
                mine = self.store.active_count(owner, new) if owner is not None else 0
            else:
                mine = sum(1 for j in self._queue if j.owner == owner) + sum(
                    1 for w in self._pool if w.job and w.owner == owner)
            if owner is not None and mine >= self.max_per_client:
                raise QueueFull(f"you have {mine} experiments queued or running, the limit "
                                f"per person is {self.max_per_client}: wait for one to finish "
                                "or stop one")

    def submit(self, exp_id: str, owner: str | None = None) -> None:
        self.check_room(owner, exp_id)
        with self._lock:
            self._queue.append(_Job(exp_id, owner))
        self._wake()

    def ready_workers(self) -> int:
        """Slots that finished warming up (a worker process: importing torch)."""
        return sum(1 for w in self._pool if w.ready)

    def queue_length(self) -> int:
        return len(self._queue)

    def queue_position(self, exp_id: str) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        with self._lock:
            ids = [j.exp_id for j in self._queue]
        return ids.index(exp_id) + 1 if exp_id in ids else None

    def cancel(self, exp_id: str) -> bool:
        """Ask an experiment to stop; True if it was queued or running here. A running one is
        only marked here: the dispatcher, woken at once, tells its slot."""
        with self._lock:
            job = next((j for j in self._queue if j.exp_id == exp_id), None)
            if job is not None:
                self._queue.remove(job)
            seat = next((w for w in self._pool if w.job == exp_id), None)
            if seat is not None:
                seat.cancelled = True
        if job is not None:
            self._finish(exp_id, "cancelled", {})
        if seat is not None:
            self._wake()
        return job is not None or seat is not None

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
                    self._queue.append(_Job(row.id, row.owner))

    def _beat(self) -> None:
        """Heartbeats well inside the timeout, on a thread of their own: a dispatcher busy with
        a slow database must not make this server look dead to the others."""
        while not self._beats.wait(min(HEARTBEAT_SECONDS, self.runner_timeout / 3)):
            try:
                self.store.heartbeat(self.runner)
            except Exception:
                log.exception("heartbeat failed")

    def _keep_alive(self) -> None:
        """With a shared database, every 2 s: the cancels other servers noted for ours (the bus
        brings them at once; this is for a lost message). Twice per timeout: take over orphans
        (shared database), and fail any experiment of ours marked running that no slot
        trains (a failure halfway through a hand-over)."""
        now = time.monotonic()
        if self.store.shared and now - self._cancels_at >= CANCEL_POLL_SECONDS:
            self._cancels_at = now
            for exp_id in self.store.cancels_for(self.runner):
                self.cancel(exp_id)
        if now - self._adopt_at < self.runner_timeout / 2:
            return
        self._adopt_at = now
        if self.store.shared:
            self._adopt_orphans()
        training = {w.job for w in self._pool if w.job}
        for row in self.store.with_status("running"):
            if row.runner == self.runner and row.id not in training:
                self._finish(row.id, "failed", {"error": "training stopped unexpectedly; the "
                                                         "epochs trained before are kept"})

    def _new_seat(self) -> _Seat:
        slot = self.slots.new()
        slot.start()
        return _Seat(slot)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception:  # e.g. the database is locked or the disk is full: keep serving
                log.exception("dispatcher error")
                time.sleep(0.5)

    def _step(self) -> None:
        self._keep_alive()
        self._respawn_due()
        self._assign()
        self._enforce_time_limit()
        self._send_cancels()
        live = [w for w in self._pool if w.slot is not None]
        conns = {w.slot.conn: w for w in live}
        sentinels = {w.slot.sentinel: w for w in live}
        for ready in wait([*conns, *sentinels, self._wake_r], timeout=1.0):
            if ready == self._wake_r:
                os.read(self._wake_r, 4096)
            elif ready in conns:
                self._drain(conns[ready])
            elif ready in sentinels:
                self._replace(sentinels[ready])

    def _enforce_time_limit(self) -> None:
        now = time.monotonic()
        for w in self._pool:
            if w.job and not w.timed_out and now - w.started > self.max_run_seconds:
                w.timed_out = w.cancelled = True  # it stops between steps, says "cancelled"

    def _send_cancels(self) -> None:
        """Tell slots of the cancels marked on their seats (by cancel(), the time limit, or a
        take-over). Run after _assign, whose train() clears the slot's flag: a cancel that came
        between _take_next and train() is so told again, never lost."""
        for w in self._pool:
            if w.cancelled and w.job and w.slot is not None:
                w.slot.cancel()

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
            w.job, w.owner, w.cancelled = job.exp_id, job.owner, False
            w.started, w.timed_out = time.monotonic(), False
            return job

    def _assign(self) -> None:
        for w in self._pool:
            if not (w.ready and w.job is None):
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
                    w.job = w.owner = None
                raise
            if not events:  # gone, cancelled or taken over in the meantime
                with self._lock:
                    w.job = w.owner = None
                continue
            self.publish(job.exp_id, events)
            w.slot.train(job.exp_id, row.config)

    def _drain(self, w: _Seat) -> None:
        """Read every message waiting on a slot's connection; write its epochs (and snapshots)
        in one transaction."""
        epochs: list[tuple[str, dict]] = []
        try:
            while w.slot.conn.poll():
                msg = w.slot.conn.recv()
                kind = msg[0]
                if kind == "ready":
                    w.ready = True
                elif kind in ("epochs", "snapshots"):  # kept in order, written together
                    event = kind[:-1]
                    epochs += [(event, {"run": run, **m}) for run, m in msg[2]]
                else:
                    if epochs:
                        self._store_epochs(msg[1], epochs)
                        epochs = []
                    if kind == "finished":
                        _, exp_id, status, summary = msg
                        if status == "cancelled" and w.timed_out:
                            self._finish(exp_id, "failed", {
                                "summary": summary,
                                "error": f"stopped after the time limit of "
                                         f"{self.max_run_seconds:g} s per experiment; the "
                                         "epochs trained before are kept"})
                        else:
                            self._finish(exp_id, status, {"summary": summary})
                    else:  # "error"
                        self._finish(msg[1], "failed", {"error": msg[2]})
                    with self._lock:
                        w.job = None
        except (EOFError, OSError):
            pass  # the slot died; its sentinel fires next
        if epochs and w.job:
            self._store_epochs(w.job, epochs)

    def _store_epochs(self, exp_id: str, epochs: list[tuple[str, dict]]) -> None:
        events = self.store.append(exp_id, epochs, held_by=self.runner)
        if not events:  # no longer ours and running (another server took it over): stop it
            for w in self._pool:
                if w.job == exp_id:
                    w.cancelled = True
        self.publish(exp_id, events)

    def _finish(self, exp_id: str, status: str, extra: dict) -> None:
        fields = {}
        if "summary" in extra:
            fields["summary"] = json.dumps(extra["summary"])
        if "error" in extra:
            fields["error"] = extra["error"]
        self.publish(exp_id, self.store.transition(exp_id, status, extra, **fields))

    def _replace(self, w: _Seat) -> None:
        """A slot died: fail its experiment (epochs stay stored) and start another."""
        code = w.slot.join()
        log.warning("%r died with exit code %s", w.slot, code)
        self._drain(w)
        if w.job:
            reason = f"the training process died (exit code {code})"
            if code == -9:
                reason += ", probably killed for using too much memory"
            self._finish(w.job, "failed", {"error": reason})
        i = self._pool.index(w)
        if w.ready:  # it had started fine: replace it at once
            self._failed_starts = 0
            self._pool[i] = self._new_seat()
            return
        # It died while starting (a broken install, no memory): retry with a growing delay
        # instead of a tight crash loop.
        self._failed_starts += 1
        delay = min(60.0, 0.5 * 2 ** self._failed_starts)
        log.error("a slot failed to start (exit code %s); retrying in %.0f s", code, delay)
        self._pool[i] = _Seat(None, restart_at=time.monotonic() + delay)
        self.failed_starts_total += 1

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for i, w in enumerate(self._pool):
            if w.slot is None and now >= w.restart_at:
                self._pool[i] = self._new_seat()


class LocalExecutor(PoolExecutor):
    """The default executor: the pool with `workers` warm worker processes on this machine,
    `threads` torch threads each (app.worker). Only a constructor: the behaviour is the pool's
    and the slots'."""

    def __init__(self, store: Store, publish: Publish, workers: int, threads: int,
                 max_queued: int, *, target: Callable = worker_main, **limits) -> None:
        super().__init__(store, publish, ProcessSlots(workers, threads, target), max_queued,
                         workers=workers, **limits)
