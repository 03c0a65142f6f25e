"""Metrics of K stacked members against scikit-learn on fixed predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from app.ml import metrics


def logits_for(pred: np.ndarray, n_classes: int, seed: int) -> torch.Tensor:
    """Logits (N, C) whose argmax is `pred`, with some noise on the other classes."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0, 1, (len(pred), n_classes))
    out[np.arange(len(pred)), pred] = out.max(1) + 1 + rng.random(len(pred))
    return torch.tensor(out, dtype=torch.float32)


# Members: (true labels, predicted labels), 4 classes
MEMBERS = [
    # ordinary: every class seen and predicted
    ([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 1, 1, 2, 0, 0, 2, 2, 3]),
    # class 3 is never predicted
    ([0, 1, 2, 3, 0, 1, 2, 3, 3, 3, 1, 0], [0, 1, 2, 0, 0, 1, 2, 2, 1, 0, 1, 0]),
    # class 3 is predicted but absent from the true labels
    ([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], [0, 3, 2, 0, 1, 3, 0, 2, 2, 3, 1, 2]),
    # class 3 neither true nor predicted (ignored), class 2 never predicted
    ([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], [0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0]),
    # all wrong
    ([0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]),
]


@pytest.fixture
def stacked_predictions():
    y = np.array([t for t, _ in MEMBERS])
    pred = np.array([p for _, p in MEMBERS])
    out = torch.stack([logits_for(p, 4, seed=k) for k, p in enumerate(pred)])  # (K, N, C)
    return out, torch.tensor(y), y, pred


def test_classification_matches_sklearn_per_member(stacked_predictions):
    out, y_t, y, pred = stacked_predictions
    assert torch.equal(out.argmax(-1), torch.tensor(pred))
    got = metrics.classification(out, y_t, detailed=True)
    assert set(got) == {"loss", "acc", "precision", "recall", "f1"}
    for k in range(len(MEMBERS)):
        probs = torch.softmax(out[k].double(), -1).numpy()
        want = {
            "loss": skm.log_loss(y[k], probs, labels=range(4)),
            "acc": skm.accuracy_score(y[k], pred[k]),
            "precision": skm.precision_score(y[k], pred[k], average="macro", zero_division=0),
            "recall": skm.recall_score(y[k], pred[k], average="macro", zero_division=0),
            "f1": skm.f1_score(y[k], pred[k], average="macro", zero_division=0),
        }
        for name, value in want.items():
            assert got[name][k].item() == pytest.approx(value, abs=1e-6), (k, name)


def test_the_hard_cases_really_differ_from_naive_averaging(stacked_predictions):
    """Guard the fixture: a class never predicted must pull macro precision below accuracy."""
    _, _, y, pred = stacked_predictions
    assert 3 not in pred[1] and 3 in y[1]
    assert 3 in pred[2] and 3 not in y[2]
    assert 3 not in pred[3] and 3 not in y[3] and 2 not in pred[3]
    # averaging over all 4 classes instead of the present ones would change member 3's scores
    over_all = skm.recall_score(y[3], pred[3], average="macro", labels=range(4), zero_division=0)
    assert over_all != pytest.approx(skm.recall_score(y[3], pred[3], average="macro"))


def test_classification_without_details_has_loss_and_accuracy_only(stacked_predictions):
    out, y_t, _, _ = stacked_predictions
    got = metrics.classification(out, y_t, detailed=False)
    assert set(got) == {"loss", "acc"}
    assert got["acc"].shape == (len(MEMBERS),)


def test_binary_perfect_and_single_class_predictions():
    y = torch.tensor([[0, 1, 0, 1, 1], [0, 1, 0, 1, 1]])
    pred = np.array([[0, 1, 0, 1, 1], [1, 1, 1, 1, 1]])
    out = torch.stack([logits_for(p, 2, seed=k) for k, p in enumerate(pred)])
    got = metrics.classification(out, y, detailed=True)
    assert got["acc"].tolist() == pytest.approx([1.0, 0.6])
    for k in range(2):
        for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                         ("f1", skm.f1_score)):
            want = fn(y[k].numpy(), pred[k], average="macro", zero_division=0)
            assert got[name][k].item() == pytest.approx(want, abs=1e-6)


def test_member_loss_is_mean_cross_entropy_per_member():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(3, 17, 5, generator=gen)
    y = torch.randint(0, 5, (3, 17), generator=gen)
    loss = metrics.member_loss(out, y, "classification")
    want = torch.stack([torch.nn.functional.cross_entropy(out[k], y[k]) for k in range(3)])
    torch.testing.assert_close(loss, want)


def test_regression_matches_sklearn_per_member():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, (4, 50)).astype(np.float32)
    pred = np.stack([y[0] + rng.normal(0, 0.1, 50),  # good fit
                     y[1] * 0.5,  # shrunk
                     rng.normal(0, 1, 50),  # unrelated: negative R²
                     np.full(50, y[3].mean())]).astype(np.float32)  # the mean: R² = 0
    got = metrics.regression(torch.from_numpy(pred)[..., None], torch.from_numpy(y))
    assert set(got) == {"loss", "r2"}
    for k in range(4):
        assert got["loss"][k].item() == pytest.approx(
            skm.mean_squared_error(y[k], pred[k]), rel=1e-5)
        assert got["r2"][k].item() == pytest.approx(skm.r2_score(y[k], pred[k]), abs=1e-5)
    assert got["r2"][2] < 0
    assert got["r2"][3].item() == pytest.approx(0.0, abs=1e-6)
