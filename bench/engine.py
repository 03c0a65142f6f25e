"""Benchmark: the engine's time per epoch against the plain tutorial loop, in one process; how
near it runs to the machine (its FLOPs per second against one core's matmul peak, measured in
the same round with a large torch.mm); and the aten operator calls of a training step.

Baseline: what a user writes from the PyTorch tutorial: nn.Sequential with nn.Dropout, Adam,
shuffled mini-batches sliced from tensors in memory (DataLoader would be slower still), and a
per-epoch evaluation of the validation set in eval mode. Same data, architecture, batch size and
epochs. The engine does more per epoch (it also measures the whole training set in eval mode,
and precision/recall/F1), and the ratio includes that.

Statistic: each round runs every measurement once, interleaved, so drift hits all alike; a
round's figure for a loop is its median epoch (the first, warm-up, epoch left out); the ratios
are taken within each round, and the median over rounds is printed with the range.

    python bench/engine.py [--epochs 20] [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from app.ml import datasets
from app.ml.config import ExperimentConfig
from app.ml.model import StackedMLP
from app.ml.optim import FusedOptimizer
from app.ml.train import train

SETUP = {  # the reference setup of the issue: digits, MLP 64-256-256-10, batch 64, p=0.5
    "dataset": {"name": "digits", "n_train": datasets.CATALOG["digits"].max_train},
    "model": {"hidden": [256, 256], "dropout": 0.5},
    "train": {"batch_size": 64, "optimizer": "adam", "lr": 0.001},
}


def tutorial_model(config: ExperimentConfig, n_in: int, n_out: int) -> nn.Sequential:
    h, p = config.model.hidden, config.model.dropout
    return nn.Sequential(
        nn.Linear(n_in, h[0]), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h[0], h[1]), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h[1], n_out),
    )


def plain_loop(config: ExperimentConfig) -> list[float]:
    """The tutorial loop; returns the wall time of each epoch (training + validation)."""
    d = config.dataset
    data = datasets.load(d.name, d.n_train, d.noise, d.seed)
    xt, yt = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    xv, yv = torch.from_numpy(data.val.x), torch.from_numpy(data.val.y)
    torch.manual_seed(config.train.seed)
    model = tutorial_model(config, xt.shape[1], data.n_outputs)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    times = []
    for _ in range(config.train.epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(yt))
        for i in range(0, len(yt), config.train.batch_size):
            idx = perm[i:i + config.train.batch_size]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            val_loss = F.cross_entropy(out, yv).item()
            val_acc = (out.argmax(1) == yv).float().mean().item()
        assert val_loss == val_loss and 0 <= val_acc <= 1
        times.append(time.perf_counter() - start)
    return times


def engine(config: ExperimentConfig) -> list[float]:
    """The engine; returns the wall time between consecutive epoch reports."""
    stamps = []
    train(config, on_epoch=lambda rows: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def matmul_peak() -> float:
    """One core's (one thread's) float32 matmul rate, GFLOP/s: the best of square torch.mm
    products of 512 to 2048, each timed over a few calls."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=c)
        calls = max(2, 2**30 // n**3)
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(calls):
                torch.mm(a, b, out=c)
            best = max(best, 2 * n**3 * calls / (time.perf_counter() - start) / 1e9)
    return best


def epoch_gflop(sizes: list[int], n_train: int, n_val: int) -> float:
    """The engine's matrix-product work in one epoch, GFLOP: per training example the forward
    product, the weight gradient and (past the first layer) the input gradient of each layer;
    then the eval-mode forward pass over the training and validation sets."""
    products = [a * b for a, b in zip(sizes, sizes[1:])]
    forward = 2 * sum(products)
    step = 2 * forward + 2 * sum(products[1:])
    return (n_train * step + (n_train + n_val) * forward) / 1e9


class OpCounter(TorchDispatchMode):
    """Counts aten operator calls (views included: each is a call too)."""

    def __init__(self):
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func)] += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(config: ExperimentConfig, steps: int = 10) -> tuple[float, float]:
    """aten calls of one training step: (engine, tutorial loop). The engine's step as
    app.ml.train runs it (gather the batch, train_step, optimizer step, running loss); the
    tutorial's as plain_loop runs it."""
    d, b = config.dataset, config.train.batch_size
    data = datasets.load(d.name, d.n_train, d.noise, d.seed)
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    sizes = [x.shape[1], *config.model.hidden, data.n_outputs]
    rates = [config.model.layer_rates()]
    model = StackedMLP(sizes, config.model.activation, rates, [0.0], [config.train.seed])
    opt = FusedOptimizer(model.parameters(), "adam", config.train.lr)
    running = torch.zeros(1)
    torch.manual_seed(config.train.seed)
    tutorial = tutorial_model(config, x.shape[1], data.n_outputs)
    topt = torch.optim.Adam(tutorial.parameters(), lr=config.train.lr)
    order = torch.randperm(len(y))

    def engine_step(idx):
        xb, yb = x.index_select(0, idx), y.index_select(0, idx).expand(1, -1)
        running.add_(model.train_step(xb, yb, "classification"), alpha=len(idx))
        opt.step()

    def tutorial_step(idx):
        loss = F.cross_entropy(tutorial(x[idx]), y[idx])
        topt.zero_grad()
        loss.backward()
        topt.step()

    counts = []
    for step in (engine_step, tutorial_step):
        step(order[:b])  # first steps make the optimizer state
        with OpCounter() as counter:
            for i in range(steps):
                step(order[i * b:(i + 1) * b])
        counts.append(sum(counter.calls.values()) / steps)
    return counts[0], counts[1]


def spread(values: list[float], fmt: str = ".2f") -> str:
    return (f"{statistics.median(values):{fmt}} (range {min(values):{fmt}}-"
            f"{max(values):{fmt}})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (workers use 1)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = {**SETUP, "train": {**SETUP["train"], "epochs": args.epochs}}
    config = ExperimentConfig.model_validate(setup)
    data = datasets.load("digits", config.dataset.n_train)  # imports scikit-learn before timing
    sizes = [data.n_features, *config.model.hidden, data.n_outputs]
    gflop = epoch_gflop(sizes, len(data.train.y), len(data.val.y))
    rounds: dict[str, list[float]] = {"plain": [], "engine": [], "peak": []}
    for _ in range(args.rounds):  # interleaved, so drift hits all alike
        rounds["plain"].append(statistics.median(plain_loop(config)[1:]))
        rounds["engine"].append(statistics.median(engine(config)))  # intervals: epochs 2..
        rounds["peak"].append(matmul_peak())
    ratio = [e / p for e, p in zip(rounds["engine"], rounds["plain"])]
    share = [gflop / e / peak for e, peak in zip(rounds["engine"], rounds["peak"])]
    engine_ops, tutorial_ops = ops_per_step(config)
    print(f"digits 64-256-256-10, batch 64, p=0.5, {args.threads} thread(s), "
          f"{config.dataset.n_train} training examples; {args.rounds} interleaved rounds, "
          "one process; median (range) over rounds")
    print(f"  plain tutorial loop  {spread([t * 1e3 for t in rounds['plain']])} ms/epoch")
    print(f"  engine               {spread([t * 1e3 for t in rounds['engine']])} ms/epoch")
    print(f"  ratio engine/plain   {spread(ratio)}x per round  (target <= 0.80x)")
    print(f"  matmul peak          {spread(rounds['peak'], '.1f')} GFLOP/s (torch.mm, 512-2048)")
    print(f"  engine at            {spread([s * 100 for s in share], '.1f')}% of the peak "
          f"({gflop:.3f} GFLOP of products per epoch; target >= 35%)")
    print(f"  aten calls per training step: engine {engine_ops:.0f}, tutorial loop "
          f"{tutorial_ops:.0f}")


if __name__ == "__main__":
    main()
