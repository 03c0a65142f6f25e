"""The trainer: mini-batch training of every run of an experiment, with metrics after each epoch.

Runs that share a training-set size train together as one StackedMLP (a sweep is one batched
model); each member still sees exactly its own data order, masks and initialisation, and its
own data where members differ in fold or data seed. After every
epoch the trainer measures, in eval mode (no dropout, under no_grad), the loss and accuracy (or
R²) over the whole training set and the validation set, and reports them through `on_epoch`.
`train_loss_dropout` is the other number: the mean mini-batch loss with dropout on, as seen by
the optimizer during the epoch. `should_stop` is polled between steps, so a cancel takes effect
within one step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from app.ml import datasets, insight, metrics
from app.ml.config import ExperimentConfig
from app.ml.model import StackedMLP
from app.ml.optim import FusedOptimizer
from app.ml.runs import (
    RunSpec,
    epoch_fields,
    fold_indices,
    plan_runs,
    run_dict,
    snapshot_runs,
)

# Called once per epoch of a group of runs trained side by side: [(run index, metrics), ...]
EpochCallback = Callable[[list[tuple[int, dict]]], None]
SnapshotCallback = Callable[[list[tuple[int, dict]]], None]  # [(run index, snapshot), ...]
MAX_MEMBERS = 32  # runs trained side by side in one stacked model
# Evaluation runs over row chunks (eval_rows). MKL multiplies member by member, so what must
# stay in cache between layers is one chunk's activations over all members: chunks of about
# 262,144 activations (1 MB, half a core's 2 MB L2) keep each layer's output there for the
# next layer. Each product also packs its member's weights again, which a chunk of fewer than
# 64 rows no longer pays back; and from 512 units wide a spill costs little beside the FLOPs.
# Those models take chunks of up to 3,000,000 activations (12 MB) instead. Measured (1 thread,
# eval of 1300-1438 rows, against whole splits): K=32 x 128 wide 1.5x faster (the rule before
# took whole splits there: its 524k weights passed its 500k threshold), K=6 x 128 1.4x,
# K=6 x 256 1.2x; K=1, K=32 x 256 and K=6 x 1024 within about 10% of their best chunk size.
# Chunks start at multiples of 16 rows, which keeps the numbers those of whole splits, to the
# bit (model._chunks).
CACHE_FLOATS = 262_144
MIN_ROWS = 64
EVAL_FLOATS = 3_000_000


@dataclass
class RunResult:
    spec: RunSpec
    epochs: list[dict] = field(default_factory=list)
    test: dict | None = None  # held-out test metrics after the last epoch (eval mode)
    confusion: list[list[int]] | None = None  # final validation confusion [true][predicted]


@dataclass
class ExperimentResult:
    status: Literal["done", "cancelled"]
    runs: list[RunResult]

    def run_dicts(self) -> list[dict]:
        """Plain dicts, as app.ml.summary.summarize takes them."""
        return [run_dict(r.spec, r.epochs, r.test, r.confusion) for r in self.runs]


class Cancelled(Exception):
    """Raised inside the step loop when should_stop() says so."""


def train(
    config: ExperimentConfig,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_members: int = MAX_MEMBERS,
    on_snapshot: SnapshotCallback | None = None,
    runs: Collection[int] | None = None,
) -> ExperimentResult:
    """Train every run of `config` (or only the run indices in `runs`: a part of a sweep that
    another process shares); returns their metrics (also streamed through on_epoch). A run's
    numbers do not depend on which other runs train beside it.

    With `on_snapshot`, 2-D classification and 1-D regression runs also report decision
    surfaces or prediction curves every few epochs (see app.ml.insight).
    """
    on_epoch = on_epoch or (lambda rows: None)
    should_stop = should_stop or (lambda: False)
    d = config.dataset
    every = plan_runs(config)
    specs = every if runs is None else [s for s in every if s.index in set(runs)]
    results = {spec.index: RunResult(spec) for spec in specs}
    snap_runs: set[int] = set()
    if on_snapshot and datasets.picture(d.name, d.extra_features):
        snap_runs = snapshot_runs(every)  # the same runs however the sweep is shared out
    try:
        for group in _groups(config, list(results.values()), max_members):
            group.fit(config, on_epoch, should_stop, on_snapshot, snap_runs)
    except Cancelled:
        return ExperimentResult("cancelled", list(results.values()))
    return ExperimentResult("done", list(results.values()))


@dataclass
class _Data:
    """Inputs and targets of one split for K members: x (n, D) shared, or (K, n, D) per member."""

    x: torch.Tensor
    y: torch.Tensor  # (K, n) targets

    @classmethod
    def of(cls, split: datasets.Split, k: int) -> _Data:
        x, y = torch.from_numpy(split.x), torch.from_numpy(split.y)
        return cls(x, y.expand(k, -1))

    @property
    def shared(self) -> bool:
        return self.x.dim() == 2


@dataclass
class _Group:
    """Runs that train side by side: same architecture, same training-set size."""

    results: list[RunResult]
    train: _Data
    val: _Data
    test: _Data
    task: str

    def fit(self, config: ExperimentConfig, on_epoch, should_stop, on_snapshot=None,
            snap_runs: set[int] = frozenset()) -> None:
        cfg = config.train
        specs = [r.spec for r in self.results]
        k = len(specs)
        n_out = datasets.CATALOG[config.dataset.name].n_classes
        n_in = self.train.x.shape[-1]
        model = StackedMLP(
            [n_in, *config.model.hidden, n_out], config.model.activation,
            [s.layer_rates for s in specs], [s.input_rate for s in specs], [s.seed for s in specs],
        )
        opt = FusedOptimizer(model.parameters(), cfg.optimizer, cfg.lr,
                             [s.weight_decay for s in specs],
                             cfg.momentum if cfg.optimizer == "sgd" else 0.0)
        n = self.train.y.shape[1]
        x_flat = self.train.x if self.train.shared else self.train.x.reshape(k * n, -1)
        y_flat = self.train.y[0] if self.train.shared else self.train.y.reshape(-1)
        offsets = torch.zeros(k, 1, dtype=torch.long) if self.train.shared else (
            torch.arange(k)[:, None] * n)
        # every member reads the same rows at each step: gather them once, for all
        one_batch = self.train.shared and len(set(model.seeds)) == 1
        fields = epoch_fields(self.task)
        members = [i for i, r in enumerate(self.results) if r.spec.index in snap_runs]
        snapper = insight.Snapshotter(self.task, self.train.x.reshape(-1, n_in), members) \
            if members else None
        snap_at = insight.snapshot_epochs(
            cfg.epochs, snapper.rows if snapper else 0,
            insight.epoch_rows(n, self.val.y.shape[1]))
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = model.data_order(n) + offsets  # (K, n) rows into x_flat
            if one_batch:
                order = order[0]  # (n,): the same for every member
            running = torch.zeros(k)  # sum over examples of the mini-batch loss (dropout on)
            for start in range(0, n, cfg.batch_size):
                if should_stop():
                    raise Cancelled
                idx = order[..., start:start + cfg.batch_size]
                b = idx.shape[-1]
                if one_batch:  # x (b, in) is broadcast to every member without a copy
                    xb = x_flat.index_select(0, idx)
                    yb = y_flat.index_select(0, idx).expand(k, b)
                else:
                    xb = x_flat.index_select(0, idx.reshape(-1)).view(k, b, -1)
                    yb = y_flat.index_select(0, idx.reshape(-1)).view(k, b)
                # forward, loss and backward of every member (their summed losses: members
                # share no weights, so each gets its own gradient), in place of
                # member_loss(model(xb)).sum() (+ l1 penalty) and autograd's backward()
                loss_k = model.train_step(xb, yb, self.task, cfg.l1)  # (K,)
                opt.step()
                running.add_(loss_k, alpha=b)
            reported = []
            for result, values in zip(self.results, self._evaluate(model, running / n)):
                row = {"epoch": epoch, **dict(zip(fields[1:], values))}
                result.epochs.append(row)
                reported.append((result.spec.index, row))
            on_epoch(reported)
            if snapper and epoch in snap_at:
                on_snapshot([(self.results[k].spec.index, snap)
                             for k, snap in snapper.take(model, epoch)])
        if self.task == "classification":
            with torch.no_grad():
                counts = metrics.confusion(_forward_all(model, self.val), self.val.y).tolist()
            for result, c in zip(self.results, counts):
                result.confusion = c
        test = _measure(model, self.test, self.task, detailed=True)
        names = list(test)
        for result, values in zip(self.results, torch.stack(list(test.values()), 1).tolist()):
            result.test = {f"test_{n}": _tidy(v) for n, v in zip(names, values)}

    def _evaluate(self, model: StackedMLP, train_loss_dropout: torch.Tensor) -> list[list[float]]:
        """Eval-mode metrics of every member, one row each in epoch_fields order (minus epoch)."""
        tr = _measure(model, self.train, self.task, detailed=False)
        va = _measure(model, self.val, self.task, detailed=True)
        if self.task == "classification":
            cols = [tr["loss"], train_loss_dropout, tr["acc"], va["loss"], va["acc"],
                    va["precision"], va["recall"], va["f1"]]
        else:
            cols = [tr["loss"], train_loss_dropout, tr["r2"], va["loss"], va["r2"]]
        cols.append(va["loss"] - tr["loss"])  # generalization gap
        return [[_tidy(v) for v in row] for row in torch.stack(cols, 1).tolist()]


def eval_rows(k: int, sizes: list[int]) -> int:
    """Rows per evaluation chunk for k members of layer sizes [in, hidden..., out] (see
    CACHE_FLOATS)."""
    width = max(sizes)
    rows = CACHE_FLOATS // (k * width)
    if rows < MIN_ROWS or width >= 512:
        rows = EVAL_FLOATS // (k * width)
    return max(1, rows)


def _forward_all(model: StackedMLP, data: _Data) -> torch.Tensor:
    """Eval-mode outputs (K, n, out) over a whole split, in row chunks (see eval_rows)."""
    model.eval()
    return model.predict(data.x, eval_rows(data.y.shape[0], model.sizes))


def _measure(model: StackedMLP, data: _Data, task: str, detailed: bool) -> dict[str, torch.Tensor]:
    """Eval-mode metrics over a whole split."""
    out = _forward_all(model, data)
    with torch.no_grad():
        if task == "classification":
            return metrics.classification(out, data.y, detailed)
        return metrics.regression(out, data.y)


def _groups(config: ExperimentConfig, results: list[RunResult],
            max_members: int) -> Iterator[_Group]:
    """Split runs into groups that can share one stacked model: runs with the same number of
    training examples (folds may differ by one). Members of a group share their data (one
    dataset, no folds) or each get their own (fold_split of their own data seed's dataset)."""
    d = config.dataset
    loaded: dict[int, datasets.Dataset] = {}

    def data_of(seed: int) -> datasets.Dataset:
        if seed not in loaded:
            loaded[seed] = datasets.load(d.name, d.n_train, d.noise, seed, d.label_noise,
                                         d.extra_features)
        return loaded[seed]

    folds = config.sweep.folds if config.sweep else 1
    by_size: dict[int, list[RunResult]] = {}
    for r in results:  # fold sizes depend on n and the fold only (runs.fold_indices)
        held = len(fold_indices(d.n_train, folds, 0)[r.spec.fold]) if folds > 1 else 0
        by_size.setdefault(d.n_train - held, []).append(r)
    for size_group in by_size.values():
        for chunk in _chunks(size_group, max_members):
            seeds = {r.spec.data_seed for r in chunk}
            if folds == 1 and len(seeds) == 1:
                data, k = data_of(seeds.pop()), len(chunk)
                yield _Group(chunk, _Data.of(data.train, k), _Data.of(data.val, k),
                             _Data.of(data.test, k), data.task)
            else:
                yield _own_data_group(chunk, data_of, folds)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _own_data_group(chunk: list[RunResult], data_of: Callable[[int], datasets.Dataset],
                    folds: int) -> _Group:
    """Per-member data: each member's dataset drawn with its own data seed and, with
    cross-validation, its fold of it (datasets.fold_split: train on the other folds, validate
    on this one, re-standardized on its own training rows), stacked (K, n, D)."""
    splits = []
    for r in chunk:
        data = data_of(r.spec.data_seed)
        if folds > 1:
            parts = fold_indices(len(data.train.y), folds, r.spec.data_seed)
            splits.append(datasets.fold_split(data, parts[r.spec.fold]))
        else:
            splits.append((data.train, data.val, data.test))
    stacked = [_Data(torch.from_numpy(np.stack([s[i].x for s in splits])),
                     torch.from_numpy(np.stack([s[i].y for s in splits]))) for i in range(3)]
    return _Group(chunk, *stacked, data_of(chunk[0].spec.data_seed).task)


def _tidy(v: float) -> float | None:
    """float32 values to 7 significant digits (all they hold, and half the JSON); a diverged
    (inf or NaN) value becomes None, which JSON can carry."""
    return float(f"{v:.7g}") if math.isfinite(v) else None
