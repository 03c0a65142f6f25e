"""FusedOptimizer against torch.optim, step by step on random parameters and gradients; and
its guard: a private kernel that fails its check (forced here) leaves training on public
torch.optim with every run's own weight decay."""

from __future__ import annotations

import logging

import pytest
import torch

from app.ml.config import ExperimentConfig
from app.ml.optim import KERNELS, FusedOptimizer, kernel_ok, reference_optimizer
from app.ml.train import train

SHAPES = [(3, 5, 7), (3, 1, 7), (3, 7, 2), (11,)]

CASES = {
    "adam": (dict(kind="adam", lr=1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2)),
    "adam_l2": (dict(kind="adam", lr=3e-3, weight_decay=0.1),
                lambda ps: torch.optim.Adam(ps, lr=3e-3, weight_decay=0.1)),
    "adamw": (dict(kind="adamw", lr=1e-2, weight_decay=0.05),
              lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05)),
    "adamw_betas": (dict(kind="adamw", lr=1e-3, betas=(0.8, 0.99), eps=1e-6),
                    lambda ps: torch.optim.AdamW(ps, lr=1e-3, betas=(0.8, 0.99), eps=1e-6,
                                                 weight_decay=0.0)),
    "sgd": (dict(kind="sgd", lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgd_momentum_wd": (dict(kind="sgd", lr=0.05, momentum=0.9, weight_decay=0.01),
                        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9,
                                                   weight_decay=0.01)),
}


def params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_equal_torch_optim(case, fused):
    kwargs, make_reference = CASES[case]
    ours, theirs = params(0), params(0)
    opt = FusedOptimizer(ours, **kwargs)
    ref = make_reference(theirs)
    for group in ref.param_groups:  # torch.optim's single-tensor loop, or its fused kernel
        group["foreach"] = False
        group["fused"] = fused
    gen = torch.Generator().manual_seed(1)
    start = [p.detach().clone() for p in ours]
    for _ in range(20):
        grads = [torch.randn(s, generator=gen) for s in SHAPES]
        opt.zero_grad()
        ref.zero_grad()
        for a, b, g in zip(ours, theirs, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
        for a, b in zip(ours, theirs, strict=True):
            if fused:  # the very same kernel: bitwise equal
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            else:  # the textbook loop: equal up to float32 rounding
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert all(not torch.equal(a, b) for a, b in zip(ours, start, strict=True))  # it did move


def test_zero_grad_clears_gradients():
    ps = params(0)
    opt = FusedOptimizer(ps, "adam", 1e-3)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)


@pytest.mark.parametrize(
    ("kind", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                      ("sgd", torch.optim.SGD)])
def test_reference_optimizer_is_the_matching_torch_class(kind, cls):
    ref = reference_optimizer(params(0), kind, lr=0.02, weight_decay=0.1, momentum=0.5)
    assert type(ref) is cls
    group = ref.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.02, 0.1)
    if kind == "sgd":
        assert group["momentum"] == 0.5


@pytest.mark.parametrize(
    ("kind", "cls", "extra"),
    [("adam", torch.optim.Adam, {}), ("adamw", torch.optim.AdamW, {}),
     ("sgd", torch.optim.SGD, {"momentum": 0.9})])
def test_per_member_weight_decay_equals_one_optimizer_per_member(kind, cls, extra):
    """A stacked model (dim 0 = member) with one decay per member: member k steps exactly like
    torch.optim on member k's own slice with decay[k]."""
    decays = [0.0, 0.1, 0.3]
    stacked = [p for p in params(0) if p.dim() == 3]  # (K, ...) tensors
    members = [[torch.nn.Parameter(p.detach()[k].clone()) for p in stacked] for k in range(3)]
    opt = FusedOptimizer(stacked, kind, lr=0.01, weight_decay=decays, **extra)
    refs = [cls(members[k], lr=0.01, weight_decay=decays[k], foreach=False, **extra)
            for k in range(3)]
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=gen) for p in stacked]
        for p, g in zip(stacked, grads, strict=True):
            p.grad = g.clone()
        for k in range(3):
            for p, g in zip(members[k], grads, strict=True):
                p.grad = g[k].clone()
            refs[k].step()
        opt.step()
        for k in range(3):
            for p, ref in zip(stacked, members[k], strict=True):
                torch.testing.assert_close(p[k], ref, rtol=1e-6, atol=1e-6)


# -- the guard around the private kernels -------------------------------------------------------


@pytest.fixture
def broken(monkeypatch):
    """Call with a kind ("adam", ...) and a replacement: that kernel is replaced for the test,
    and the once-per-process check is forgotten before and after."""

    def fail(*args, **kwargs):
        raise RuntimeError("forced: this build's kernel is broken")

    def make(kind: str, replacement=fail) -> None:
        monkeypatch.setattr(torch, KERNELS[kind], replacement)
        kernel_ok.cache_clear()

    yield make
    kernel_ok.cache_clear()


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_the_kernels_pass_their_check_on_this_torch(kind):
    kernel_ok.cache_clear()
    assert kernel_ok(kind)
    assert FusedOptimizer(params(0), kind, 1e-3).fallback is None


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_a_failing_kernel_is_noticed_and_torch_optim_steps_instead(kind, broken, caplog):
    broken(kind)
    with caplog.at_level(logging.WARNING, logger="app.ml.optim"):
        assert not kernel_ok(kind)
    assert "forced: this build's kernel is broken" in caplog.text
    assert isinstance(FusedOptimizer(params(0), kind, 1e-3).fallback, torch.optim.Optimizer)
    others = set(KERNELS) - {kind}
    assert all(kernel_ok(k) for k in others)  # each kind is judged on its own


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_a_kernel_that_computes_something_else_is_not_used(kind, broken):
    broken(kind, lambda *args, **kwargs: None)  # runs without error, updates nothing
    assert not kernel_ok(kind)


def test_a_missing_kernel_is_not_used(broken, monkeypatch):
    monkeypatch.delattr(torch, KERNELS["adamw"])
    kernel_ok.cache_clear()
    assert not kernel_ok("adamw")


SWEEP = {"dataset": {"name": "moons", "n_train": 60}, "model": {"hidden": [16]},
         "train": {"epochs": 4, "batch_size": 16},
         "sweep": {"dropout": [0.0, 0.5], "weight_decay": [0.0, 0.05]}}
OPTIMIZERS = {"adam": {"optimizer": "adam", "lr": 0.01},
              "adamw": {"optimizer": "adamw", "lr": 0.01},
              "sgd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}}


def _config(kind: str, **override) -> ExperimentConfig:
    raw = {**SWEEP, "train": {**SWEEP["train"], **OPTIMIZERS[kind]}, **override}
    return ExperimentConfig.model_validate(raw)


def _epochs(result) -> list[list[dict]]:
    return [run.epochs for run in result.runs]


def _assert_close(a: list[dict], b: list[dict]) -> None:
    assert [e["epoch"] for e in a] == [e["epoch"] for e in b]
    for x, y in zip(a, b, strict=True):
        for key, value in x.items():
            assert y[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("kind", sorted(KERNELS))
def test_a_dropout_x_weight_decay_sweep_keeps_each_runs_decay_without_the_kernel(kind, broken):
    """torch.optim has one decay per parameter group, and a sweep is one stacked model: with the
    kernel forced to fail, each run of the sweep must still train as the same run alone (which
    gives its decay to torch.optim itself) and as the sweep with the kernel did."""
    config = _config(kind)
    with_kernel = _epochs(train(config))
    broken(kind)
    without = train(config)
    specs = [run.spec for run in without.runs]
    assert len({(s.dropout, s.weight_decay) for s in specs}) == 4
    for run, kernel_epochs in zip(without.runs, with_kernel, strict=True):
        _assert_close(run.epochs, kernel_epochs)
        s = run.spec
        alone = _config(kind, model={**SWEEP["model"], "dropout": s.dropout}, sweep=None)
        alone.train.weight_decay = s.weight_decay
        _assert_close(run.epochs, train(alone).runs[0].epochs)
    # the decays made a difference, so the comparison above could have failed
    by_decay = {s.weight_decay: run.epochs[-1]["train_loss"]
                for s, run in zip(specs, without.runs, strict=True) if s.dropout == 0.0}
    assert by_decay[0.0] != pytest.approx(by_decay[0.05], rel=1e-3)
