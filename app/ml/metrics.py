"""Metrics for K stacked models at once: loss, accuracy, macro precision/recall/F1, MSE, R².

Definitions match scikit-learn's (tests compare against it): macro averages are taken over the
classes that occur in the true or the predicted labels, and a class with no predicted (or no
true) examples scores 0 precision (or recall), like sklearn's zero_division=0.

Outputs may come in either memory layout: the stacked model returns a few-class output as a
transposed view of a (K, C, N) tensor (app.ml.model._affine). Each computation runs in the
layout where it is fast on this CPU's kernels: the cross-entropy over (K, C, N), classes along
dim 1 (4-10x faster than along a last dim of 2-10 classes), the argmax over (K, N, C), along
rows (an argmax across a strided dim is 10x slower than a copy to rows and one along them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def member_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss of each member: out (K, N, C) logits or (K, N, 1) predictions -> (K,)."""
    if task == "classification":  # cross_entropy's "K-dimensional" form: (K, C, N) and (K, N)
        return F.cross_entropy(out.transpose(1, 2).contiguous(), y, reduction="none").mean(1)
    return (out[..., 0] - y).square().mean(1)


def classification(out: torch.Tensor, y: torch.Tensor, detailed: bool) -> dict[str, torch.Tensor]:
    """out (K, N, C) logits, y (K, N) labels -> dict of (K,) tensors."""
    pred = out.contiguous().argmax(-1)
    metrics = {"loss": member_loss(out, y, "classification"), "acc": (pred == y).float().mean(1)}
    if detailed:
        counts = _confusion(pred, y, out.shape[-1]).float()  # (K, C, C)
        tp = counts.diagonal(dim1=1, dim2=2)
        predicted, actual = counts.sum(1), counts.sum(2)
        present = (predicted + actual) > 0
        precision = tp / predicted.clamp_min(1)
        recall = tp / actual.clamp_min(1)
        f1 = 2 * tp / (predicted + actual).clamp_min(1)
        count = present.sum(1).clamp_min(1)
        for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
            metrics[name] = (per_class * present).sum(1) / count
    return metrics


def confusion(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out (K, N, C) logits, y (K, N) labels -> (K, C, C) counts, [member, true, predicted]."""
    return _confusion(out.contiguous().argmax(-1), y, out.shape[-1])


def _confusion(pred: torch.Tensor, y: torch.Tensor, c: int) -> torch.Tensor:
    """pred, y (K, N) labels of c classes -> (K, C, C) counts: all members with one bincount."""
    k = y.shape[0]
    flat = (torch.arange(k)[:, None] * c + y) * c + pred
    return torch.bincount(flat.reshape(-1), minlength=k * c * c).view(k, c, c)


def regression(out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """out (K, N, 1) predictions, y (K, N) targets -> loss (MSE) and R² per member."""
    mse = member_loss(out, y, "regression")
    variance = (y - y.mean(1, keepdim=True)).square().mean(1)
    return {"loss": mse, "r2": 1 - mse / variance.clamp_min(1e-12)}
