"""Benchmark: the engine against what users would pick instead, per epoch, in one process.

The same model and data everywhere: digits (the engine's split and standardization), an MLP
64-256-256-10 with ReLU, dropout p=0.5 after each hidden layer, Adam (lr 0.001), batch 64,
one thread; each epoch trains on the training set and then measures the validation set:
- plain PyTorch: the tutorial loop (bench/engine.py's plain_loop);
- scikit-learn: MLPClassifier, one partial_fit per epoch (one shuffled pass, Adam, no L2),
  then predict_proba on the validation set. It has no dropout: it is timed without;
- skorch: NeuralNetClassifier over the same nn.Sequential, validating each epoch;
- Lightning: a LightningModule trained by Trainer (CPU, no logger, checkpoints or progress
  bar), validating each epoch.
skorch and Lightning are timed when installed (`pip install skorch lightning`), and said to be
skipped when not. The engine does more per epoch than any of them (it also measures the whole
training set in eval mode, and precision/recall/F1).

Statistic: each round runs every framework once, interleaved, so drift hits all alike; a
round's figure for a framework is its median epoch (the first, warm-up, epoch left out); each
ratio (framework / engine) is taken within a round, and the median over rounds is printed
with the range.

    python bench/peers.py [--epochs 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from engine import SETUP, engine, plain_loop, spread, tutorial_model  # bench/engine.py

from app.ml import datasets
from app.ml.config import ExperimentConfig


def load(config: ExperimentConfig) -> datasets.Dataset:
    d = config.dataset
    return datasets.load(d.name, d.n_train, d.noise, d.seed)


def sklearn_loop(config: ExperimentConfig) -> list[float]:
    """scikit-learn's MLPClassifier (no dropout: it has none); seconds per epoch."""
    from sklearn.neural_network import MLPClassifier

    data = load(config)
    t = config.train
    net = MLPClassifier(hidden_layer_sizes=tuple(config.model.hidden), activation="relu",
                        solver="adam", alpha=0.0, batch_size=t.batch_size,
                        learning_rate_init=t.lr, shuffle=True, random_state=t.seed)
    classes = np.arange(data.n_outputs)
    times = []
    for _ in range(t.epochs):
        start = time.perf_counter()
        net.partial_fit(data.train.x, data.train.y, classes=classes)
        prob = net.predict_proba(data.val.x)
        val_loss = -np.log(prob[np.arange(len(prob)), data.val.y] + 1e-12).mean()
        assert val_loss == val_loss
        times.append(time.perf_counter() - start)
    return times


def skorch_loop(config: ExperimentConfig) -> list[float]:
    """skorch's NeuralNetClassifier; seconds per epoch (its own history's `dur`)."""
    from skorch import NeuralNetClassifier
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split

    data = load(config)
    t = config.train
    torch.manual_seed(t.seed)
    net = NeuralNetClassifier(
        tutorial_model(config, data.n_features, data.n_outputs),
        criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=t.lr,
        batch_size=t.batch_size, max_epochs=t.epochs, iterator_train__shuffle=True,
        train_split=predefined_split(Dataset(data.val.x, data.val.y)), device="cpu",
        verbose=0,
    )
    net.fit(data.train.x, data.train.y)
    return list(net.history[:, "dur"])


def lightning_loop(config: ExperimentConfig) -> list[float]:
    """Lightning's Trainer; seconds from one training epoch's start to the next one's (the
    last epoch is timed to the end of fit)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # no banners or tips
        logging.getLogger(name).setLevel(logging.ERROR)
    data = load(config)
    t = config.train

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = tutorial_model(config, data.n_features, data.n_outputs)

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            out = self.net(x)
            self.log("val_loss", F.cross_entropy(out, y))
            self.log("val_acc", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=t.lr)

    stamps: list[float] = []

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            stamps.append(time.perf_counter())

    def loader(split: datasets.Split, shuffle: bool) -> DataLoader:
        tensors = TensorDataset(torch.from_numpy(split.x), torch.from_numpy(split.y))
        return DataLoader(tensors, batch_size=t.batch_size if shuffle else len(split.y),
                          shuffle=shuffle)

    torch.manual_seed(t.seed)
    trainer = L.Trainer(max_epochs=t.epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[Clock()])
    trainer.fit(Module(), loader(data.train, True), loader(data.val, False))
    stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps, stamps[1:])]


PEERS: dict[str, tuple[str | None, Callable[[ExperimentConfig], list[float]], str]] = {
    "plain PyTorch (tutorial loop)": (None, plain_loop, ""),
    "scikit-learn MLPClassifier": ("sklearn", sklearn_loop, "  (no dropout: it has none)"),
    "skorch NeuralNetClassifier": ("skorch", skorch_loop, ""),
    "Lightning Trainer": ("lightning", lightning_loop, ""),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    threadpool_limits(1)  # NumPy's BLAS, for scikit-learn
    warnings.filterwarnings("ignore")  # Lightning's advice on DataLoader workers, etc.
    config = ExperimentConfig.model_validate(
        {**SETUP, "train": {**SETUP["train"], "epochs": args.epochs}})
    load(config)  # imports scikit-learn before timing anything
    peers = {name: fn for name, (module, fn, _) in PEERS.items()
             if module is None or importlib.util.find_spec(module) is not None}
    times: dict[str, list[float]] = {"engine": [], **{name: [] for name in peers}}
    for _ in range(args.rounds):
        times["engine"].append(statistics.median(engine(config)))  # intervals: epochs 2..
        for name, fn in peers.items():
            times[name].append(statistics.median(fn(config)[1:]))
    print(f"digits 64-256-256-10, batch 64, p=0.5, 1 thread, {config.dataset.n_train} "
          f"training examples, {args.epochs} epochs; {args.rounds} interleaved rounds, one "
          "process; per epoch: median (range) over rounds")
    print(f"  {'engine':32s} {spread([t * 1e3 for t in times['engine']])} ms   1.00x")
    for name, (module, _, note) in PEERS.items():
        if name not in peers:
            print(f"  {name:32s} skipped: {module} is not installed")
            continue
        ratio = [t / e for t, e in zip(times[name], times["engine"])]
        print(f"  {name:32s} {spread([t * 1e3 for t in times[name]])} ms   "
              f"{spread(ratio)}x the engine{note}")


if __name__ == "__main__":
    main()
