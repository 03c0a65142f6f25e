"""The data preview: what the page draws before training is the data the trainer will use.

Oracles: the trainer's own decision-surface snapshots (same plane, same padding), scikit-learn's
PCA (fitted on the training split only) and the raw scikit-learn digits table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from app.ml import datasets, insight, preview
from app.ml.config import DatasetConfig, ExperimentConfig
from app.ml.datasets import CATALOG
from app.ml.train import train

KINDS = {"moons": "points", "circles": "points", "spirals": "points", "xor": "points",
         "gaussians": "points", "noise": "points", "sine": "curve", "digits": "images",
         "breast_cancer": "projection", "wine": "projection"}
TOL = 1e-4  # coordinates are rounded to 4 decimals


def show(**kw) -> dict:
    return preview.preview(DatasetConfig(**kw))


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_dataset_gives_its_kind_and_well_formed_points(name):
    assert set(KINDS) == set(CATALOG)  # a new dataset must be given its kind here
    info = CATALOG[name]
    n = min(150, info.max_train)
    out = show(name=name, n_train=n, seed=3)
    assert out["kind"] == KINDS[name]
    assert out["n_classes"] == info.n_classes
    assert len(out["axes"]) == 2 and all(out["axes"])
    assert out["title"].startswith(name.replace("_", " ")) and str(n) in out["title"]
    assert len(out["train"]["x"]) == len(out["train"]["y"]) == n
    assert 0 < len(out["val"]["x"]) == len(out["val"]["y"]) <= preview.MAX_VAL
    x0, x1, y0, y1 = out["extent"]
    for split in ("train", "val"):
        pts = np.array(out[split]["x"])
        assert pts.shape[1] == 2 and np.isfinite(pts).all()
        assert (pts[:, 0] >= x0).all() and (pts[:, 0] <= x1).all()
        assert (pts[:, 1] >= y0).all() and (pts[:, 1] <= y1).all()
        if info.task == "classification":
            assert set(out[split]["y"]) <= set(range(info.n_classes))
    assert ("curve" in out) == (name == "sine")
    assert ("images" in out) == (name == "digits")
    assert ("projection" in out["note"].lower()) == (KINDS[name] in ("projection", "images"))


@pytest.mark.parametrize("name", ["moons", "spirals", "gaussians", "noise"])
def test_points_are_the_standardized_training_inputs_for_the_same_seed(name):
    out = show(name=name, n_train=120, noise=0.25, seed=7)
    data = datasets.load(name, 120, 0.25, 7)
    np.testing.assert_allclose(out["train"]["x"], data.train.x[:, :2], atol=TOL)
    assert out["train"]["y"] == data.train.y.tolist()
    pts = np.array(out["train"]["x"])  # standardized on the training split itself
    np.testing.assert_allclose(pts.mean(0), 0, atol=1e-3)
    if name != "noise":  # 20 columns: only the first two are drawn, each still unit-scaled
        np.testing.assert_allclose(pts.std(0), 1, atol=1e-3)
    assert show(name=name, n_train=120, noise=0.25, seed=7) == out
    assert show(name=name, n_train=120, noise=0.25, seed=8)["train"]["x"] != out["train"]["x"]


def test_the_preview_plane_is_the_plane_of_the_trainers_decision_surfaces():
    """The trainer's first snapshot pads *its* training inputs' bounds by insight.MARGIN:
    recomputed from the preview's training points it must come out the same, so the points
    drawn before training sit exactly where the surface will be drawn."""
    assert preview.MARGIN == insight.MARGIN
    cfg = ExperimentConfig.model_validate({
        "dataset": {"name": "moons", "n_train": 80, "noise": 0.3, "seed": 5},
        "model": {"hidden": [8]}, "train": {"epochs": 1, "seed": 5}})
    snaps = []
    train(cfg, on_snapshot=snaps.extend)
    out = preview.preview(cfg.dataset)
    pts = np.array(out["train"]["x"])
    lo, hi = pts.min(0), pts.max(0)
    pad = (hi - lo) * insight.MARGIN
    expected = [lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]]
    np.testing.assert_allclose(snaps[0][1]["extent"], expected, atol=3 * TOL)
    x0, x1, y0, y1 = out["extent"]  # the drawn extent holds the surface
    s0, s1, t0, t1 = snaps[0][1]["extent"]
    assert x0 <= s0 + TOL and s1 <= x1 + TOL and y0 <= t0 + TOL and t1 <= y1 + TOL


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "digits"])
def test_projection_is_pca_fitted_on_the_training_split_only(name):
    n = min(200, CATALOG[name].max_train)
    out = show(name=name, n_train=n, seed=2)
    data = datasets.load(name, n, seed=2)
    pca = PCA(2).fit(data.train.x.astype(np.float64))
    rows = preview._val_rows(len(data.val.y))
    for split, x in (("train", data.train.x), ("val", data.val.x[rows])):
        ours, ref = np.array(out[split]["x"]), pca.transform(x.astype(np.float64))
        signs = np.sign((ours * ref).sum(0))  # an axis is defined up to its sign
        np.testing.assert_allclose(ours, ref * signs, atol=1e-3)
    share = f"{pca.explained_variance_ratio_.sum():.0%} of the variance"
    assert share in out["note"] and f"2 of {CATALOG[name].n_features} features" in out["note"]
    assert out["val"]["y"] == data.val.y[rows].tolist()


def test_digits_images_are_real_training_images_with_their_labels():
    out = show(name="digits", n_train=300, seed=4)
    x_raw, y_raw = load_digits(return_X_y=True)
    table = {tuple(row): label for row, label in zip(x_raw.astype(int), y_raw)}
    labels = [im["label"] for im in out["images"]]
    assert labels == sorted(labels) and all(labels.count(c) == 2 for c in range(10))
    seen = set()
    for im in out["images"]:
        pixels = np.array(im["pixels"])
        assert pixels.shape == (64,) and pixels.min() >= 0 and pixels.max() <= 1
        assert pixels.max() > 0.5  # ink, not a blank or standardized image
        ink = tuple(np.rint(pixels * 16).astype(int))
        np.testing.assert_allclose(pixels * 16, ink, atol=1e-3)  # 17 ink levels, 0..16
        assert table[ink] == im["label"]  # a real digit, labelled right
        seen.add(ink)
    assert len(seen) == len(out["images"])
    # and they come from the training split: the same images, standardized, are training rows
    data = datasets.load("digits", 300, seed=4)
    train_raw = {tuple(r) for r in np.rint(data.train.x * data.std + data.mean).astype(int)}
    assert seen <= train_raw


def test_sine_curve_is_the_noise_free_function_in_the_standardized_plane():
    out = show(name="sine", n_train=200, noise=0.0, seed=1)
    cx, cy = np.array(out["curve"]["x"]), np.array(out["curve"]["y"])
    tx, ty = np.array(out["train"]["x"]).T
    # with no noise every training point lies on the curve (interpolated on 100 points)
    assert np.abs(np.interp(tx, cx, cy) - ty).max() < 0.02
    noisy = show(name="sine", n_train=200, noise=0.3, seed=1)
    tx, ty = np.array(noisy["train"]["x"]).T
    resid = ty - np.interp(tx, cx, cy)  # same seed, same x: only the noise differs
    assert 0.2 < resid.std() < 0.4


def test_validation_subsample_is_deterministic_and_spread_over_the_split():
    a = show(name="circles", n_train=500, seed=9)
    b = show(name="circles", n_train=500, seed=9)
    assert a["val"] == b["val"] and len(a["val"]["x"]) == preview.MAX_VAL
    assert f"{datasets.SYNTHETIC_VAL} validation ({preview.MAX_VAL} drawn)" in a["title"]
    data = datasets.load("circles", 500, seed=9)
    rows = preview._val_rows(len(data.val.y))
    assert len(set(rows.tolist())) == preview.MAX_VAL and rows[0] == 0
    assert rows[-1] == len(data.val.y) - 1
    np.testing.assert_allclose(a["val"]["x"], data.val.x[rows], atol=TOL)
    small = show(name="wine", n_train=50, seed=9)  # a split under the cap is drawn whole
    assert len(small["val"]["x"]) == len(datasets.load("wine", 50, seed=9).val.y)


def test_notes_name_label_noise_and_hidden_extra_inputs():
    out = show(name="moons", n_train=200, label_noise=0.2, extra_features=3, seed=0)
    data = datasets.load("moons", 200, seed=0, label_noise=0.2, extra_features=3)
    flipped = int((data.train.y != data.train.y_clean).sum())
    assert f"{flipped} of 200 training labels are flipped" in out["note"]
    assert "3 extra random inputs not shown" in out["note"]
    assert out["train"]["y"] == data.train.y.tolist()  # the noisy labels the model learns
    np.testing.assert_allclose(out["train"]["x"], data.train.x[:, :2], atol=TOL)
    table = show(name="wine", n_train=100, extra_features=2)
    assert "2 of the 15 features are extra random inputs" in table["note"]
    assert show(name="moons")["note"] == ""


def test_the_preview_imports_no_torch():
    """The web process calls it: it must not pull torch in (tests/test_imports.py covers the
    pages; this covers the module on its own)."""
    script = ("import sys\nfrom app.ml.config import DatasetConfig\nfrom app.ml.preview import "
              "preview\nfor n in ['moons', 'digits', 'sine', 'wine']:\n"
              "    preview(DatasetConfig(name=n, n_train=100))\n"
              "print([m for m in sys.modules if m.split('.')[0] == 'torch'])")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
