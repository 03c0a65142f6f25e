"""Snapshots that show *how* dropout regularizes, sent alongside the epoch metrics.

- 2-D classification: the decision surface, p(class 1) over a grid of the input plane,
  quantized to uint8 and base64-encoded (a 32x32 grid is 1 KB raw, ~1.5 KB as text).
- Regression (sine): the eval-mode prediction over x, and Monte Carlo dropout (Gal &
  Ghahramani 2016): `MC_PASSES` forward passes with dropout ON at prediction time, whose mean
  and standard deviation show where the model is unsure. MC dropout is a different use of
  dropout than training; the eval-mode curve is the network's actual prediction.
Snapshots are taken every few epochs (at most `MAX_SNAPSHOTS` per run, always at the last
epoch) for the first fold and seed of each setting, up to 16 settings (app.ml.runs
.snapshot_runs: every rate of a sweep of up to 16 rates). The spacing is set per member
(`snapshot_epochs`: a member's snapshot rows against its own epoch rows) and the snapshotted
members are a subset of the members trained, so snapshot work stays within BUDGET of the
training work however many runs report them; bench/insight.py measures that and the events'
size.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import torch

from app.ml.model import StackedMLP

GRID = 32  # decision-surface resolution (GRID x GRID points; drawn smoothed)
CURVE_POINTS = 60  # x values of the regression curve
MC_PASSES = 20
MC_SEED = 7_919  # MC masks: a stream apart from the training masks
MAX_SNAPSHOTS = 40
MARGIN = 0.15  # extra room around the training points, as a fraction of their range


BUDGET = 0.10  # snapshot work, averaged over epochs, as a share of the training work


def snapshot_epochs(epochs: int, snapshot_rows: int = 0, epoch_rows: int = 1) -> set[int]:
    """Evenly spaced epochs to snapshot, always including the last one.

    At most MAX_SNAPSHOTS, and spaced so that snapshot work (rows through the network) stays
    within BUDGET of the epochs' work on average: an epoch pushes each training row through
    forward and backward (~3 forward passes) and evaluates training and validation rows.
    """
    step = max(1, math.ceil(epochs / MAX_SNAPSHOTS),
               math.ceil(snapshot_rows / (BUDGET * max(1, epoch_rows))))
    return {e for e in range(step, epochs + 1, step)} | {epochs}


def epoch_rows(n_train: int, n_val: int) -> int:
    """Forward-pass rows of one epoch: training (x3 for the backward pass) and evaluation."""
    return 3 * n_train + n_train + n_val


class Snapshotter:
    """Takes snapshots of chosen members of a StackedMLP, over a fixed grid of inputs."""

    def __init__(self, task: str, train_x: torch.Tensor, members: list[int]):
        self.task, self.members = task, members
        self.index = torch.tensor(members)
        lo, hi = train_x.amin(0), train_x.amax(0)  # (D,) range of the standardized inputs
        pad = (hi - lo) * MARGIN
        lo, hi = lo - pad, hi + pad
        if task == "classification":
            xs = torch.linspace(lo[0].item(), hi[0].item(), GRID)
            ys = torch.linspace(lo[1].item(), hi[1].item(), GRID)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # rows are y, columns x
            self.inputs = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (GRID*GRID, 2)
            self.extent = [round(v, 4) for v in (lo[0].item(), hi[0].item(),
                                                   lo[1].item(), hi[1].item())]
        else:
            span = hi - lo  # regression: reach further out, where there was no training data
            self.inputs = torch.linspace(lo[0].item() - span[0].item() * 0.3,
                                         hi[0].item() + span[0].item() * 0.3, CURVE_POINTS)[:, None]

    @property
    def rows(self) -> int:
        """Rows pushed through the network per member and snapshot (for the budget)."""
        n = len(self.inputs)
        return n if self.task == "classification" else n * (MC_PASSES + 1)

    @torch.no_grad()
    def take(self, model: StackedMLP, epoch: int) -> list[tuple[int, dict]]:
        """[(member index in the stacked model, snapshot)] for the chosen members."""
        model.eval()
        sub = model.members(self.index) if len(self.members) < model.k else model
        out = sub(self.inputs)  # (M, n, out): eval mode, dropout off
        if self.task == "classification":
            prob = torch.softmax(out, -1)[..., 1]
            return [(k, self._surface(prob[i], epoch)) for i, k in enumerate(self.members)]
        mc = sub.mc_predict(self.inputs, MC_PASSES, MC_SEED + epoch)[..., 0]  # (M, T, n)
        mean, std = mc.mean(1), mc.std(1, correction=0)
        return [(k, {"kind": "curve", "epoch": epoch, "x": _r(self.inputs[:, 0]),
                     "pred": _r(out[i, :, 0]), "mc_mean": _r(mean[i]), "mc_std": _r(std[i]),
                     "mc_passes": MC_PASSES}) for i, k in enumerate(self.members)]

    def _surface(self, prob: torch.Tensor, epoch: int) -> dict:
        q = (prob * 255).round().to(torch.uint8).numpy()
        return {"kind": "surface", "epoch": epoch, "grid": GRID, "extent": self.extent,
                "p1": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_surface(snapshot: dict) -> np.ndarray:
    """The (GRID, GRID) probabilities of class 1 in a surface snapshot (rows are y)."""
    raw = np.frombuffer(base64.b64decode(snapshot["p1"]), dtype=np.uint8)
    return raw.reshape(snapshot["grid"], snapshot["grid"]) / 255.0


def _r(t: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in t.tolist()]
