"""The executor: a bounded queue of experiments and a pool of warm worker processes.

Training never runs in the server's event loop or its threads (torch holds the GIL for its
Python-level work, so a training thread would make every page slow). One dispatcher thread owns
the pool; it is the only place that talks to workers, so none of the state below needs a lock
except the queue shared with request handlers.

The dispatcher waits on every worker's pipe, every worker's process sentinel and a wake-up pipe
at once (`multiprocessing.connection.wait`), and:
- assigns queued experiments to idle workers (first in, first out), marking them running;
- writes each batch of epochs a worker sends in one transaction, then publishes the stored
  events to live streams (through `publish`, which must be thread-safe);
- on a finished/error message, records the final status and frees the worker;
- when a worker process dies (crash, OOM kill), marks its experiment failed with the exit code,
  keeps the epochs already stored, and starts a fresh worker.
Cancel of a queued experiment removes it from the queue; of a running one sets the worker's
shared cancel byte, which the trainer polls between steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from app.store import Event, Store
from app.worker import worker_main

log = logging.getLogger(__name__)
Publish = Callable[[str, Sequence[Event]], None]


class QueueFull(Exception):
    """The queue holds max_queued experiments already: the API answers 429."""


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    cancel: object  # multiprocessing.Value('b'): 1 asks the running experiment to stop
    job: str | None = None
    ready: bool = False


@dataclass
class LocalExecutor:
    store: Store
    publish: Publish
    workers: int
    threads: int
    max_queued: int
    _pool: list[_Worker] = field(default_factory=list)
    _queue: deque[str] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: bool = False

    def start(self) -> None:
        self._ctx = mp.get_context("spawn")  # never fork a process that may hold threads/locks
        self._wake_r, self._wake_w = os.pipe()
        for _ in range(self.workers):
            self._pool.append(self._spawn())
        # Left from a previous server run (crash, kill, power loss): runs it was training are
        # marked failed, keeping their stored epochs; its queue runs again, in order.
        for row in self.store.with_status("running"):
            self._finish(row.id, "failed", {"error": "the server restarted during training; "
                                                     "the epochs trained before are kept"})
        for row in self.store.with_status("queued"):
            self._queue.append(row.id)
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop workers; experiments still running are marked failed (their epochs are kept)."""
        self._stopping = True
        self._wake()
        self._thread.join(timeout)
        for w in self._pool:
            if w.job:
                self._finish(w.job, "failed", {"error": "the server stopped during training"})
            with contextlib.suppress(OSError):
                w.conn.send(None)
        for w in self._pool:
            w.process.join(1.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- called from request handlers ----------------------------------------------------------

    def submit(self, exp_id: str) -> None:
        with self._lock:
            if len(self._queue) >= self.max_queued:
                raise QueueFull
            self._queue.append(exp_id)
        self._wake()

    def ready_workers(self) -> int:
        """Workers that finished importing torch and warming up."""
        return sum(1 for w in self._pool if w.ready)

    def queue_length(self) -> int:
        return len(self._queue)

    def queue_position(self, exp_id: str) -> int | None:
        """1-based place in the queue, or None when not waiting."""
        with self._lock:
            try:
                return self._queue.index(exp_id) + 1
            except ValueError:
                return None

    def cancel(self, exp_id: str) -> bool:
        """Ask an experiment to stop; True if it was queued or running here."""
        with self._lock:
            if exp_id in self._queue:
                self._queue.remove(exp_id)
                self._finish(exp_id, "cancelled", {})
                return True
        for w in self._pool:
            if w.job == exp_id:
                w.cancel.value = 1
                return True
        return False

    # -- the dispatcher thread ----------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        cancel = self._ctx.Value("b", 0, lock=False)
        proc = self._ctx.Process(target=worker_main, args=(child, cancel, self.threads),
                                 name="dp-worker", daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent, cancel)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while not self._stopping:
            self._assign()
            conns = {w.conn: w for w in self._pool}
            sentinels = {w.process.sentinel: w for w in self._pool}
            for ready in wait([*conns, *sentinels, self._wake_r], timeout=1.0):
                if ready == self._wake_r:
                    os.read(self._wake_r, 4096)
                elif ready in conns:
                    self._drain(conns[ready])
                elif ready in sentinels:
                    self._replace(sentinels[ready])

    def _assign(self) -> None:
        for w in self._pool:
            if not (w.ready and w.job is None):
                continue
            with self._lock:
                if not self._queue:
                    return
                exp_id = self._queue.popleft()
            row = self.store.get(exp_id)
            if row is None or row.status != "queued":
                continue
            events = self.store.transition(exp_id, "running")
            if not events:  # cancelled in the meantime
                continue
            w.job, w.cancel.value = exp_id, 0
            self.publish(exp_id, events)
            w.conn.send(("train", exp_id, row.config))

    def _drain(self, w: _Worker) -> None:
        """Read every message waiting on a worker's pipe; write its epochs (and snapshots) in
        one transaction."""
        epochs: list[tuple[str, dict]] = []
        try:
            while w.conn.poll():
                msg = w.conn.recv()
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
                        self._finish(exp_id, status, {"summary": summary})
                    else:  # "error"
                        self._finish(msg[1], "failed", {"error": msg[2]})
                    w.job = None
        except (EOFError, OSError):
            pass  # the process died; its sentinel fires next
        if epochs and w.job:
            self._store_epochs(w.job, epochs)

    def _store_epochs(self, exp_id: str, epochs: list[tuple[str, dict]]) -> None:
        self.publish(exp_id, self.store.append(exp_id, epochs))

    def _finish(self, exp_id: str, status: str, extra: dict) -> None:
        fields = {}
        if "summary" in extra:
            fields["summary"] = json.dumps(extra["summary"])
        if "error" in extra:
            fields["error"] = extra["error"]
        self.publish(exp_id, self.store.transition(exp_id, status, extra, **fields))

    def _replace(self, w: _Worker) -> None:
        """A worker died: fail its experiment (epochs stay stored) and start another."""
        w.process.join()
        code = w.process.exitcode
        log.warning("worker %s died with exit code %s", w.process.pid, code)
        self._drain(w)
        if w.job:
            reason = f"the training process died (exit code {code})"
            if code == -9:
                reason += ", probably killed for using too much memory"
            self._finish(w.job, "failed", {"error": reason})
        self._pool[self._pool.index(w)] = self._spawn()
