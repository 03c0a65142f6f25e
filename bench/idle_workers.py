"""Benchmark: sweeps shared out over idle workers, and how soon other work starts meanwhile.

Runs the real dispatcher (app.jobs.LocalExecutor, warm worker processes, 1 torch thread each,
a SQLite store in a temporary folder) and times each experiment from submit to its final
status, as a user waits for it. Baselines in the same run, interleaved round by round:
- "one run": the sweep's setup as a single run (p = 0.5, or p = 0 for the folds setup, as in
  issue 19), on the 2-worker pool;
- "one process": the same sweep on a 1-worker pool, where nothing can be shared;
- "sequential": the sweep's runs one after another as single experiments (digits).
Statistic: the median of per-round ratios over the rounds, with their range.

It also times a single run submitted while a shared sweep holds every worker: from submit to
its first stored epoch (it trains as the guest of the sweep's borrowed part).

    python bench/idle_workers.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from app.jobs import LocalExecutor
from app.ml.config import ExperimentConfig
from app.store import FINAL_STATUSES, Store

RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
MOONS = {"dataset": {"name": "moons", "n_train": 300}, "model": {"hidden": [128, 128]},
         "train": {"epochs": 60, "batch_size": 32}}
DIGITS = {"dataset": {"name": "digits", "n_train": 1079}, "model": {"hidden": [256, 256]},
          "train": {"epochs": 10, "batch_size": 64}}
LONG = {"dataset": {"name": "moons", "n_train": 2000}, "model": {"hidden": [128, 128]},
        "train": {"epochs": 1000}, "sweep": {"dropout": [0.0, 0.2, 0.4, 0.6]}}
SINGLE = {"dataset": {"name": "moons", "n_train": 200}, "model": {"hidden": [64, 64]},
          "train": {"epochs": 20}}


def with_rate(base: dict, rate: float) -> dict:
    return {**base, "model": {**base["model"], "dropout": rate}}


class Pool:
    """A started executor on its own store; `run(config)` submits and waits for the end."""

    def __init__(self, folder: Path, workers: int):
        self.store = Store(f"sqlite:///{folder / f'pool{workers}.sqlite'}")
        self.executor = LocalExecutor(self.store, lambda exp, events: None, workers=workers,
                                      threads=1, max_queued=100)
        self.executor.start()
        while self.executor.ready_workers() < workers:
            time.sleep(0.05)

    def submit(self, config: dict) -> str:
        cfg = ExperimentConfig.model_validate(config)
        exp_id = self.store.create(cfg.model_dump(mode="json"), cfg.n_runs,
                                   cfg.n_runs * cfg.train.epochs, None,
                                   runner=self.executor.runner)
        self.executor.submit(exp_id)
        return exp_id

    def wait(self, exp_id: str, until=lambda row: row.status in FINAL_STATUSES) -> None:
        while not until(self.store.get(exp_id)):
            time.sleep(0.005)

    def run(self, config: dict) -> float:
        start = time.perf_counter()
        exp_id = self.submit(config)
        self.wait(exp_id)
        assert self.store.get(exp_id).status == "done", exp_id
        return time.perf_counter() - start

    def close(self) -> None:
        self.executor.stop()
        self.store.close()


def guest_start(pool: Pool) -> float:
    """Seconds from submitting a single run, while a shared sweep holds both workers, to its
    first stored epoch."""
    sweep = pool.submit(LONG)
    pool.wait(sweep, lambda row: row.epochs_done >= 4)
    start = time.perf_counter()
    single = pool.submit(SINGLE)
    pool.wait(single, lambda row: row.epochs_done >= 1)
    took = time.perf_counter() - start
    pool.wait(single)
    pool.executor.cancel(sweep)
    pool.wait(sweep)
    return took


def describe(name: str, ratios: list[float], target: str) -> str:
    return (f"{name:<44} median {statistics.median(ratios):5.2f}x "
            f"(range {min(ratios):.2f}-{max(ratios):.2f})  target {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dp-bench-"))
    two, one = Pool(folder, 2), Pool(folder, 1)
    moons6 = {**MOONS, "sweep": {"dropout": RATES}}
    folds = {**MOONS, "sweep": {"dropout": RATES, "folds": 5}}
    digits6 = {**DIGITS, "sweep": {"dropout": RATES}}
    rows: dict[str, list[float]] = {k: [] for k in (
        "moons6/one", "moons6/oneproc", "folds/one0", "folds/oneproc", "digits6/seq",
        "digits6/oneproc_seq")}
    times: dict[str, list[float]] = {"guest": [], "one": []}
    try:
        two.run(with_rate(MOONS, 0.5))  # first experiments pay lazy imports: not timed
        one.run(with_rate(MOONS, 0.5))
        for r in range(args.rounds):
            one_run = two.run(with_rate(MOONS, 0.5))
            one_p0 = two.run(with_rate(MOONS, 0.0))
            shared6, alone6 = two.run(moons6), one.run(moons6)
            shared_folds, alone_folds = two.run(folds), one.run(folds)
            shared_d, alone_d = two.run(digits6), one.run(digits6)
            seq = sum(two.run(with_rate(DIGITS, p)) for p in RATES)
            rows["moons6/one"].append(shared6 / one_run)
            rows["moons6/oneproc"].append(alone6 / one_run)
            rows["folds/one0"].append(shared_folds / one_p0)
            rows["folds/oneproc"].append(alone_folds / one_p0)
            rows["digits6/seq"].append(shared_d / seq)
            rows["digits6/oneproc_seq"].append(alone_d / seq)
            times["one"].append(one_run)
            times["guest"].append(guest_start(two))
            print(f"round {r + 1}: one run {one_run:.2f} s, 6 rates shared {shared6:.2f} s / "
                  f"one process {alone6:.2f} s, guest started after "
                  f"{times['guest'][-1] * 1000:.0f} ms", flush=True)
    finally:
        two.close()
        one.close()
    print()
    print("With the idle worker (2 workers x 1 thread; the sweep shared out):")
    print(describe("moons 6 rates / one p=0.5 run", rows["moons6/one"], "<= 1.5x"))
    print(describe("moons 6 rates x 5 folds / one p=0 run", rows["folds/one0"], "<= 4x"))
    print(describe("digits 2x256 6 rates / sequential", rows["digits6/seq"], "<= 0.40x"))
    print("One process (the same sweeps on a 1-worker pool):")
    print(describe("moons 6 rates / one p=0.5 run", rows["moons6/oneproc"], "<= 2x"))
    print(describe("moons 6 rates x 5 folds / one p=0 run", rows["folds/oneproc"], "-"))
    print(describe("digits 2x256 6 rates / sequential", rows["digits6/oneproc_seq"], "-"))
    guest = times["guest"]
    print(f"\nA single run submitted while a shared sweep holds both workers: first epoch "
          f"stored after median {statistics.median(guest) * 1000:.0f} ms (range "
          f"{min(guest) * 1000:.0f}-{max(guest) * 1000:.0f}); target: starts within 500 ms")


if __name__ == "__main__":
    main()
