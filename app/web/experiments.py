"""What the API and the pages share: starting an experiment, stopping it, its place in the
queue and its JSON representation."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from app import rooms
from app.bus import Bus
from app.executor import Executor, QueueFull
from app.ml import datasets
from app.ml.config import ExperimentConfig
from app.ml.runs import epoch_fields, plan_runs
from app.store import FINAL_STATUSES, ExperimentRow, Store
from app.web.errors import TooBusy
from app.web.limits import RateLimiter, refuse_rate


def start(config: ExperimentConfig, store: Store, executor: Executor, owner: str,
          limiter: RateLimiter | None = None, room: str | None = None,
          author: str | None = None, address: str | None = None,
          address_limiter: RateLimiter | None = None) -> str:
    """Store a validated config as a queued experiment and hand it to the executor.

    Every limit is checked before anything is written, so a refusal stores nothing. Outside a
    room the experiment also counts against its network `address` (a queue limit and a
    creation rate per address); in a room each member counts alone, so a class behind one
    address works.
    """
    counted = None if room else address
    try:
        executor.check_room(owner, address=counted)
    except QueueFull as e:
        raise _busy(e) from None
    if limiter is not None:
        wait = limiter.take(owner)
        if wait:
            raise TooBusy(f"too many new experiments: the limit is {limiter.per_minute} per "
                          f"minute; try again in {wait} s", headers={"Retry-After": str(wait)})
    if counted is not None and address_limiter is not None:
        wait = address_limiter.take(counted)
        if wait:
            raise refuse_rate(address_limiter, wait, "new experiments outside workshop rooms")
    exp_id, events = store.create_with_events(
        config.model_dump(mode="json"), config.n_runs, config.n_runs * config.train.epochs,
        owner, room, author, executor.runner,
        room_entry=rooms.entry(config, author, config.name, owner) if room else None)
    executor.publish(exp_id, events)  # a room's board hears of it before its first epoch
    try:
        executor.submit(exp_id, owner, counted)
    except QueueFull as e:  # lost a race with another request: undo, then refuse
        store.delete(exp_id)
        raise _busy(e) from None
    return exp_id


def stop(exp_id: str, store: Store, executor: Executor, bus: Bus) -> bool:
    """Ask an experiment to stop wherever it is: here, or (several servers on one database)
    under the server that holds it. True if asked.

    One queued elsewhere is cancelled at once, here (its server then skips it, even if that
    server is down); one running elsewhere is stopped by its server, told over the bus and,
    should that message be lost, by the request noted in the database, which it polls."""
    if executor.cancel(exp_id):
        return True
    if not bus.shared:
        return False
    cancelled = store.transition(exp_id, "cancelled", {}, only_from=["queued"])
    if cancelled:
        executor.publish(exp_id, cancelled)
    else:  # running: noted for its server to poll, in case the message below is lost
        store.request_cancel(exp_id)
    bus.control({"cancel": exp_id})  # at once (a queued one also leaves its server's queue)
    return True


def _busy(e: QueueFull) -> TooBusy:
    """The 429 of a queue limit, with the queue's estimate of when a place frees up."""
    return TooBusy(f"{e}; try again in about {_duration(e.retry_after)}",
                   headers={"Retry-After": str(e.retry_after)})


def delete(row: ExperimentRow, store: Store, executor: Executor, bus: Bus) -> None:
    """Delete an experiment; a queued or running one is stopped first, and its open streams
    get a final event (`cancelled`, `"deleted": true`) before its log goes."""
    if row.status not in FINAL_STATUSES:
        stop(row.id, store, executor, bus)
        executor.publish(row.id, store.transition(
            row.id, "cancelled", {"deleted": True, "error": "this experiment was deleted"},
            error="this experiment was deleted"))
    store.delete(row.id)


def queue_info(row: ExperimentRow, executor: Executor) -> dict | None:
    """A waiting experiment's place in the queue and estimated start, with the sentence the
    status bar shows; None when it is not waiting here."""
    if row.status != "queued":
        return None
    position = executor.queue_position(row.id)
    if position is None:
        return None
    seconds = executor.estimate_start(row.id)
    ahead = "next in the queue" if position == 1 else f"{_ordinal(position)} in the queue"
    when = "" if seconds is None else f", starts in about {_duration(seconds)}"
    return {"position": position, "estimated_start_seconds":
            None if seconds is None else round(seconds, 1), "text": ahead + when}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _duration(seconds: float) -> str:
    """A wait as people say it: "5 s", "2 min", "1 h 5 min"."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def config_of(row: ExperimentRow) -> ExperimentConfig:
    return ExperimentConfig.model_validate_json(row.config)


def runs_json(row: ExperimentRow, store: Store) -> list[dict]:
    """CONTRACT runs: index, dropout, fold, repeat and every stored epoch."""
    epochs = store.epochs_by_run(row.id, row.n_runs)
    return [
        {"index": s.index, "dropout": s.dropout, "fold": s.fold, "repeat": s.repeat,
         "seed": s.seed, "weight_decay": s.weight_decay, "epochs": epochs[s.index]}
        for s in plan_runs(config_of(row))
    ]


def experiment_json(row: ExperimentRow, store: Store,
                    executor: Executor | None = None) -> dict:
    out = {
        "id": row.id,
        "url": f"/e/{row.id}",
        "name": row.name,
        "status": row.status,
        "config": json.loads(row.config),
        "task": config_of(row).task,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "progress": {"epochs_done": row.epochs_done, "epochs_total": row.total_epochs},
        "error": row.error,
        "room": row.room,
        "author": row.author,
        "runs": runs_json(row, store),
        "snapshots": [json.loads(e.data) for e in store.events_after(row.id, kinds=["snapshot"])],
        "summary": json.loads(row.summary) if row.summary else {},
    }
    if executor is not None and row.status == "queued":
        info = queue_info(row, executor)
        out["queue_position"] = info and info["position"]
        out["estimated_start_seconds"] = info and info["estimated_start_seconds"]
    return out


def insight_kind(config: ExperimentConfig) -> str | None:
    """Which picture the run panel can draw: a decision surface, a prediction curve, or none."""
    return datasets.picture(config.dataset.name, config.dataset.extra_features)


POINTS_SHOWN = 400  # validation points drawn over a decision surface


def points_json(config: ExperimentConfig) -> dict:
    """Training and (a sample of) validation points, standardized as the network sees them."""
    d = config.dataset
    data = datasets.load(d.name, d.n_train, d.noise, d.seed, d.label_noise, d.extra_features)
    val = data.val
    take = np.random.default_rng(0).permutation(len(val.y))[:POINTS_SHOWN]
    return {
        "train": {"x": np.round(data.train.x, 4).tolist(), "y": data.train.y.tolist()},
        "val": {"x": np.round(val.x[take], 4).tolist(), "y": val.y[take].tolist()},
    }


def metrics_csv(row: ExperimentRow, store: Store) -> str:
    """A row per run per epoch; run columns first, then the task's epoch metrics."""
    fields = epoch_fields(config_of(row).task)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "dropout", "fold", "repeat", *fields])
    for run in runs_json(row, store):
        for e in run["epochs"]:
            writer.writerow([run["index"], json.dumps(run["dropout"]), run["fold"], run["repeat"],
                             *("" if e.get(f) is None else e[f] for f in fields)])
    return buf.getvalue()
