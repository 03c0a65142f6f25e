"""Export one run of an experiment as a standalone PyTorch script (`GET .../script.py`).

`script_for(config, run)` returns the source of a plain Python file that imports only the
standard library, NumPy, torch and scikit-learn, and trains that run to the engine's numbers:
the same data (the source of `datasets.py`, and of `runs.fold_indices` for cross-validation, is
copied in, so there is one truth), the same initial weights, data order and dropout masks (see
`StackedMLP` and `_MaskSampler`: they are seeded exactly as this script seeds them), and the same
fused optimizer kernels. It prints one JSON line per epoch with the fields of
`train.epoch_fields`, then `{"event": "done", "test": {...}}`. The script is written for a
newcomer to read: the engine batches many runs into one model for speed, the script is the
textbook single network. Tests run it in a subprocess and compare it with `train.train`.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import textwrap
from string import Template

from app.ml import datasets, runs
from app.ml.config import ExperimentConfig
from app.ml.runs import RunSpec, plan_runs

# What the script's own code imports; the dataset code's imports are added to these.
_SCRIPT_IMPORTS = [
    "import json",
    "import math",
    "import numpy as np",
    "import torch",
    "import torch.nn.functional as F",
    "from sklearn.metrics import precision_recall_fscore_support",
    "from torch import nn",
]

_RULE = "# " + "-" * 97

_SCRIPT = Template('''\
"""Dropout Playground: one run of an experiment, as a standalone PyTorch script.

It trains one MLP with dropout exactly as the playground trained it and prints the same
numbers: one JSON object per line per epoch (loss and metrics measured in eval mode on the
training and validation data, plus the mean loss the optimizer saw with dropout on), then a
last line {"event": "done", "test": {...}} with the metrics on the held-out test data.

    python this_script.py

Needs Python 3.10+, numpy, scikit-learn and torch 2.4+ (fused optimizers on CPU).
"""

$imports

# The experiment exactly as it was configured, every default spelled out (a sweep lists all its
# runs' settings; the constants below say which run this script trains).
CONFIG = json.loads(r"""
$config
""")

$about
SEED = $seed  # seeds the initial weights and data order (torch) and the dropout masks (numpy)
DATA_SEED = $data_seed  # draws and splits the dataset (a sweep's repeats may replace CONFIG's)
LAYER_RATES = $layer_rates  # dropout rate p of each hidden layer (a sweep or the twin may
# replace CONFIG's: the p = 0 twin of a baseline pair trains with every rate at 0)
INPUT_RATE = $input_rate  # dropout rate p of the input features (a sweep or the twin may, too)
WEIGHT_DECAY = $weight_decay  # L2 (Adam, SGD) or decoupled (AdamW) decay; a sweep may replace it
$fold_constants

$rule
# Data: the playground's app/ml/datasets.py, copied verbatim (its imports are at the top), so
# this script draws exactly the same examples and splits.
$rule

$datasets


$make_data


$rule
# Model: an MLP whose hidden layers (and optionally inputs) are dropped out in training
$rule

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class DropoutMasks:
    """The dropout masks of one training step, drawn with NumPy as the playground draws them.

    p is the probability of DROPPING a unit (keep probability 1-p). A unit is kept when its
    uniform draw u >= p, and kept units are multiplied by 1/(1-p), so the expected activation
    equals the one in eval mode, where nothing is dropped or scaled ("inverted dropout", as in
    torch.nn.Dropout). nn.Dropout would train just as well, but it would draw different random
    numbers; these draws match the playground's one for one.
    """

    def __init__(self, widths, n_inputs, layer_rates, input_rate, seed):
        self.rng = np.random.default_rng(seed)  # its own stream, apart from torch's
        # One step draws a (batch, columns) block: [hidden 1, ..., hidden L, inputs if dropped]
        self.widths = [*widths] + ([n_inputs] if input_rate > 0 else [])
        rates = [*layer_rates] + ([input_rate] if input_rate > 0 else [])
        self.p = [np.float32(p) for p in rates]  # compared and scaled in float32, as the playground
        self.active = any(p > 0 for p in rates)  # nothing to drop: draw no random numbers at all

    def sample(self, batch):
        """A (batch, width) mask per hidden layer, then (batch, inputs) if inputs are dropped."""
        u = self.rng.random((batch, sum(self.widths)), dtype=np.float32)  # (B, columns) in [0, 1)
        masks, start = [], 0
        for width, p in zip(self.widths, self.p):
            keep = u[:, start:start + width] >= p  # (B, width), True with probability 1-p
            scale = np.float32(1) / (np.float32(1) - p)  # p = 0: everything kept, scale 1
            masks.append(torch.from_numpy(np.where(keep, scale, np.float32(0))))
            start += width
        return masks


class MLP(nn.Module):
    """inputs -> (input dropout) -> [Linear -> activation -> dropout] per hidden layer -> Linear."""

    def __init__(self, sizes, activation, layer_rates, input_rate, seed):
        super().__init__()
        # sizes = [inputs, hidden..., outputs]. Built right after torch.manual_seed(SEED), in
        # this order, nn.Linear's default init gives exactly the playground's initial weights.
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.act = ACTIVATIONS[activation]()
        self.dropout = DropoutMasks(sizes[1:-1], sizes[0], layer_rates, input_rate, seed)
        self.input_dropped = input_rate > 0

    def forward(self, x):  # x: (B, inputs) -> (B, outputs): logits, or a regression prediction
        # Dropout acts only in training mode (model.train()); model.eval() uses every unit as is.
        masks = self.dropout.sample(len(x)) if self.training and self.dropout.active else None
        if masks and self.input_dropped:
            x = x * masks[-1]  # input dropout: before the first layer
        for i, layer in enumerate(self.layers[:-1]):
            x = self.act(layer(x))  # (B, hidden_i)
            if masks:
                x = x * masks[i]  # hidden dropout: after the activation
        return self.layers[-1](x)


$rule
# Training and evaluation
$rule


def loss_fn(out, y, task):
    """Mean over the batch: cross-entropy of (B, classes) logits, or squared error of (B, 1)."""
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out[:, 0], y)


def make_optimizer(params):
    """torch.optim's Adam, AdamW or SGD (with momentum), as configured."""
    t = CONFIG["train"]
    # fused=True: the very kernels the playground calls, so every update matches its own
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"],
                               weight_decay=WEIGHT_DECAY, fused=True)
    # Adam adds weight_decay * w to the gradient (L2); AdamW decays the weights directly
    adam = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    return adam(params, lr=t["lr"], weight_decay=WEIGHT_DECAY, fused=True)


def train_one_epoch(model, optimizer, x, y, task):
    """One pass over the training data in a fresh order; returns the mean mini-batch loss."""
    t = CONFIG["train"]
    model.train()  # dropout on
    order = torch.randperm(len(y))  # the global generator continues from the initial weights
    total = 0.0  # sum over examples of their batch's loss (with dropout, without the L1 term)
    for start in range(0, len(y), t["batch_size"]):
        idx = order[start:start + t["batch_size"]]
        loss = loss_fn(model(x[idx]), y[idx], task)
        total += loss.item() * len(idx)
        if t["l1"]:  # L1 penalty on the weight matrices (biases are not penalized)
            loss = loss + t["l1"] * sum(layer.weight.abs().sum() for layer in model.layers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return total / len(y)


@torch.no_grad()
def evaluate(model, x, y, task, detailed=True):
    """Metrics over a whole split in eval mode (no dropout): loss and accuracy or R^2."""
    model.eval()
    out = model(x)
    loss = loss_fn(out, y, task).item()
    if task == "regression":  # R^2 = 1 - MSE / variance of the targets (1: perfect, 0: the mean)
        return {"loss": loss, "r2": 1 - loss / max(y.var(correction=0).item(), 1e-12)}
    pred = out.argmax(1)
    metrics = {"loss": loss, "acc": (pred == y).float().mean().item()}
    if detailed:  # macro averages over the classes in y or pred; 0 where a ratio is 0/0
        precision, recall, f1, _ = precision_recall_fscore_support(
            y.numpy(), pred.numpy(), average="macro", zero_division=0)
        metrics.update(precision=precision, recall=recall, f1=f1)
    return metrics


def tidy(value):
    """7 significant digits, as the playground reports (float32 holds no more); None if inf/NaN."""
    value = float(value)
    return float(f"{value:.7g}") if math.isfinite(value) else None


def main():
    torch.set_num_threads(1)  # small MLPs run fastest on one thread, as in the playground
    info, (train, val, test) = make_data()
    task, score = info.task, ("acc" if info.task == "classification" else "r2")
    sizes = [train[0].shape[1], *CONFIG["model"]["hidden"], info.n_classes]  # 1 output: regression
    torch.manual_seed(SEED)  # draws the initial weights now, then one data order per epoch
    model = MLP(sizes, CONFIG["model"]["activation"], LAYER_RATES, INPUT_RATE, SEED)
    optimizer = make_optimizer(model.parameters())
    for epoch in range(1, CONFIG["train"]["epochs"] + 1):
        dropout_loss = train_one_epoch(model, optimizer, *train, task)
        tr = evaluate(model, *train, task, detailed=False)
        va = evaluate(model, *val, task)
        row = {
            "train_loss": tr["loss"],
            "train_loss_dropout": dropout_loss,  # what the optimizer saw: dropout on
            f"train_{score}": tr[score],
            **{f"val_{name}": value for name, value in va.items()},
            "generalization_gap": va["loss"] - tr["loss"],  # > 0: worse on unseen data
        }
        print(json.dumps({"epoch": epoch, **{k: tidy(v) for k, v in row.items()}}), flush=True)
    te = evaluate(model, *test, task)
    print(json.dumps({"event": "done", "test": {f"test_{k}": tidy(v) for k, v in te.items()}}))


if __name__ == "__main__":
    main()
''')

_LOAD = '''\
    d = CONFIG["dataset"]
    data = load(d["name"], d["n_train"], noise=d["noise"], seed=DATA_SEED,
                label_noise=d["label_noise"], extra_features=d["extra_features"])'''

_MAKE_DATA = Template('''\
def make_data():
    """(info, [(x, y) of train, val, test]): inputs standardized with the training statistics."""
$load
    splits = [data.train, data.val, data.test]
    return data.info, [(torch.from_numpy(s.x), torch.from_numpy(s.y)) for s in splits]''')

_MAKE_CV_DATA = Template('''\
# From the playground's app/ml/runs.py, verbatim.
$fold_indices


def make_data():
    """(info, [(x, y) of train, val, test]) for cross-validation fold FOLD.

    The run trains on the other folds of the training examples and validates on fold FOLD. Its
    inputs are standardized again with the statistics of its own training rows, so the held-out
    fold never leaks into the scaling; the test split is the dataset's own.
    """
$load
    held = fold_indices(len(data.train.y), FOLDS, DATA_SEED)[FOLD]
    splits = fold_split(data, held)  # from the dataset code above, as the playground does
    return data.info, [(torch.from_numpy(s.x), torch.from_numpy(s.y)) for s in splits]''')


def script_for(config: ExperimentConfig, run: int = 0) -> str:
    """The source of a standalone script that trains run `run` (as in plan_runs) of `config`."""
    specs = plan_runs(config)
    if not 0 <= run < len(specs):
        runs_are = (f"{len(specs)} runs, numbered 0 to {len(specs) - 1}" if len(specs) > 1
                    else "1 run, numbered 0")
        raise ValueError(f"run {run} is out of range: this experiment has {runs_are}")
    spec = specs[run]
    folds = config.sweep.folds if config.sweep else 1
    data_imports, data_source = _module_body(inspect.getsource(datasets))
    if folds > 1:
        make_data = _MAKE_CV_DATA.substitute(
            fold_indices=_function_source(runs, "fold_indices"), load=_LOAD)
        fold_constants = (f"FOLDS = {folds}  # k-fold cross-validation on the training examples\n"
                          f"FOLD = {spec.fold}  # this run validates on fold {spec.fold} "
                          f"(0-based) and trains on the others\n")
    else:
        make_data, fold_constants = _MAKE_DATA.substitute(load=_LOAD), ""
    return _SCRIPT.substitute(
        imports=_sorted_imports(_SCRIPT_IMPORTS + data_imports),
        config=_json(config.model_dump(mode="json")),
        about=_about(config, spec, len(specs)),
        seed=spec.seed,
        data_seed=spec.data_seed,
        layer_rates=json.dumps(list(spec.layer_rates)),
        input_rate=repr(float(spec.input_rate)),
        weight_decay=repr(float(spec.weight_decay)),
        fold_constants=fold_constants,
        rule=_RULE,
        datasets=data_source,
        make_data=make_data,
    )


def _about(config: ExperimentConfig, spec: RunSpec, n_runs: int) -> str:
    """A header comment on which run this is and what sets it apart: seed, rates, fold."""
    of = f" of {json.dumps(config.name)}" if config.name else ""
    which = (f"run {spec.index} (counting from 0) of the {n_runs} runs{of}" if n_runs > 1
             else f"the only run{of}")
    seed = f"seed {spec.seed}"
    if config.sweep and config.sweep.repeats > 1 and config.sweep.repeat_seeds != "data":
        seed += f" (train.seed + repeat {spec.repeat})"
    if config.sweep and config.sweep.repeats > 1 and config.sweep.repeat_seeds != "train":
        seed += f", data seed {spec.data_seed} (dataset.seed + repeat {spec.repeat})"
    rates = list(spec.layer_rates)
    if not rates:
        hidden = "no hidden layers"
    elif len(set(rates)) == 1:
        hidden = f"hidden dropout p={rates[0]}"
    else:  # no spaces in the list: the comment is wrapped at spaces
        hidden = f"hidden dropout p={json.dumps(rates, separators=(',', ':'))} by layer"
    parts = [seed, hidden, f"input dropout p={spec.input_rate}"]
    if config.paired and spec.index == 1:  # plan_runs: the twin is always run 1 of a pair
        parts.append("the p=0 twin of run 0 (config baseline): no dropout anywhere, the same "
                     "data, seeds and initial weights, so the two differ only by dropout")
    if config.sweep and config.sweep.weight_decay:
        parts.append(f"weight decay {spec.weight_decay}")
    folds = config.sweep.folds if config.sweep else 1
    if folds > 1:
        parts.append(f"validation on fold {spec.fold} of {folds} (counting from 0)")
    lines = textwrap.wrap(f"This script trains {which}:", 97) + textwrap.wrap("; ".join(parts), 97)
    return "\n".join(f"# {line}" for line in lines)


def _json(value, indent: str = "") -> str:
    """JSON with one line per key of a dict, lists and plain values kept on one line."""
    if not isinstance(value, dict) or not value:
        return json.dumps(value)
    inner = indent + "  "
    items = ",\n".join(f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in value.items())
    return "{\n" + items + "\n" + indent + "}"


def _module_body(source: str) -> tuple[list[str], str]:
    """A module's top-level import lines, and the rest of its source minus its docstring."""
    tree = ast.parse(source)
    lines = source.splitlines()
    drop: set[int] = set()  # 0-based line numbers to leave out
    imports = []
    for i, node in enumerate(tree.body):
        is_docstring = (i == 0 and isinstance(node, ast.Expr)
                        and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, str))
        is_import = isinstance(node, ast.Import | ast.ImportFrom)
        if is_import:
            imports.append(ast.get_source_segment(source, node))
        if is_docstring or is_import:
            drop.update(range(node.lineno - 1, node.end_lineno))
    body = "\n".join(line for n, line in enumerate(lines) if n not in drop)
    return imports, re.sub(r"\n{4,}", "\n\n\n", body).strip()


def _function_source(module, name: str) -> str:
    """The source of a module's top-level function, found in the module's file as it is now.

    (inspect.getsource(function) reads the file at the line numbers of import time: a file
    edited since, as in development, would give the wrong lines.)
    """
    source = inspect.getsource(module)
    node = next(n for n in ast.parse(source).body
                if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(source, node)


def _sorted_imports(lines: list[str]) -> str:
    """Import lines as ruff's isort orders them: __future__, standard library, third party."""

    def key(line: str) -> tuple[bool, str]:
        return line.startswith("from "), line.split()[1]

    unique = sorted(set(lines), key=key)
    future = [line for line in unique if line.startswith("from __future__ ")]
    std = [line for line in unique if line not in future
           and line.split()[1].split(".")[0] in sys.stdlib_module_names]
    third = [line for line in unique if line not in future + std]
    return "\n\n".join("\n".join(group) for group in (future, std, third) if group)
