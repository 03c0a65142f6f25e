"""A lean fused optimizer: Adam, AdamW or SGD(+momentum) as one kernel call per step.

`torch.optim.Adam(fused=True)` already updates every tensor in one fused kernel, but wraps it
in ~140 us of Python bookkeeping per step (hooks, state lookups, graph-capture checks): a third
of a small MLP's step on this CPU. This class keeps the state itself and calls the very same
kernels (`torch._fused_adam_`, `_fused_adamw_`, `_fused_sgd_`), so its updates equal
torch.optim's (tests compare them step by step).

Those kernels are private: a torch release may rename, change or break them. So each kind is
checked once per process before it is used (`kernel_ok`: a few steps on small stacked tensors
against the textbook update that torch.optim's public single-tensor loop computes; a worker's
warm-up training runs it before any user's experiment). On any error, a missing kernel or a
different result, the optimizer steps through public torch.optim instead, which has one weight
decay per parameter group; a sweep's per-run decays are then applied here before each step,
exactly as the kernels and torch.optim apply a decay (tests force the error and compare a
dropout x weight decay sweep). pyproject.toml bounds torch at the newest release tested.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)
KERNELS = {"adam": "_fused_adam_", "adamw": "_fused_adamw_", "sgd": "_fused_sgd_"}


class FusedOptimizer:
    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        kind: str,  # "adam", "adamw" or "sgd"
        lr: float,
        weight_decay: float | Sequence[float] = 0.0,  # L2 (Adam, SGD) or decoupled (AdamW);
        # a sequence gives one value per member (dim 0 of every parameter) of a stacked model
        momentum: float = 0.0,  # SGD only
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        use_kernel: bool | None = None,  # None: the kernel if it passed its check here
    ):
        self.params = list(params)
        self.member_decay = None  # (K, 1, 1) when members decay differently
        if not isinstance(weight_decay, float | int):
            decays = [float(d) for d in weight_decay]
            if len(set(decays)) == 1:
                weight_decay = decays[0]
            else:
                self.member_decay = torch.tensor(decays)[:, None, None]
                weight_decay = 0.0
        self.kind, self.lr, self.weight_decay, self.momentum = kind, lr, weight_decay, momentum
        self.betas, self.eps = betas, eps
        self.fallback = None
        if not (kernel_ok(kind) if use_kernel is None else use_kernel):
            # public torch.optim; member decays are applied in step()
            self.fallback = _torch_optimizer(self.params, kind, lr, weight_decay, momentum,
                                             betas, eps)
            return
        self.steps = torch.zeros(())  # shared step count: every tensor steps together
        self.exp_avg = [torch.zeros_like(p) for p in self.params] if kind != "sgd" else []
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params] if kind != "sgd" else []
        self.momentum_buf = [torch.zeros_like(p) for p in self.params] if momentum else []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if self.member_decay is not None:  # what the kernels and torch.optim do with a
            if self.kind == "adamw":       # scalar decay, member by member
                for p in self.params:
                    p.mul_(1 - self.lr * self.member_decay)
            else:
                for p, g in zip(self.params, grads):
                    g.addcmul_(p, self.member_decay)
        if self.fallback is not None:
            self.fallback.step()
            return
        if self.kind == "sgd":
            torch._fused_sgd_(
                self.params, grads, self.momentum_buf, weight_decay=self.weight_decay,
                momentum=self.momentum, lr=self.lr, dampening=0.0, nesterov=False,
                maximize=False, is_first_step=bool(self.steps == 0),
            )
            self.steps += 1
            return
        self.steps += 1  # the kernel reads the step count after the increment, as torch.optim
        kernel = torch._fused_adamw_ if self.kind == "adamw" else torch._fused_adam_
        kernel(
            self.params, grads, self.exp_avg, self.exp_avg_sq, [], [self.steps] * len(grads),
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay,
            eps=self.eps, amsgrad=False, maximize=False,
        )


def _torch_optimizer(params, kind, lr, weight_decay, momentum, betas=(0.9, 0.999),
                     eps=1e-8) -> torch.optim.Optimizer:
    """torch.optim's public single-tensor loop (fused=True would call the private kernels)."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               foreach=False, fused=False)
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False,
               fused=False)


@functools.cache
def kernel_ok(kind: str) -> bool:
    """Whether the private fused kernel of `kind` works here: a few steps of FusedOptimizer on
    small stacked tensors equal the textbook update, member by member. Checked once per
    process (about a millisecond); any error or difference answers False (logged)."""
    if not hasattr(torch, KERNELS[kind]):
        log.warning("torch %s has no torch.%s: %s steps through torch.optim", torch.__version__,
                    KERNELS[kind], kind)
        return False
    try:
        _check(kind)
    except Exception as e:  # any failure at all means: do not use it
        log.warning("torch.%s failed its check on torch %s (%s: %s): %s steps through "
                    "torch.optim", KERNELS[kind], torch.__version__, type(e).__name__, e, kind)
        return False
    return True


def _check(kind: str) -> None:
    """Raises unless the kernel path steps as the textbook update does (written out below,
    as torch.optim's single-tensor loop computes it; importing torch.optim here would cost a
    worker over a second at start): per-member decays (applied in step()) and one decay for
    all (applied by the kernel)."""
    lr, momentum = 0.01, 0.9 if kind == "sgd" else 0.0
    for decays in ([0.0, 0.1], [0.05, 0.05]):
        gen = torch.Generator().manual_seed(0)
        start = [torch.randn(s, generator=gen) for s in [(2, 3, 4), (2, 1, 4)]]
        ours = [torch.nn.Parameter(t.clone()) for t in start]
        opt = FusedOptimizer(ours, kind, lr, decays, momentum, use_kernel=True)
        wd = torch.tensor(decays)[:, None, None]
        ref = [t.clone() for t in start]
        m = [torch.zeros_like(t) for t in start]
        v = [torch.zeros_like(t) for t in start]
        for step in range(1, 4):
            grads = [torch.randn(t.shape, generator=gen) for t in start]
            for p, g in zip(ours, grads, strict=True):
                p.grad = g.clone()
            opt.step()
            for i, g in enumerate(grads):
                _textbook(kind, ref[i], g, m[i], v[i], wd, lr, momentum, step)
        for p, r in zip(ours, ref, strict=True):
            if not torch.allclose(p.detach(), r, rtol=1e-5, atol=1e-6):
                worst = (p.detach() - r).abs().max().item()
                raise AssertionError(f"steps differ from the textbook update by {worst:.3g}")


def _textbook(kind, p, g, m, v, wd, lr, momentum, step, betas=(0.9, 0.999), eps=1e-8):
    """One update of p in place; m and v are the state (momentum buffer for SGD in m)."""
    if kind == "sgd":
        g = g + wd * p
        m.copy_(g if step == 1 else momentum * m + g)
        p.sub_(lr * m)
        return
    if kind == "adamw":
        p.mul_(1 - lr * wd)
    else:
        g = g + wd * p
    b1, b2 = betas
    m.mul_(b1).add_((1 - b1) * g)
    v.mul_(b2).add_((1 - b2) * g * g)
    denom = (v.sqrt() / (1 - b2**step) ** 0.5) + eps
    p.sub_(lr / (1 - b1**step) * m / denom)


def reference_optimizer(params, kind, lr, weight_decay=0.0, momentum=0.0) -> torch.optim.Optimizer:
    """The torch.optim optimizer that FusedOptimizer reproduces (for tests and the export)."""
    return _torch_optimizer(params, kind, lr, weight_decay, momentum)
