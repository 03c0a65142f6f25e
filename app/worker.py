"""The training worker process: imports torch once, then trains experiments it is sent.

Runs in a child process (spawned, never forked from the server). It talks to the executor over
one Pipe:
    parent -> worker: ("train", exp_id, config_json) | None (exit)
    worker -> parent: ("ready",) | ("epochs", exp_id, [(run, metrics), ...])
                      | ("snapshots", exp_id, [(run, snapshot), ...])
                      | ("finished", exp_id, status, summary) | ("error", exp_id, message)
Epochs are sent in batches: everything reported during one epoch of the (possibly batched)
model goes in one message, so the parent writes it in one transaction. A cancel is a shared
byte the parent sets; the trainer polls it between steps.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
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
