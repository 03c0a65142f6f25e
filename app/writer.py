"""The writer half of the dispatcher (app.jobs.PoolExecutor): the outboxes into the store.

One thread empties the seats' outboxes into the database, in order: each run of epoch messages
of one experiment in one transaction, then the final status; only what the database took is
published to live streams. A write that fails (the database is locked by another program, the
disk is full) is retried, with a growing pause, until it is taken: a message is never dropped
and never written twice (each write is one transaction). A part of a shared sweep ends with a
"part_end" entry; the last one stores the experiment's one final status and summary
(app.sharing). `StoreWriter` is a mixin: PoolExecutor holds the state it reads (the pool, the
locks, the store); it lives here so that each file holds one concern.
"""

from __future__ import annotations

import json
import logging
import time

from app.seats import Seat

log = logging.getLogger("app.jobs")
WRITE_BATCH = 64  # epoch messages of one experiment written in one transaction, at most
RETRY_PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)  # between failed writes (then 2 s each)


class StoreWriter:
    """The writer thread's methods of PoolExecutor (see the module docstring)."""

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

    def _flush(self, w: Seat) -> None:
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
            if head[0] == "part_end":
                self._part_ended(w, *head[1:])
            elif head[0] == "events":
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
            elif head[0] == "events":
                self.publish(exp_id, events)

    def _part_ended(self, w: Seat, exp_id: str, part: int, status: str,
                    run_dicts: list[dict] | None, error: str | None) -> None:
        """A part's epochs are all stored: note its end and free its seat; the last part's
        end stores the experiment's one final status and summary (app.sharing). Raises, with
        nothing lost, when the database refuses (recording a part again is harmless)."""
        shared = self._shared[exp_id]
        shared.record(part, status, run_dicts, error)
        if shared.complete:
            self._finish(exp_id, *shared.combine())
        with self._lock:
            if w.job == exp_id and w.part == part:
                self._release(w)
            if shared.complete:
                del self._shared[exp_id]

    def _ended(self, w: Seat, exp_id: str, status: str) -> None:
        """An experiment's final message is stored: its seat is free (and a finished run
        teaches the estimate its pace)."""
        with self._lock:
            if w.guest is not None and w.guest.job == exp_id:
                w = w.guest
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
