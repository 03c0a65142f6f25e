"""Datasets: deterministic toy problems and small real tables, split into train/val/test.

Every dataset is built from a seed, so the same config always yields the same numbers. The
validation and test splits are kept apart from training; inputs are standardized with the mean
and standard deviation of the training split only (no peeking at validation data). This module
returns NumPy arrays and knows nothing of torch, so the web process can import the catalogue
(sizes, feature counts) cheaply to validate configs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

Task = Literal["classification", "regression"]

SYNTHETIC_VAL = 1000  # validation examples drawn for synthetic datasets
SYNTHETIC_TEST = 1000  # held-out test examples drawn for synthetic datasets
REAL_VAL_FRACTION = 0.2  # share of a real (scikit-learn) table kept for validation
REAL_TEST_FRACTION = 0.2  # share kept as the untouched test split


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, before any data is made: used to validate configs and draw forms."""

    name: str
    task: Task
    n_features: int
    n_classes: int  # 1 for regression
    max_train: int  # most training examples the dataset can give
    synthetic: bool  # True: drawn from a generator (noise knob applies)
    description: str


def _real_pool(total: int) -> int:
    return total - round(total * REAL_VAL_FRACTION) - round(total * REAL_TEST_FRACTION)


CATALOG: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("moons", "classification", 2, 2, 5000, True, "Two interleaving half circles."),
        DatasetInfo("circles", "classification", 2, 2, 5000, True, "A ring around a disc."),
        DatasetInfo("spirals", "classification", 2, 2, 5000, True, "Two interleaved spirals."),
        DatasetInfo("xor", "classification", 2, 2, 5000, True, "Quadrants labelled by sign(x*y)."),
        DatasetInfo("gaussians", "classification", 2, 2, 5000, True, "Two overlapping blobs."),
        DatasetInfo(
            "digits", "classification", 64, 10, _real_pool(1797), False,
            "8x8 images of handwritten digits (scikit-learn).",
        ),
        DatasetInfo(
            "breast_cancer", "classification", 30, 2, _real_pool(569), False,
            "Wisconsin breast cancer diagnosis (scikit-learn).",
        ),
        DatasetInfo(
            "wine", "classification", 13, 3, _real_pool(178), False,
            "Chemical analysis of three wine cultivars (scikit-learn).",
        ),
        DatasetInfo("sine", "regression", 1, 1, 5000, True, "y = sin(2x) plus Gaussian noise."),
        DatasetInfo(
            "noise", "classification", 20, 2, 5000, True,
            "Random inputs with random labels: there is nothing to learn, only to memorize.",
        ),
    ]
}


def picture(name: str, extra_features: int = 0) -> Literal["surface", "curve"] | None:
    """What can be drawn of a model on this data: a decision surface over the input plane
    (2-D, two classes), a prediction curve (1-D regression), or nothing."""
    info = CATALOG[name]
    if extra_features:
        return None
    if info.task == "classification" and info.n_features == 2 and info.n_classes == 2:
        return "surface"
    if info.task == "regression" and info.n_features == 1:
        return "curve"
    return None


@dataclass
class Split:
    """One split: inputs (N, D) float32 and targets (N,) int64 or float32."""

    x: np.ndarray
    y: np.ndarray
    y_clean: np.ndarray | None = None  # training split with label noise: the true labels


@dataclass
class Dataset:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    n_features: int  # including extra irrelevant features
    # the standardization: raw input = x * std + mean (training split's statistics, float64)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    @property
    def task(self) -> Task:
        return self.info.task

    @property
    def n_outputs(self) -> int:
        return self.info.n_classes if self.task == "classification" else 1


def _toy_2d(name: str, n: int, noise: float, rng: np.random.Generator):
    """Draw n points of a 2-D toy problem; noise is the std of Gaussian jitter on inputs."""
    y = rng.integers(0, 2, n)
    if name == "moons":
        t = rng.uniform(0, np.pi, n)
        x = np.where(
            y[:, None] == 0,
            np.stack([np.cos(t), np.sin(t)], 1),
            np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
        )
    elif name == "circles":
        t = rng.uniform(0, 2 * np.pi, n)
        r = np.where(y == 0, 1.0, 0.5)
        x = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif name == "spirals":
        t = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi  # sqrt: even density along the arm
        arm = np.where(y == 0, 0.0, np.pi)
        x = np.stack([t * np.cos(t + arm), t * np.sin(t + arm)], 1) / (3 * np.pi)
    elif name == "xor":
        x = rng.uniform(-1, 1, (n, 2))
        y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    elif name == "gaussians":
        centres = np.array([[-0.5, -0.5], [0.5, 0.5]])
        x = centres[y] + rng.normal(0, 0.35, (n, 2))
    else:  # pragma: no cover - guarded by CATALOG
        raise ValueError(name)
    return x + rng.normal(0, noise, x.shape), y


def _synthetic(name: str, n: int, noise: float, rng: np.random.Generator):
    if name == "sine":
        x = rng.uniform(-3, 3, (n, 1))
        return x, (np.sin(2 * x[:, 0]) + rng.normal(0, noise, n)).astype(np.float32)
    if name == "noise":
        return rng.normal(0, 1, (n, CATALOG["noise"].n_features)), rng.integers(0, 2, n)
    return _toy_2d(name, n, noise, rng)


@functools.cache
def _table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A scikit-learn table, read from disk once per process (digits takes ~25 ms to parse,
    half the data preview's budget); read-only, so no caller can change the cached copy."""
    from sklearn import datasets as skd

    loader = {
        "digits": skd.load_digits,
        "breast_cancer": skd.load_breast_cancer,
        "wine": skd.load_wine,
    }[name]
    x, y = loader(return_X_y=True)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _real(name: str, seed: int):
    from sklearn.model_selection import train_test_split

    x, y = _table(name)
    n = len(y)
    n_val, n_test = round(n * REAL_VAL_FRACTION), round(n * REAL_TEST_FRACTION)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=n_test, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=n_val, random_state=seed, stratify=y_rest
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def load(
    name: str,
    n_train: int,
    noise: float = 0.2,
    seed: int = 0,
    label_noise: float = 0.0,
    extra_features: int = 0,
) -> Dataset:
    """Build a dataset deterministically from its knobs (see DatasetConfig for their units)."""
    info = CATALOG[name]
    if n_train > info.max_train:
        raise ValueError(f"{name} has at most {info.max_train} training examples")
    rng = np.random.default_rng(seed)
    if info.synthetic:
        x, y = _synthetic(name, n_train + SYNTHETIC_VAL + SYNTHETIC_TEST, noise, rng)
        cut1, cut2 = n_train, n_train + SYNTHETIC_VAL
        parts = [(x[:cut1], y[:cut1]), (x[cut1:cut2], y[cut1:cut2]), (x[cut2:], y[cut2:])]
    else:
        (xt, yt), val, test = _real(name, seed)
        take = _stratified_subset(yt, n_train, rng)
        parts = [(xt[take], yt[take]), val, test]

    if extra_features:  # irrelevant inputs: pure noise columns the model must learn to ignore
        parts = [(np.hstack([x, rng.normal(0, 1, (len(x), extra_features))]), y) for x, y in parts]
    clean = None
    if label_noise and info.task == "classification":
        # Flip a fraction of *training* labels to another class; validation and test stay clean,
        # so they keep measuring how well the true rule was learned.
        x, y = parts[0]
        clean = np.asarray(y).astype(np.int64)
        y = y.copy()
        flip = rng.random(len(y)) < label_noise
        y[flip] = (y[flip] + rng.integers(1, info.n_classes, flip.sum())) % info.n_classes
        parts[0] = (x, y)

    mean = parts[0][0].mean(0)
    std = parts[0][0].std(0)
    std[std < 1e-8] = 1.0  # constant columns (e.g. blank digit pixels) stay at zero
    target = np.int64 if info.task == "classification" else np.float32
    train, val, test = (
        Split(((x - mean) / std).astype(np.float32), np.asarray(y).astype(target)) for x, y in parts
    )
    train.y_clean = clean
    return Dataset(info, train, val, test, info.n_features + extra_features, mean, std)


def fold_split(data: Dataset, held: np.ndarray) -> tuple[Split, Split, Split]:
    """Cross-validation: train on the training rows outside fold `held`, validate on it.

    The run is standardized again with its own training rows' statistics, so the held-out fold
    never leaks into the scaling (float64 statistics: in float32 a column that is constant on
    those rows gets a tiny nonzero std from rounding, and a held-out value off that constant is
    blown up ~1e8 times). The held-out fold is scored against the true labels when training
    labels are noisy, as the validation split is. Returns (train, val, test).
    """
    keep = np.setdiff1d(np.arange(len(data.train.y)), held)
    x_train = data.train.x[keep]
    mean, std = x_train.mean(0, dtype=np.float64), x_train.std(0, dtype=np.float64)
    std[std < 1e-8] = 1.0
    truth = data.train.y if data.train.y_clean is None else data.train.y_clean

    def scaled(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(((x - mean) / std).astype(np.float32), y)

    return (scaled(x_train, data.train.y[keep]), scaled(data.train.x[held], truth[held]),
            scaled(data.test.x, data.test.y))


def _stratified_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices of y keeping the class proportions (each class at least once when n allows),
    so a small subset of digits still holds every digit."""
    if n >= len(y):
        return rng.permutation(len(y))
    classes = np.unique(y)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    quota = np.floor(n * np.array([len(b) for b in by_class]) / len(y)).astype(int)
    if n >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() > n:  # rounding up to 1 overshot: trim the largest classes
        quota[np.argmax(quota)] -= 1
    leftover = np.concatenate([b[q:] for b, q in zip(by_class, quota)])
    extra = rng.permutation(leftover)[: n - quota.sum()]  # the remainder, drawn at random
    take = np.concatenate([b[:q] for b, q in zip(by_class, quota)] + [extra])
    return rng.permutation(take)
