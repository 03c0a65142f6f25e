"""A lean fused optimizer: Adam, AdamW or SGD(+momentum) as one kernel call per step.

`torch.optim.Adam(fused=True)` already updates every tensor in one fused kernel, but wraps it
in ~140 us of Python bookkeeping per step (hooks, state lookups, graph-capture checks): a third
of a small MLP's step on this CPU. This class keeps the state itself and calls the very same
kernels (`torch._fused_adam_`, `_fused_adamw_`, `_fused_sgd_`), so its updates equal
torch.optim's (tests compare them step by step). Where a torch build lacks those kernels it
falls back to torch.optim.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_KERNELS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_")


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
        if not all(hasattr(torch, k) for k in _KERNELS) and self.member_decay is None:
            self.fallback = _torch_optimizer(self.params, kind, lr, weight_decay, momentum)
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
        if self.fallback is not None:
            self.fallback.step()
            return
        grads = [p.grad for p in self.params]
        if self.member_decay is not None:  # what the kernels do with a scalar, per member
            if self.kind == "adamw":
                for p in self.params:
                    p.mul_(1 - self.lr * self.member_decay)
            else:
                for p, g in zip(self.params, grads):
                    g.addcmul_(p, self.member_decay)
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


def _torch_optimizer(params, kind, lr, weight_decay, momentum) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay)


def reference_optimizer(params, kind, lr, weight_decay=0.0, momentum=0.0) -> torch.optim.Optimizer:
    """The torch.optim optimizer that FusedOptimizer reproduces (for tests and the export)."""
    return _torch_optimizer(params, kind, lr, weight_decay, momentum)
