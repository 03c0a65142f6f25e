"""The training worker process, and its handle in the server (`ProcessSlot`).

The process is spawned (never forked from the server), imports torch once, then trains the
experiments it is sent. It talks to the executor over one Pipe:
    parent -> worker: ("train", exp_id, config_json, runs, guest) | None (exit)
    worker -> parent: ("ready",) | ("epochs", exp_id, [(run, metrics), ...])
                      | ("snapshots", exp_id, [(run, snapshot), ...])
                      | ("finished", exp_id, status, summary) | ("error", exp_id, message)
                      | ("part", exp_id, status, run_dicts)
`runs` is None for a whole experiment, or the run indices of one *part* of a sweep that
several processes share (app.jobs); a part ends with "part" (its runs' results, which the
dispatcher summarizes once every part has ended) instead of "finished". `guest` says which
cancel byte the job polls (below), whenever it happens to be read.
Epochs are sent in batches: everything reported during one epoch of the (possibly batched)
model goes in one message, so the parent writes it in one transaction.

A part on a borrowed process yields at once to other people's work: between two steps the
trainer looks at the pipe, and a "train" message that came meanwhile (a *guest*) is trained
there and then, to its end, before the part goes on from the very same step (its numbers do
not change: every run has its own generators). So the process never trains two things at
once (workers x threads <= cores holds) and the guest waits no longer than one step.
Cancels are two shared bytes the parent sets, one for the job and one for its guest; the
trainer polls them between steps. `ProcessSlot` is the parent's end, one slot of app.jobs'
dispatcher; `ProcessSlots` makes them for the local executor.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

# A real dataset, so scikit-learn is imported (~1 s) before the first user's experiment too.
WARMUP = {"dataset": {"name": "digits", "n_train": 64}, "model": {"hidden": [32]},
          "train": {"epochs": 2, "batch_size": 32}}
NICENESS = 10  # training yields the CPU to the web process: pages stay fast under load


def worker_main(conn: Connection, cancel: Synchronized, threads: int) -> None:
    import torch

    from app.ml.config import ExperimentConfig
    from app.ml.train import train

    os.nice(NICENESS)
    torch.set_num_threads(threads)  # workers x threads <= cores: oversubscription is ~30x slower
    train(ExperimentConfig.model_validate(WARMUP))  # first epoch is slow; pay it before any user
    conn.send(("ready",))
    while True:
        msg = conn.recv()
        if msg is None or not _serve(conn, cancel, msg):
            return


GUEST_HOST, GUEST = 0, 1  # which cancel byte a job polls: the job's own, or its guest's


def _serve(conn: Connection, cancel, msg: tuple) -> bool:
    """Train the job in `msg`. A job that is not a guest takes a guest that arrives meanwhile
    (see the module docstring), even while it is being cancelled: the guest was sent to run
    now. A guest read only after its host ended (the two crossed) still polls the guest's
    cancel byte, the one the parent sets for it. False when the parent asked to exit."""
    _, exp_id, config_json, runs, guest = msg
    level = GUEST if guest else GUEST_HOST
    exiting = False

    def should_stop() -> bool:
        nonlocal exiting
        if level == GUEST_HOST and conn.poll():
            nested = conn.recv()
            if nested is None:  # exit: the parent has already given up on this job
                exiting = True
                return True
            _serve(conn, cancel, nested)
        return bool(cancel[level])

    train_one(exp_id, config_json, conn.send, should_stop, runs)
    return not exiting


def train_one(exp_id: str, config_json: str, send: Callable[[tuple], None],
              should_stop: Callable[[], bool], runs: list[int] | None = None) -> None:
    """Train one experiment (or the part of it in `runs`), saying everything through `send`
    in the protocol above and ending with one "finished" ("part") or "error" message (never
    raising: the worker lives on). Shared by the local worker processes and the Ray task
    (app.ray_executor)."""
    from app.ml.config import ExperimentConfig
    from app.ml.summary import summarize
    from app.ml.train import train

    try:
        config = ExperimentConfig.model_validate_json(config_json)

        def on_epoch(rows: list[tuple[int, dict]]) -> None:
            ended_at = round(time.time(), 4)  # wall clock: lets bench/ measure event latency
            send(("epochs", exp_id, [(run, {**m, "ended_at": ended_at}) for run, m in rows]))

        def on_snapshot(rows: list[tuple[int, dict]]) -> None:
            send(("snapshots", exp_id, rows))

        result = train(config, on_epoch=on_epoch, should_stop=should_stop,
                       on_snapshot=on_snapshot, runs=runs)
        if runs is not None:
            send(("part", exp_id, result.status, result.run_dicts()))
        else:
            send(("finished", exp_id, result.status, summarize(result.run_dicts(),
                                                               config.task)))
    except Exception:
        send(("error", exp_id, traceback.format_exc(limit=5)))


class ProcessSlot:
    """One worker process seen from the server: a slot of the dispatcher (app.jobs.Slot).

    Touched only by the dispatcher's thread. The process's sentinel tells of its death (a
    crash, an OOM kill) even when it could not say a word."""

    def __init__(self, target: Callable, threads: int):
        self._target, self._threads = target, threads

    def start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold threads/locks
        self.conn, child = ctx.Pipe()
        # [job, guest]: 1 asks that experiment to stop
        self._cancel = ctx.Array("b", 2, lock=False)
        self._process = ctx.Process(target=self._target, args=(child, self._cancel,
                                                               self._threads),
                                    name="dp-worker", daemon=True)
        self._process.start()
        child.close()
        self.sentinel = self._process.sentinel

    def train(self, exp_id: str, config_json: str, runs: list[int] | None = None,
              guest: bool = False) -> None:
        self._cancel[GUEST if guest else GUEST_HOST] = 0
        self.conn.send(("train", exp_id, config_json, runs, guest))

    def cancel(self, guest: bool = False) -> None:
        self._cancel[GUEST if guest else GUEST_HOST] = 1

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self.conn.send(None)

    def join(self, timeout: float | None = None) -> int | None:
        self._process.join(timeout)
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def __repr__(self) -> str:
        return f"worker process {self.pid}"


@dataclass
class ProcessSlots:
    """The local executor's slots (app.jobs.Slots): `workers` processes of `threads` each."""

    workers: int
    threads: int  # torch threads per process: workers x threads <= cores
    target: Callable = worker_main  # what a process runs (tests swap it)
    shares = True  # a slot takes a guest while it trains a borrowed part (see _serve)

    def open(self) -> int:
        return self.workers

    def new(self) -> ProcessSlot:
        return ProcessSlot(self.target, self.threads)

    def close(self) -> None:
        pass
