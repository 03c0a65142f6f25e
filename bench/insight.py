"""Benchmark: what snapshots (decision surfaces, MC-dropout curves) cost, against the epochs.

For each setup, trains with snapshots on and records, per snapshot, the time to compute it
against the time of the epoch it follows, and the size of the event as JSON. Budget: snapshots
cost at most insight.BUDGET (10%) of the training time, averaged over the epochs (a single
snapshot may cost more than its epoch: they are spaced out to fit), and each event is under
8 KB.

    python bench/insight.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from app.ml import insight
from app.ml import train as trainer
from app.ml.config import ExperimentConfig
from app.ml.scenarios import START

SETUPS = {
    "moons 200, 2x64 (the playground default)": {"train": {"epochs": 40}},
    "moons 1000, 2x256": {"dataset": {"n_train": 1000}, "model": {"hidden": [256, 256]},
                          "train": {"epochs": 40}},
    "spirals 300, 3x128, sweep of 4 rates": {
        "dataset": {"name": "spirals", "n_train": 300}, "model": {"hidden": [128, 128, 128]},
        "train": {"epochs": 40}, "sweep": {"dropout": [0.0, 0.2, 0.4, 0.6]}},
    "sine 100, 2x64, MC dropout (20 passes)": {"dataset": {"name": "sine", "n_train": 100},
                                               "model": {"dropout": 0.2}, "train": {"epochs": 40}},
    # a surface for every rate of the largest sweep that keeps one per rate (runs.SNAPSHOT_RUNS)
    "moons 200, 2x64, sweep of 16 rates": {
        "train": {"epochs": 40}, "sweep": {"low": 0.0, "high": 0.75, "grid_step": 0.05}},
    "spirals 300, 3x128, sweep of 16 rates": {
        "dataset": {"name": "spirals", "n_train": 300}, "model": {"hidden": [128, 128, 128]},
        "train": {"epochs": 40}, "sweep": {"low": 0.0, "high": 0.75, "grid_step": 0.05}},
    "the playground's start (scenarios.START: a rate and its p = 0 twin)":
        START.model_dump(mode="json"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, raw in SETUPS.items():
        trainer.train(ExperimentConfig.model_validate(raw))  # warm up
        start = time.perf_counter()
        epoch_times, snap_times, sizes, runs = run_once(raw)
        total = time.perf_counter() - start - sum(snap_times)
        ratio = [s / e for s, e in zip(snap_times, epoch_times)]
        print(f"{name}: {len(snap_times)} snapshots")
        print(f"  snapshot / epoch time   median {statistics.median(ratio):.1%}   "
              f"max {max(ratio):.1%}   (spaced out to fit the budget below)")
        print(f"  amortized over epochs   {sum(snap_times) / total:.1%} of the training time "
              f"({len(snap_times)} snapshots in {raw['train']['epochs']} epochs; budget "
              f"{insight.BUDGET:.0%})")
        print(f"  event size              median {statistics.median(sizes) / 1024:.1f} KB   "
              f"max {max(sizes) / 1024:.1f} KB   (budget 8 KB)")
        print(f"  events in all           {len(sizes)} from {len(runs)} runs, "
              f"{sum(sizes) / 1024:.0f} KB")


def run_once(raw: dict) -> tuple[list[float], list[float], list[int], set[int]]:
    """Times each epoch (training + evaluation) and each snapshot separately; also returns
    each snapshot event's size and the runs that sent any."""
    config = ExperimentConfig.model_validate(raw)
    epoch_times, snap_times, sizes, runs = [], [], [], set()
    clock = {"t": 0.0}
    real_take = trainer.insight.Snapshotter.take

    def timed_take(self, model, epoch):
        start = time.perf_counter()
        out = real_take(self, model, epoch)
        snap_times.append(time.perf_counter() - start)
        epoch_times.append(epoch_times_pending.pop())
        clock["t"] = time.perf_counter()  # the next epoch starts after the snapshot
        return out

    epoch_times_pending: list[float] = []

    def on_epoch(rows):
        now = time.perf_counter()
        epoch_times_pending[:] = [now - clock["t"]]
        clock["t"] = now

    def on_snapshot(rows):
        sizes.extend(len(json.dumps({"run": run, **snap})) for run, snap in rows)
        runs.update(run for run, _ in rows)

    trainer.insight.Snapshotter.take = timed_take
    try:
        clock["t"] = time.perf_counter()
        trainer.train(config, on_epoch=on_epoch, on_snapshot=on_snapshot)
    finally:
        trainer.insight.Snapshotter.take = real_take
    return epoch_times, snap_times, sizes, runs


if __name__ == "__main__":
    main()
