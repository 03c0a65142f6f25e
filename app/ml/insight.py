"""Snapshots that show *how* dropout regularizes, sent alongside the epoch metrics.

- 2-D classification: the decision surface, p(class 1) over a grid of the input plane,
  quantized to uint8 and base64-encoded (a 40x40 grid is 1.6 KB raw, ~2.2 KB as text).
- Regression (sine): the eval-mode prediction over x, and Monte Carlo dropout (Gal &
  Ghahramani 2016): `MC_PASSES` forward passes with dropout ON at prediction time, whose mean
  and standard deviation show where the model is unsure. MC dropout is a different use of
  dropout than training; the eval-mode curve is the network's actual prediction.
Snapshots are taken every few epochs (at most `MAX_SNAPSHOTS` per run, always at the last
epoch) for at most 8 runs of an experiment (app.ml.runs.snapshot_runs: the first fold and seed
of each setting),
so they stay a small part of the stream and of the training time (bench/insight.py measures
both).
"""

from __future__ import annotations

import base64
import math

import numpy as np
import torch

from app.ml.model import StackedMLP

GRID = 40  # decision-surface resolution (GRID x GRID points)
CURVE_POINTS = 120  # x values of the regression curve
MC_PASSES = 30
MC_SEED = 7_919  # MC masks: a stream apart from the training masks
MAX_SNAPSHOTS = 40
MARGIN = 0.15  # extra room around the training points, as a fraction of their range


def snapshot_epochs(epochs: int) -> set[int]:
    """Evenly spaced epochs to snapshot, always including the last one."""
    step = max(1, math.ceil(epochs / MAX_SNAPSHOTS))
    return {e for e in range(step, epochs + 1, step)} | {epochs}


class Snapshotter:
    """Takes snapshots of chosen members of a StackedMLP, over a fixed grid of inputs."""

    def __init__(self, task: str, train_x: torch.Tensor, members: list[int]):
        self.task, self.members = task, members
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

    @torch.no_grad()
    def take(self, model: StackedMLP, epoch: int) -> list[tuple[int, dict]]:
        """[(member index in the stacked model, snapshot)] for the chosen members."""
        model.eval()
        out = model(self.inputs)  # (K, n, out): eval mode, dropout off
        if self.task == "classification":
            prob = torch.softmax(out, -1)[..., 1]
            return [(k, self._surface(prob[k], epoch)) for k in self.members]
        mc = model.mc_predict(self.inputs, MC_PASSES, MC_SEED + epoch)[..., 0]  # (K, T, n)
        mean, std = mc.mean(1), mc.std(1, correction=0)
        return [(k, {"kind": "curve", "epoch": epoch, "x": _r(self.inputs[:, 0]),
                     "pred": _r(out[k, :, 0]), "mc_mean": _r(mean[k]), "mc_std": _r(std[k]),
                     "mc_passes": MC_PASSES}) for k in self.members]

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
