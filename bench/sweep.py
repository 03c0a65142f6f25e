"""Benchmark: a sweep trained as one batched model vs the same runs one after another.

Baseline: each run of the sweep trained alone through the single-run engine (K=1), in the
same process, same thread count; and "one run": the same setup trained alone (no sweep, no
folds), at p=0 (no masks to draw, the cheapest) and at the playground's default p=0.5, and
the sweep's runs alone on average (sequential / runs). Reports wall time ratios, the share of
the batched sweep spent in its per-epoch evaluation, and peak memory (RSS).

It also times the sweep's kernel floor: its matrix products (in the engine's layouts) and fused
Adam steps alone, on tensors of the sweep's shapes, with no masks, activations, loss or
metrics. What the sweep takes beyond it is all the rest of the work.

All in one process: a sweep alone in one worker (bench/idle_workers.py measures sweeps shared
out over idle workers). Statistic: each round runs every measurement once, interleaved, so
drift hits all alike; each ratio is taken within a round, and the median over rounds is
printed with the range.

    python bench/sweep.py [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from app.ml import datasets
from app.ml import train as engine
from app.ml.config import ExperimentConfig
from app.ml.model import NARROW
from app.ml.runs import plan_runs
from app.ml.train import eval_rows, train

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


def kernel_floor(config: ExperimentConfig) -> Callable[[], None]:
    """The sweep's products and optimizer steps alone, K members at once, ready to time: every
    step the forward product of each layer, its weight gradient and (past the first layer) its
    input gradient, then one fused Adam step; every epoch the eval-mode forward products over
    the training and validation rows, in the engine's row chunks. Layers with few outputs are
    computed transposed, as the engine computes them (app.ml.model._affine)."""
    d, folds = config.dataset, config.sweep.folds
    data = datasets.load(d.name, d.n_train, d.noise, d.seed, d.label_noise, d.extra_features)
    n_train, n_val = len(data.train.y), len(data.val.y)
    if folds > 1:  # a fold run trains on the other folds and validates on its own
        n_train, n_val = n_train - n_train // folds, n_train // folds
    k, batch = config.n_runs, config.train.batch_size
    sizes = [data.n_features, *config.model.hidden, data.n_outputs]
    weights = [torch.randn(k, a, b) * 0.05 for a, b in zip(sizes, sizes[1:])]
    params = weights + [torch.zeros(k, 1, b) for b in sizes[1:]]
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    exp_avg = [torch.zeros_like(p) for p in params]
    exp_avg_sq = [torch.zeros_like(p) for p in params]
    steps = torch.zeros(())
    chunk = eval_rows(k, sizes)
    inputs = {rows: [torch.randn(k, rows, n) for n in sizes]  # each layer's input, and output
              for rows in {batch, n_train % batch, chunk, n_train % chunk, n_val % chunk} if rows}

    def products(rows: int, backward: bool) -> None:
        x = inputs[rows]
        for i, (w, b) in enumerate(zip(weights, params[len(weights):])):
            if w.shape[-1] >= NARROW:
                torch.baddbmm(b, x[i], w)
                if backward:
                    torch.bmm(x[i].transpose(1, 2), x[i + 1])
                    if i:
                        torch.bmm(x[i + 1], w.transpose(1, 2))
                continue
            wt, g = w.transpose(1, 2).contiguous(), x[i + 1].transpose(1, 2)  # (K, out, rows)
            torch.baddbmm(b.transpose(1, 2), wt, x[i].transpose(1, 2))
            if backward:
                torch.bmm(g, x[i])
                if i:
                    torch.bmm(g.transpose(1, 2), wt)

    def run() -> None:
        for _ in range(config.train.epochs):
            for start in range(0, n_train, batch):
                products(min(batch, n_train - start), backward=True)
                steps.add_(1)
                torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [],
                                   [steps] * len(params), lr=1e-3, beta1=0.9, beta2=0.999,
                                   weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
            for n in (n_train, n_val):
                for start in range(0, n, chunk):
                    products(min(chunk, n - start), backward=False)

    return run


@contextlib.contextmanager
def evaluation_clock() -> Iterator[list[float]]:
    """Adds up the seconds the engine spends in its per-epoch evaluation (eval-mode loss and
    metrics over the training and validation sets), by wrapping the trainer's own method."""
    spent = [0.0]
    evaluate = engine._Group._evaluate

    def timed(self, *args):
        start = time.perf_counter()
        try:
            return evaluate(self, *args)
        finally:
            spent[0] += time.perf_counter() - start

    engine._Group._evaluate = timed
    try:
        yield spent
    finally:
        engine._Group._evaluate = evaluate


def bench(name: str, base: dict, sweep: dict, rounds: int) -> None:
    config, singles = single_configs(base, sweep)
    runs = config.n_runs
    train(single(base, 0.5))  # warm up
    floor = kernel_floor(config)
    if sweep.get("folds", 1) > 1:
        # sequential baseline of fold runs: each fold alone, K=1 (max_members=1)
        def sequential() -> None:
            train(config, max_members=1)
    else:
        def sequential() -> None:
            for c, _ in singles:
                train(c)
    eval_share: list[float] = []

    def batched() -> None:
        with evaluation_clock() as spent:
            start = time.perf_counter()
            train(config)
            eval_share.append(spent[0] / (time.perf_counter() - start))

    times: dict[str, list[float]] = {"p0": [], "p05": [], "sequential": [], "batched": [],
                                     "floor": []}
    for _ in range(rounds):  # interleaved, so drift hits all alike
        for key, fn in (("p0", lambda: train(single(base, 0.0))),
                        ("batched", batched),
                        ("p05", lambda: train(single(base, 0.5))),
                        ("sequential", sequential),
                        ("floor", floor)):
            times[key].append(timed(fn))
    times["mean"] = [s / runs for s in times["sequential"]]  # a run of the sweep alone, on average

    def ratio(base_key: str, key: str = "batched") -> str:
        per_round = [b / s for b, s in zip(times[key], times[base_key])]
        return (f"{statistics.median(per_round):5.2f}x  (range "
                f"{min(per_round):.2f}-{max(per_round):.2f}x)")

    def secs(key: str) -> str:
        return f"{statistics.median(times[key]):.2f} s"

    print(f"{name}: {runs} runs, one process, median (range) of {rounds} interleaved rounds")
    print(f"  one run alone: p=0 {secs('p0')}, p=0.5 {secs('p05')}, "
          f"the sweep's runs on average {secs('mean')}")
    print(f"  sequential, K=1 each   {secs('sequential'):>8}")
    print(f"  batched sweep          {secs('batched'):>8}   "
          f"(process peak RSS so far {peak_rss_mb():.0f} MB)")
    print(f"    vs one run at p=0    {ratio('p0')}")
    print(f"    vs one run at p=0.5  {ratio('p05')}")
    print(f"    vs the average run   {ratio('mean')}")
    print(f"    vs sequential        {ratio('sequential')}")
    print(f"    evaluation share     {statistics.median(eval_share):5.1%}  (range "
          f"{min(eval_share):.1%}-{max(eval_share):.1%}; per-epoch loss and metrics of the "
          "training and validation sets)")
    print(f"  kernel floor           {secs('floor'):>8}   (products + Adam alone)")
    print(f"    vs one run at p=0.5  {ratio('p05', 'floor')}")
    print(f"    vs sequential        {ratio('sequential', 'floor')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # targets for one process (issue 19; its idle-worker targets are bench/idle_workers.py's)
    bench("moons 300, 2x128, 60 epochs, 6 rates (targets: <= 2x one run, evaluation <= 10%)",
          MOONS, {"dropout": RATES}, args.rounds)
    bench("moons 300, 2x128, 60 epochs, 6 rates x 5 folds (target <= 6x one run)", MOONS,
          {"dropout": RATES, "folds": 5}, args.rounds)
    bench("digits 1079, 2x256, batch 64, 10 epochs, 6 rates (target <= 0.45x sequential)",
          DIGITS, {"dropout": RATES}, args.rounds)


if __name__ == "__main__":
    main()
