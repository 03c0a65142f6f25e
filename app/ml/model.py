"""The network: K independent dropout MLPs stored as one stacked model.

A single experiment is K=1; a sweep puts all its runs side by side (K of them) so one
`torch.baddbmm` per layer trains every run at once. Member k has its own weights, its own
dropout rates and its own random streams, seeded from its run seed exactly as a plain PyTorch
script would seed them (`torch.manual_seed(seed)`, then `nn.Linear` layers in order, then one
`randperm` per epoch; dropout masks from `numpy.random.default_rng(seed)`). So a run trains to
the same numbers whether it is alone or inside a sweep.

Dropout here is inverted dropout, as in `torch.nn.Dropout`: in training each unit is dropped
(zeroed) with probability p and the kept ones are multiplied by 1/(1-p), so the expected
activation is unchanged; in evaluation nothing is dropped or scaled. Masks are drawn with NumPy's
PCG64 (a float per unit, kept when u >= p): about 5x cheaper than `torch.bernoulli_` on CPU,
which was ~40% of a small MLP's epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu, "sigmoid": torch.sigmoid}
# In-place twins: legal on a fresh baddbmm output, as each keeps its result for its backward.
IN_PLACE = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_}


class StackedMLP(nn.Module):
    """K MLPs of one shape: weights (K, in, out), biases (K, 1, out), per-member dropout rates."""

    def __init__(
        self,
        sizes: Sequence[int],  # [inputs, hidden..., outputs]
        activation: str,
        layer_rates: Sequence[Sequence[float]],  # (K, hidden layers) dropout rate p per layer
        input_rates: Sequence[float],  # (K,) dropout rate p of the inputs
        seeds: Sequence[int],  # (K,) one seed per member
    ):
        super().__init__()
        self.sizes = list(sizes)
        self.act = ACTIVATIONS[activation]
        self.act_ = IN_PLACE.get(activation, self.act)
        self.k = len(seeds)
        self.layer_rates = [list(r) for r in layer_rates]
        self.input_rates = list(input_rates)
        weights: list[list[torch.Tensor]] = [[] for _ in self.sizes[1:]]
        biases: list[list[torch.Tensor]] = [[] for _ in self.sizes[1:]]
        self.seeds = list(seeds)
        self.torch_gens = []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            for i, (n_in, n_out) in enumerate(zip(self.sizes, self.sizes[1:])):
                w, b = _linear_init(n_in, n_out, g)
                weights[i].append(w.t())
                biases[i].append(b)
            self.torch_gens.append(g)  # continues into the data order, like a plain script
        self.weights = nn.ParameterList(nn.Parameter(torch.stack(w)) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(torch.stack(b)[:, None, :]) for b in biases)
        # the same tensors as plain (weight, bias) pairs: indexing a ParameterList costs ~10 us,
        # several times per step
        self.layers = list(zip(self.weights, self.biases))
        self.masks = _MaskSampler(self.sizes, self.layer_rates, self.input_rates, seeds)
        self._eval_bufs = [torch.empty(0), torch.empty(0)]  # see _scratch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, in), or (B, in) shared by all members -> (K, B, out).

        Like nn.Dropout, dropout acts only in training mode (`model.train()`); in eval mode the
        network is deterministic and uses every unit unscaled.
        """
        return self._forward(x, self.masks.sample(x.shape[-2]) if self.training else None)

    def data_order(self, n: int) -> torch.Tensor:
        """One epoch's order of n training rows for every member, (K, n): a randperm from the
        member's generator, as a plain script draws it. Members with one seed (the rates of a
        sweep) have one order, drawn once."""
        drawn: dict[int, torch.Tensor] = {}
        for seed, g in zip(self.seeds, self.torch_gens):
            if seed not in drawn:
                drawn[seed] = torch.randperm(n, generator=g)
        return torch.stack([drawn[s] for s in self.seeds])

    @torch.no_grad()
    def mc_predict(self, x: torch.Tensor, passes: int, seed: int) -> torch.Tensor:
        """Monte Carlo dropout (Gal & Ghahramani 2016): `passes` forward passes with dropout ON
        at prediction time, each with fresh masks. x (n, in) -> (K, passes, n, out).

        A different use of dropout than training: it samples thinned networks to estimate
        uncertainty. Masks come from a private stream (seed), never the training one, so
        asking for a prediction does not change how the model trains.
        """
        sampler = _MaskSampler(self.sizes, self.layer_rates, self.input_rates,
                               [seed + k for k in range(self.k)])
        n = x.shape[0]
        mask = sampler.sample(passes * n)
        out = self._forward(x.repeat(passes, 1), mask)  # (K, passes * n, out)
        return out.view(self.k, passes, n, -1)

    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None and self.masks.input_cols:
            x = x * mask[..., self.masks.input_cols]
        *hidden, (w_last, b_last) = self.layers
        for i, (w, b) in enumerate(hidden):
            # activate in place: baddbmm's backward does not need its output (relu_, tanh_ and
            # sigmoid_ keep their own result for theirs)
            z = _affine(x, w, b, self._scratch(i, x, w))
            cols = self.masks.layer_cols[i] if mask is not None else None
            if cols is None:
                x = self.act_(z)
            elif self.act is F.relu:
                # relu(z) * m == relu(z * m) for masks m >= 0, to the bit: dropping first lets
                # both run in place on z (mul_'s backward needs only m)
                x = torch.relu_(z.mul_(mask[..., cols]))
            else:
                x = self.act_(z) * mask[..., cols]
        return _affine(x, w_last, b_last)

    def _scratch(self, i: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
        """Where hidden layer i writes its output for input x: without autograd, a buffer kept
        between calls (two alternate, as one layer reads the previous one's); with autograd,
        None (a fresh tensor, which the backward pass keeps). Evaluating every epoch in fresh
        multi-MB tensors costs more in page faults (first touch of memory the allocator took
        from the OS) than in FLOPs."""
        if torch.is_grad_enabled():
            return None
        shape = (self.k, x.shape[-2], w.shape[-1])
        n = math.prod(shape)
        if self._eval_bufs[i % 2].numel() < n:
            with torch.inference_mode(False):  # a normal tensor, writable under no_grad too
                self._eval_bufs[i % 2] = torch.empty(n, dtype=w.dtype)
        return self._eval_bufs[i % 2][:n].view(shape)

    def members(self, index: torch.Tensor) -> StackedMLP:
        """A view of some members (for predictions; shares no training state)."""
        sub = StackedMLP.__new__(StackedMLP)
        nn.Module.__init__(sub)
        sub.sizes, sub.act, sub.act_, sub.k = self.sizes, self.act, self.act_, len(index)
        sub.layer_rates = [self.layer_rates[i] for i in index.tolist()]
        sub.input_rates = [self.input_rates[i] for i in index.tolist()]
        sub.weights = [w.detach().index_select(0, index) for w in self.weights]
        sub.biases = [b.detach().index_select(0, index) for b in self.biases]
        sub.layers = list(zip(sub.weights, sub.biases))
        sub.masks = _MaskSampler(self.sizes, sub.layer_rates, sub.input_rates, [0] * sub.k)
        sub._eval_bufs = [torch.empty(0), torch.empty(0)]
        sub.eval()
        return sub

    def l1_penalty(self) -> torch.Tensor:
        """Sum of |w| over weight matrices (biases are not penalized), summed over members."""
        return sum(w.abs().sum() for w in self.weights)

    def member_as_sequential(self, k: int) -> nn.Sequential:
        """Member k as a plain nn.Sequential with nn.Dropout: the textbook network (for tests)."""
        layers: list[nn.Module] = []
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
        act_name = next(n for n, f in ACTIVATIONS.items() if f is self.act)
        if self.input_rates[k]:
            layers.append(nn.Dropout(self.input_rates[k]))
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                lin.weight.copy_(w[k].t())
                lin.bias.copy_(b[k, 0])
            layers.append(lin)
            if i < len(self.weights) - 1:
                layers.append(act[act_name]())
                if self.layer_rates[k][i]:
                    layers.append(nn.Dropout(self.layer_rates[k][i]))
        return nn.Sequential(*layers)


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """b + x @ w for every member; shared inputs (n, in) are broadcast without a copy."""
    if x.dim() == 2:
        x = x.expand(w.shape[0], -1, -1)
    return torch.baddbmm(b, x, w, out=out)


def _linear_init(n_in: int, n_out: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's default initialisation, drawn from generator g in nn.Linear's order."""
    w = torch.empty(n_out, n_in)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
    bound = 1 / math.sqrt(n_in)
    b = torch.empty(n_out)
    nn.init.uniform_(b, -bound, bound, generator=g)
    return w, b


class _MaskSampler:
    """Draws one step's dropout masks for all members and layers at once.

    Columns of a mask are [hidden layer 1 units, ..., hidden layer L units, input features]; a
    member with any rate > 0 draws uniforms for all hidden units (plus the inputs if its input
    rate > 0) from its own PCG64 stream, so its stream does not depend on its neighbours.
    Values are 0 (dropped) or 1/(1-p) (kept, rescaled).

    Members whose streams are the same (same seed, same columns drawn: the rates of a sweep
    share their seed, so that they are compared on the same luck) draw once for all of them:
    each still thresholds the shared uniforms at its own rates. A 6-rate sweep then costs one
    draw per step, as a single run does.
    """

    def __init__(self, sizes, layer_rates, input_rates, seeds):
        hidden = sizes[1:-1]
        n_hidden = sum(hidden)
        any_input = any(r > 0 for r in input_rates)
        self.n_cols = n_hidden + (sizes[0] if any_input else 0)
        self.layer_cols: list[slice | None] = []
        start = 0
        for i, width in enumerate(hidden):
            used = any(rates[i] > 0 for rates in layer_rates)
            self.layer_cols.append(slice(start, start + width) if used else None)
            start += width
        self.input_cols = slice(n_hidden, self.n_cols) if any_input else None
        p = np.zeros((len(seeds), 1, self.n_cols), np.float32)
        for k, rates in enumerate(layer_rates):
            p[k, 0, :n_hidden] = np.repeat(rates, hidden)
            p[k, 0, n_hidden:] = input_rates[k]
        self.active = bool(self.n_cols) and bool(p.any())
        self.p = torch.from_numpy(p)
        self.scale = 1.0 / (1.0 - self.p)
        # one stream per distinct (seed, columns drawn); a member that draws nothing (every
        # rate 0) reads stream 0, which its rates of 0 keep whatever it holds
        streams: dict[tuple[int, int], int] = {}
        stream_of = []
        for k, seed in enumerate(seeds):
            if any(layer_rates[k]) or input_rates[k] > 0:
                cols = n_hidden + (sizes[0] if input_rates[k] > 0 else 0)
                stream_of.append(streams.setdefault((seed, cols), len(streams)))
            else:
                stream_of.append(0)
        self.draws = [(np.random.default_rng(seed), cols) for seed, cols in streams]
        self.stream_of = torch.tensor(stream_of)
        self.own = stream_of == list(range(len(seeds)))  # every member draws its own stream
        self._buf = np.ones((max(len(self.draws), 1), 0, self.n_cols), np.float32)  # uniforms
        self._mask = torch.empty(0)  # reused by every step, like _buf

    def sample(self, batch: int) -> torch.Tensor | None:
        """(K, batch, n_cols) mask for one training step, or None when no member drops anything."""
        if not self.active:
            return None
        if self._buf.shape[1] < batch:
            self._buf = np.ones((len(self.draws), batch, self.n_cols), np.float32)
            self._mask = torch.empty(0 if self.own else len(self.stream_of), batch, self.n_cols)
        buf = self._buf[:, :batch]
        for s, (rng, cols) in enumerate(self.draws):
            if cols == self.n_cols:  # the stream's rows are contiguous: draw straight into them
                rng.random(out=buf[s], dtype=np.float32)
            else:
                buf[s, :, :cols] = rng.random((batch, cols), dtype=np.float32)
        # u >= p keeps a unit (probability 1-p); columns a member does not draw have p = 0.
        # (Into float buffers: a bool result times the scale is several times slower.)
        u = torch.from_numpy(buf)
        if self.own:
            return u.ge_(self.p).mul_(self.scale)
        u = u.expand(len(self.stream_of), -1, -1) if len(self.draws) == 1 else u[self.stream_of]
        return torch.ge(u, self.p, out=self._mask[:, :batch]).mul_(self.scale)
