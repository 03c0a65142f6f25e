"""Benchmark: the engine's time per epoch against the plain tutorial loop, in one process.

Baseline: what a user writes from the PyTorch tutorial: nn.Sequential with nn.Dropout, Adam,
shuffled mini-batches sliced from tensors in memory (DataLoader would be slower still), and a
per-epoch evaluation of the validation set in eval mode. Same data, architecture, batch size and
epochs. The engine does more per epoch (it also measures the whole training set in eval mode,
and precision/recall/F1), and the ratio includes that.

    python bench/engine.py [--epochs 30] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from app.ml import datasets
from app.ml.config import ExperimentConfig
from app.ml.train import train

SETUP = {  # the reference setup of the issue: digits, MLP 64-256-256-10, batch 64, p=0.5
    "dataset": {"name": "digits", "n_train": datasets.CATALOG["digits"].max_train},
    "model": {"hidden": [256, 256], "dropout": 0.5},
    "train": {"batch_size": 64, "optimizer": "adam", "lr": 0.001},
}


def plain_loop(config: ExperimentConfig) -> list[float]:
    """The tutorial loop; returns the wall time of each epoch (training + validation)."""
    d = config.dataset
    data = datasets.load(d.name, d.n_train, d.noise, d.seed)
    xt, yt = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    xv, yv = torch.from_numpy(data.val.x), torch.from_numpy(data.val.y)
    torch.manual_seed(config.train.seed)
    h = config.model.hidden
    p = config.model.dropout
    model = nn.Sequential(
        nn.Linear(xt.shape[1], h[0]), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h[0], h[1]), nn.ReLU(), nn.Dropout(p),
        nn.Linear(h[1], data.n_outputs),
    )
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (workers use 1)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = {**SETUP, "train": {**SETUP["train"], "epochs": args.epochs}}
    config = ExperimentConfig.model_validate(setup)
    datasets.load("digits", 10)  # import scikit-learn before timing anything
    results: dict[str, list[float]] = {"plain": [], "engine": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, fn in (("plain", plain_loop), ("engine", engine)):
            results[name].append(statistics.median(fn(config)[1:]))  # skip the warm-up epoch
    plain, eng = (statistics.median(results[k]) * 1e3 for k in ("plain", "engine"))
    print(f"digits 64-256-256-10, batch 64, p=0.5, {args.threads} thread(s), "
          f"{config.dataset.n_train} training examples, median ms/epoch over {args.repeats} runs")
    print(f"  plain tutorial loop  {plain:7.2f} ms/epoch")
    print(f"  engine               {eng:7.2f} ms/epoch")
    print(f"  ratio engine/plain   {eng / plain:7.2f}x  (target <= 0.80x)")


if __name__ == "__main__":
    main()
