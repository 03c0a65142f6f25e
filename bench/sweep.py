"""Benchmark: a sweep trained as one batched model vs the same runs one after another.

Baseline: each run of the sweep trained alone through the single-run engine (K=1), in the
same process, same thread count; and "one run": the same setup trained alone (no sweep, no
folds), at p=0 (no masks to draw, the cheapest) and at the playground's default p=0.5, and
the sweep's runs alone on average (sequential / runs). Reports wall time ratios and peak
memory (RSS).

    python bench/sweep.py [--threads 1] [--rounds 4]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from app.ml.config import ExperimentConfig
from app.ml.runs import plan_runs
from app.ml.train import train

RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
MOONS = {"dataset": {"name": "moons", "n_train": 300}, "model": {"hidden": [128, 128]},
         "train": {"epochs": 60, "batch_size": 32}}
DIGITS = {"dataset": {"name": "digits", "n_train": 1079}, "model": {"hidden": [256, 256]},
          "train": {"epochs": 10, "batch_size": 64}}


def single_configs(base: dict, sweep: dict) -> list[ExperimentConfig]:
    """The sweep's runs as single-run experiments (same rate, seed and fold data)."""
    config = ExperimentConfig.model_validate({**base, "sweep": sweep})
    out = []
    for spec in plan_runs(config):
        if sweep.get("folds", 1) > 1:  # a fold run has no single-run twin: train one K=1 group
            one = {**sweep, "dropout": [spec.dropout], "folds": sweep["folds"]}
            out.append((ExperimentConfig.model_validate({**base, "sweep": one}), 1))
        else:
            model = {**base["model"], "dropout": spec.dropout}
            train_cfg = {**base["train"], "seed": spec.seed}
            out.append((ExperimentConfig.model_validate({**base, "model": model,
                                                         "train": train_cfg}), None))
    return config, out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def single(base: dict, rate: float) -> ExperimentConfig:
    """One run of the sweep's setup, no sweep, no folds."""
    return ExperimentConfig.model_validate({**base, "model": {**base["model"], "dropout": rate}})


def bench(name: str, base: dict, sweep: dict, rounds: int) -> None:
    config, singles = single_configs(base, sweep)
    runs = config.n_runs
    train(single(base, 0.5))  # warm up
    if sweep.get("folds", 1) > 1:
        # sequential baseline of fold runs: each fold alone, K=1 (max_members=1)
        def sequential() -> None:
            train(config, max_members=1)
    else:
        def sequential() -> None:
            for c, _ in singles:
                train(c)
    # Rounds interleave every measurement. This machine's speed swings by a third from one
    # minute to the next (a shared host), so the figures are each measurement's best (the least
    # disturbed run, as timeit does), and each ratio is also given per round, where both sides
    # ran within seconds of each other.
    times: dict[str, list[float]] = {"p0": [], "p05": [], "sequential": [], "batched": []}
    for _ in range(rounds):
        for key, fn in (("p0", lambda: train(single(base, 0.0))),
                        ("batched", lambda: train(config)),
                        ("p05", lambda: train(single(base, 0.5))),
                        ("sequential", sequential)):
            times[key].append(timed(fn))
    times["mean"] = [s / runs for s in times["sequential"]]  # a run of the sweep alone, on average
    best = {key: min(values) for key, values in times.items()}

    def ratio(base_key: str) -> str:
        per_round = [b / s for b, s in zip(times["batched"], times[base_key])]
        return (f"{best['batched'] / best[base_key]:5.2f}x  (per round: median "
                f"{statistics.median(per_round):.2f}x, {min(per_round):.2f}-{max(per_round):.2f}x)")

    print(f"{name}: {runs} runs, best of {rounds} interleaved rounds")
    print(f"  one run alone: p=0 {best['p0']:.2f} s, p=0.5 {best['p05']:.2f} s, "
          f"the sweep's runs on average {best['mean']:.2f} s")
    print(f"  sequential, K=1 each   {best['sequential']:6.2f} s")
    print(f"  batched sweep          {best['batched']:6.2f} s   "
          f"(process peak RSS so far {peak_rss_mb():.0f} MB)")
    print(f"    vs one run at p=0    {ratio('p0')}")
    print(f"    vs one run at p=0.5  {ratio('p05')}")
    print(f"    vs the average run   {ratio('mean')}")
    print(f"    vs sequential        {ratio('sequential')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench("moons 300, 2x128, 60 epochs, 6 rates (target <= 2x one run)", MOONS,
          {"dropout": RATES}, args.rounds)
    bench("moons 300, 2x128, 60 epochs, 6 rates x 5 folds (target <= 6x one run)", MOONS,
          {"dropout": RATES, "folds": 5}, args.rounds)
    bench("digits 1079, 2x256, batch 64, 10 epochs, 6 rates (target <= 0.45x sequential)",
          DIGITS, {"dropout": RATES}, args.rounds)


if __name__ == "__main__":
    main()
