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
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

# A real dataset, so scikit-learn is imported (~1 s) before the first user's experiment too.
WARMUP = {"dataset": {"name": "digits", "n_train": 64}, "model": {"hidden": [32]},
          "train": {"epochs": 2, "batch_size": 32}}
NICENESS = 10  # training yields the CPU to the web process: pages stay fast under load


def worker_main(conn: Connection, cancel: Synchronized, threads: int) -> None:
    import torch

    from app.ml.config import ExperimentConfig
    from app.ml.summary import summarize
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
        try:
            config = ExperimentConfig.model_validate_json(config_json)

            def on_epoch(rows: list[tuple[int, dict]], _exp: str = exp_id) -> None:
                ended_at = round(time.time(), 4)  # wall clock: lets bench/ measure event latency
                conn.send(("epochs", _exp, [(run, {**m, "ended_at": ended_at}) for run, m in rows]))

            def on_snapshot(rows: list[tuple[int, dict]], _exp: str = exp_id) -> None:
                conn.send(("snapshots", _exp, rows))

            result = train(config, on_epoch=on_epoch, should_stop=lambda: bool(cancel.value),
                           on_snapshot=on_snapshot)
            summary = summarize(result.run_dicts(), config.task)
            conn.send(("finished", exp_id, result.status, summary))
        except Exception:  # report, stay alive for the next experiment
            conn.send(("error", exp_id, traceback.format_exc(limit=5)))
