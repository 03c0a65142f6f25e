"""The training worker process, and its handle in the server (`ProcessSlot`).

The process is spawned (never forked from the server), imports torch once, then trains the
experiments it is sent. It talks to the executor over one Pipe:
    parent -> worker: ("train", exp_id, config_json) | None (exit)
    worker -> parent: ("ready",) | ("epochs", exp_id, [(run, metrics), ...])
                      | ("snapshots", exp_id, [(run, snapshot), ...])
                      | ("finished", exp_id, status, summary) | ("error", exp_id, message)
Epochs are sent in batches: everything reported during one epoch of the (possibly batched)
model goes in one message, so the parent writes it in one transaction. A cancel is a shared
byte the parent sets; the trainer polls it between steps. `ProcessSlot` is the parent's end,
one slot of app.jobs' dispatcher; `ProcessSlots` makes them for the local executor.
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
        if msg is None:
            return
        _, exp_id, config_json = msg
        train_one(exp_id, config_json, conn.send, lambda: bool(cancel.value))


def train_one(exp_id: str, config_json: str, send: Callable[[tuple], None],
              should_stop: Callable[[], bool]) -> None:
    """Train one experiment, saying everything through `send` in the protocol above and ending
    with one "finished" or "error" message (never raising: the worker lives on). Shared by the
    local worker processes and the Ray task (app.ray_executor)."""
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
                       on_snapshot=on_snapshot)
        send(("finished", exp_id, result.status, summarize(result.run_dicts(), config.task)))
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
        self._cancel = ctx.Value("b", 0, lock=False)  # 1 asks the running experiment to stop
        self._process = ctx.Process(target=self._target, args=(child, self._cancel,
                                                               self._threads),
                                    name="dp-worker", daemon=True)
        self._process.start()
        child.close()
        self.sentinel = self._process.sentinel

    def train(self, exp_id: str, config_json: str) -> None:
        self._cancel.value = 0
        self.conn.send(("train", exp_id, config_json))

    def cancel(self) -> None:
        self._cancel.value = 1

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

    def open(self) -> int:
        return self.workers

    def new(self) -> ProcessSlot:
        return ProcessSlot(self.target, self.threads)

    def close(self) -> None:
        pass
