"""Dropout Playground from Python: train an experiment in a notebook or a script, no server.

    import dropout_playground as dp

    result = dp.train({"dataset": {"name": "moons", "n_train": 200},
                       "train": {"epochs": 30},
                       "sweep": {"dropout": [0.0, 0.3, 0.6]}})
    result.rows[0]        # {"run": 0, "dropout": 0.0, ..., "epoch": 1, "train_loss": ...}
    result.summary["sweep"]["best_dropout"]   # the rate with the lowest mean final val_loss
    # pandas.DataFrame(result.rows): a table, one row per run per epoch

The config is the JSON that the playground's form, the HTTP API and `dropout-playground
train` take (README; every field optional). Training runs in this process, on the CPU.

Why a module of its own: the app lives in a package named `app`, and a notebook's folder
often holds an `app.py` of its own, which `import app` would find first. This module loads
the installed package by its location instead, never through the current folder; after that,
`app` in this process is the playground's (so a session that needs its own `app` module too
imports that one under another name).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Result", "train", "validate"]


def _load_app():
    """The playground's `app` package, from beside this file, whatever the current folder holds."""
    home = Path(__file__).resolve().parent / "app"
    loaded = sys.modules.get("app")
    if loaded is not None:
        if Path(getattr(loaded, "__file__", None) or "").resolve() == home / "__init__.py":
            return loaded
        raise ImportError(
            f"a module named 'app' is already imported from {getattr(loaded, '__file__', '?')}; "
            f"dropout_playground needs that name for its own package ({home}): import "
            "dropout_playground before it, or in a fresh process")
    spec = importlib.util.spec_from_file_location(
        "app", home / "__init__.py", submodule_search_locations=[str(home)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["app"]
        raise
    return module


_load_app()

from app.ml.config import ExperimentConfig  # noqa: E402  (after the package is in place)


@dataclass
class Result:
    """What `train` returns: plain Python values, ready for json, pandas or a plot."""

    status: str  # "done"
    config: dict  # the config with every default filled in
    rows: list[dict]  # one per run per epoch: the run's place in the sweep, then the metrics
    summary: dict  # per run and per setting of a sweep, as the API's `summary`

    @property
    def runs(self) -> int:
        return len({row["run"] for row in self.rows})


def validate(config: dict | str | Path | None = None) -> dict:
    """The config with every default filled in; a pydantic ValidationError names each bad
    field (`dataset.n_train`, ...). `config` is a dict, JSON text or a path to a JSON file."""
    return _config(config).model_dump(mode="json")


def train(config: dict | str | Path | None = None, *, progress: bool = False,
          threads: int | None = None) -> Result:
    """Train every run of `config` (one run, or a sweep) and return all their epochs.

    `progress` shows a progress bar; `threads` sets torch's thread count first (1 is fastest
    for these small networks; None leaves torch's setting as it is)."""
    import torch

    from app.ml.summary import summarize
    from app.ml.train import train as train_experiment

    cfg = _config(config)
    if threads is not None:
        torch.set_num_threads(threads)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.n_runs * cfg.train.epochs, unit="epoch")
    try:
        result = train_experiment(cfg, on_epoch=(lambda rows: bar.update(len(rows))) if bar
                                  else None)
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for run in result.runs:
        s = run.spec
        where = {"run": s.index, "dropout": s.dropout, "weight_decay": s.weight_decay,
                 "fold": s.fold, "repeat": s.repeat}
        rows += [{**where, **epoch} for epoch in run.epochs]
    rows.sort(key=lambda r: (r["run"], r["epoch"]))
    return Result(result.status, cfg.model_dump(mode="json"), rows,
                  summarize(result.run_dicts(), cfg.task))


def _config(config: Any) -> ExperimentConfig:
    if config is None:
        return ExperimentConfig()
    if isinstance(config, Path) or (isinstance(config, str)
                                    and not config.lstrip().startswith("{")):
        config = Path(config).read_text()  # a path to a JSON file
    if isinstance(config, str):
        config = json.loads(config)
    return ExperimentConfig.model_validate(config)
