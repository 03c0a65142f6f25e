"""What the playground draws of a dataset before anything trains: the data itself.

`preview(cfg)` builds the dataset exactly as the trainer does (app.ml.datasets.load, same
knobs, same seed) and returns plain JSON-ready values. Coordinates are the standardized inputs
the network sees, the plane of the decision-surface snapshots (app.ml.insight), so a preview
and a later surface line up point for point. Tables with more than two features are shown as
a PCA projection of the training split (validation projected with the training split's axes,
never fitted on it). NumPy only, no torch: the web process calls this on every change of the
dataset form, so it must stay cheap (well under 50 ms at the largest sizes).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from app.ml import datasets
from app.ml.config import DatasetConfig

MAX_VAL = 400  # validation points drawn at most (evenly spaced over the split: deterministic)
IMAGES_PER_CLASS = 2  # digits: sample training images shown per class
MARGIN = 0.15  # room around the points, as a fraction of their range (insight.MARGIN)
DIGITS = 4  # decimals kept of each coordinate (the payload, not the maths)


def preview(cfg: DatasetConfig) -> dict:
    """The data of `cfg` as the page draws it.

    Keys: kind ("points": 2-D sets and the noise set's first two inputs; "curve": sine;
    "images": digits; "projection": the other tables), title, axes [x label, y label], note
    (a sentence or ""), n_classes (1 for regression), train and val {"x": [[a, b], ...],
    "y": [label or target, ...]} (validation: at most MAX_VAL points), extent [x0, x1, y0, y1];
    sine adds curve {"x", "y"} (the noise-free function), digits adds images
    [{"pixels": 64 values in 0..1, row-major 8x8, "label"}, ...].
    """
    info = datasets.CATALOG[cfg.name]
    data = datasets.load(cfg.name, cfg.n_train, cfg.noise, cfg.seed, cfg.label_noise,
                         cfg.extra_features)
    val_rows = _val_rows(len(data.val.y))
    x_val = data.val.x[val_rows]
    extra = cfg.extra_features
    notes = []
    if info.name == "sine":
        kind, axes = "curve", ["x (standardized)", "y"]
        x_train = np.stack([data.train.x[:, 0], data.train.y], 1)
        x_val = np.stack([x_val[:, 0], data.val.y[val_rows]], 1)
    elif info.n_features == 2 or info.name == "noise":
        kind, axes = "points", ["x1 (standardized)", "x2 (standardized)"]
        x_train, x_val = data.train.x[:, :2], x_val[:, :2]
        if info.name == "noise":
            notes.append(f"Inputs 1 and 2 of {data.n_features}, all random, and random labels: "
                         "there is no pattern to find, only examples to memorize.")
    else:
        kind = "images" if info.name == "digits" else "projection"
        axes = ["PC 1", "PC 2"]
        x_train, x_val, share = _pca(data.train.x, x_val)
        lead = ("Sample training images, up to two of each digit (8x8 pixels); the points "
                "are a projection" if kind == "images" else "A projection")
        notes.append(f"{lead}: PCA of the training split, 2 of {data.n_features} features, "
                     f"{share:.0%} of the variance.")
    if extra and kind in ("points", "curve") and info.name != "noise":
        notes.append(f"{extra} extra random input{'s' if extra > 1 else ''} not shown.")
    elif extra and kind in ("projection", "images"):
        notes.append(f"{extra} of the {data.n_features} features are extra random inputs.")
    if data.train.y_clean is not None:
        flipped = int((data.train.y != data.train.y_clean).sum())
        notes.append(f"{flipped} of {len(data.train.y)} training labels are flipped "
                     "(label noise).")
    unit = "points" if kind in ("points", "curve") else "examples"
    n_val = len(data.val.y)
    shown = f" ({len(val_rows)} drawn)" if len(val_rows) < n_val else ""
    out = {
        "kind": kind,
        "title": f"{info.name.replace('_', ' ')}: {len(data.train.y)} training {unit}, "
                 f"{n_val} validation{shown}",
        "axes": axes,
        "note": " ".join(notes),
        "n_classes": info.n_classes,
        "train": {"x": _coords(x_train), "y": _labels(data.train.y)},
        "val": {"x": _coords(x_val), "y": _labels(data.val.y[val_rows])},
        "extent": _extent(np.concatenate([x_train, x_val])),
    }
    if kind == "curve":
        out["curve"] = _sine_curve(data, out["extent"])
    if kind == "images":
        out["images"] = _images(data)
    return out


def _val_rows(n: int) -> np.ndarray:
    """At most MAX_VAL validation rows, evenly spaced: the same rows for the same data."""
    if n <= MAX_VAL:
        return np.arange(n)
    return np.linspace(0, n - 1, MAX_VAL).round().astype(np.int64)


def _pca(x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Both splits on the first two principal axes of the training split, and the share of
    the training variance those axes hold. Signs are fixed (the largest loading of each axis
    is positive) so the same data always gives the same picture."""
    xt = x_train.astype(np.float64)
    centre = xt.mean(0)
    xt -= centre
    # eigenvectors of the (D, D) covariance: the same axes as an SVD of the (n, D) rows, and
    # several times cheaper at digits' size (D = 64, n up to 1079)
    # one BLAS thread: on a busy machine OpenBLAS's threads wait on each other (27 ms against
    # under 1 ms measured for digits' 64x64 problem)
    with threadpool_limits(1, "blas"):
        var, vecs = np.linalg.eigh(xt.T @ xt)  # ascending
    axes = vecs[:, ::-1][:, :2].T  # (2, D)
    axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]
    total = var.clip(min=0).sum()
    share = float(var[::-1][:2].sum() / total) if total > 0 else 0.0
    return xt @ axes.T, (x_val - centre) @ axes.T, share


def _extent(x: np.ndarray) -> list[float]:
    """[x0, x1, y0, y1]: the drawn points' bounds with MARGIN of their range around them (it
    holds the snapshots' surface, which pads the training points' bounds the same way)."""
    lo, hi = x.min(0), x.max(0)
    pad = (hi - lo) * MARGIN
    return [round(float(v), DIGITS) for v in (lo[0] - pad[0], hi[0] + pad[0],
                                               lo[1] - pad[1], hi[1] + pad[1])]


def _sine_curve(data: datasets.Dataset, extent: list[float], points: int = 100) -> dict:
    """The noise-free function y = sin(2x) over the drawn x range, x standardized as the
    inputs are."""
    xs = np.linspace(extent[0], extent[1], points)
    raw = xs * data.std[0] + data.mean[0]
    return {"x": [round(float(v), DIGITS) for v in xs],
            "y": [round(float(v), DIGITS) for v in np.sin(2 * raw)]}


def _images(data: datasets.Dataset) -> list[dict]:
    """IMAGES_PER_CLASS training images of each digit, in class order: the raw 8x8 pixels
    (0..16 ink, undone from the standardization) scaled to 0..1, row-major."""
    raw = np.rint(data.train.x.astype(np.float64) * data.std + data.mean)
    extra = data.n_features - data.info.n_features
    raw = raw[:, :data.info.n_features] if extra else raw
    out = []
    for c in range(data.info.n_classes):
        for row in np.flatnonzero(data.train.y == c)[:IMAGES_PER_CLASS]:
            pixels = np.clip(raw[row] / 16.0, 0.0, 1.0)
            out.append({"pixels": [round(float(v), DIGITS) for v in pixels], "label": c})
    return out


def _coords(x: np.ndarray) -> list[list[float]]:
    return np.round(x.astype(np.float64), DIGITS).tolist()


def _labels(y: np.ndarray) -> list:
    if y.dtype.kind == "f":
        return np.round(y.astype(np.float64), DIGITS).tolist()
    return y.tolist()
