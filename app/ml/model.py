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

Training steps go through `train_step`: the forward pass, the loss and the backward pass
written out with the operations autograd would run (tests compare its gradients with
autograd's), with no graph to record and 40% fewer operator calls (44 against 72 a step for
a 2-layer sweep). A small network's step costs its operator calls more than its FLOPs.
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
# The derivative each activation's autograd node computes: from its output (relu, tanh,
# sigmoid: what the in-place twins keep) or, for gelu, from its input.
BACKWARD = {
    "relu": lambda g, y: torch.ops.aten.threshold_backward(g, y, 0),
    "tanh": torch.ops.aten.tanh_backward,
    "sigmoid": torch.ops.aten.sigmoid_backward,
    "gelu": torch.ops.aten.gelu_backward,
}
# A layer with fewer outputs than this (a classifier's or regressor's output layer) is computed
# transposed (see _affine): MKL computes a product with 1-10 result columns 3-5x slower than the
# same product transposed, whose result has a row per output and a column per example.
NARROW = 16


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
        self.activation = activation
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
        self._eval_views: dict[tuple[int, ...], torch.Tensor] = {}
        self._grads: list[tuple[torch.Tensor, torch.Tensor]] = []  # see train_step

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
            z = _affine(x, w, b, out=self._scratch(i, x, w))
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

    @torch.no_grad()
    def predict(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        """Eval-mode outputs (no dropout, whatever the mode) over a whole split, `rows` rows at
        a time: x (n, in) shared or (K, n, in) -> (K, n, out), as `forward` computes them.

        Chunks whose activations stay in cache for the next layer (app.ml.train.eval_rows
        chooses `rows`) make evaluation faster at the same numbers; the output layer's w^T is
        copied once for all chunks, and the narrow outputs (see _affine) are joined in their
        own (K, out, n) layout."""
        k, n = self.k, x.shape[-2]
        *hidden, (w_last, b_last) = self.layers
        narrow = w_last.shape[-1] < NARROW
        if narrow:
            wt, bt = w_last.transpose(1, 2).contiguous(), b_last.transpose(1, 2)
        outs = []
        for start, stop in _chunks(n, rows):
            h = x[..., start:stop, :]
            if h.dim() == 2:
                h = h.expand(k, -1, -1)
            for i, (w, b) in enumerate(hidden):
                h = self.act_(_affine(h, w, b, out=self._scratch(i, h, w)))
            outs.append(torch.baddbmm(bt, wt, h.transpose(1, 2)) if narrow
                        else torch.baddbmm(b_last, h, w_last))
        if narrow:
            return (outs[0] if len(outs) == 1 else torch.cat(outs, 2)).transpose(1, 2)
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    @torch.no_grad()
    def train_step(self, x: torch.Tensor, y: torch.Tensor, task: str,
                   l1: float = 0.0) -> torch.Tensor:
        """One training step's forward pass (dropout on), loss and backward pass, without
        autograd. x (K, B, in) or (B, in) shared, y (K, B) -> each member's mean mini-batch loss
        (K,), as metrics.member_loss gives it; every parameter's .grad then holds the gradient
        of the members' summed losses (+ l1 x l1_penalty): overwritten, never accumulated.

        The operations are autograd's own for `forward`, member_loss and the L1 term (the
        activations' backward kernels, threshold_backward for relu; _log_softmax_backward_data
        for the cross-entropy), so the gradients are the same up to float rounding (tests
        compare them), in 40% fewer operator calls."""
        k, b = self.k, x.shape[-2]
        grads, transposed = self._grad_buffers(), self._transposed
        masks, input_mask = [None] * (len(self.layers) - 1), None
        if self.masks.sample(b) is not None:
            masks, input_mask = self.masks.columns(b)
        if x.dim() == 2:
            x = x.expand(k, -1, -1)
        if input_mask is not None:
            x = x * input_mask
        inputs, saved = [], []  # each layer's input; each hidden layer's (kept tensor, mask)
        *hidden, (w_last, b_last) = self.layers
        for (w, bias), m in zip(hidden, masks):
            inputs.append(x)
            x, kept = self._activate(_affine(x, w, bias), m)
            saved.append((kept, m))
        inputs.append(x)
        wt = None
        if w_last.shape[-1] < NARROW:  # transposed (see _affine): logits (K, C, B)
            wt = transposed[-1][0].contiguous()
            logits, dim = torch.baddbmm(transposed[-1][1], wt, x.transpose(1, 2)), 1
        else:
            logits, dim = torch.baddbmm(b_last, x, w_last), 2
        loss, g = _loss_and_grad(logits, dim, y, task)  # g: d loss / d logits, their layout
        for i in range(len(self.layers) - 1, -1, -1):
            (gw, gb), a = grads[i], inputs[i]
            if wt is not None:  # g (K, C, B): the weight gradient comes out transposed
                gw_t, gw_tt, gb_flat = self._grad_views
                torch.bmm(g, a, out=gw_t)
                gw.copy_(gw_tt)
                torch.sum(g, 2, out=gb_flat)
                ga = torch.bmm(g.transpose(1, 2), wt) if i else None
                wt = None
            else:
                torch.bmm(a.transpose(1, 2), g, out=gw)
                torch.sum(g, 1, keepdim=True, out=gb)
                ga = torch.bmm(g, transposed[i][0]) if i else None
            if ga is not None:
                g = self._activate_backward(ga, *saved[i - 1])
        if l1:  # d(l1 * sum |w|)/dw = l1 * sgn(w), added as autograd accumulates it
            for (w, _), (gw, _) in zip(self.layers, grads):
                gw.add_(w.sgn(), alpha=l1)
        return loss

    def _activate(self, z: torch.Tensor, m: torch.Tensor | None):
        """A hidden layer's activation and dropout, as _forward applies them, on z (K, B, H)
        -> (output, what the backward needs: the activation's output, or gelu's input)."""
        if self.activation == "relu":
            y = torch.relu_(z if m is None else z.mul_(m))  # relu(z) * m == relu(z * m): m >= 0
            return y, y
        y = self.act_(z)
        kept = z if self.activation == "gelu" else y
        return (y if m is None else y * m), kept

    def _activate_backward(self, g: torch.Tensor, kept: torch.Tensor,
                           m: torch.Tensor | None) -> torch.Tensor:
        """d loss / d z from d loss / d (layer output) g, in autograd's order and kernels."""
        if self.activation == "relu":
            g = BACKWARD["relu"](g, kept)
            return g if m is None else g.mul_(m)
        return BACKWARD[self.activation](g if m is None else g.mul_(m), kept)

    def _grad_buffers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) gradient tensors per layer, made once and kept as every .grad; with
        them, the views train_step reuses (views cost an operator call each, too): every
        layer's w^T and b^T, and the transposed output layer's gradients (w^T, flat b)."""
        if not self._grads:
            self._grads = [(torch.zeros_like(w), torch.zeros_like(b)) for w, b in self.layers]
            self._transposed = [(w.transpose(1, 2), b.transpose(1, 2)) for w, b in self.layers]
            w = self.layers[-1][0]
            gw_t = torch.empty(self.k, w.shape[2], w.shape[1])  # (K, out, in)
            self._grad_views = (gw_t, gw_t.transpose(1, 2), self._grads[-1][1].view(self.k, -1))
        for (w, b), (gw, gb) in zip(self.layers, self._grads):
            if w.grad is not gw:
                w.grad = gw
            if b.grad is not gb:
                b.grad = gb
        return self._grads

    def _scratch(self, i: int, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
        """Where hidden layer i writes its output for input x: without autograd, a buffer kept
        between calls (two alternate, as one layer reads the previous one's); with autograd,
        None (a fresh tensor, which the backward pass keeps). Evaluating every epoch in fresh
        multi-MB tensors costs more in page faults (first touch of memory the allocator took
        from the OS) than in FLOPs."""
        if torch.is_grad_enabled():
            return None
        shape = (i % 2, self.k, x.shape[-2], w.shape[-1])
        view = self._eval_views.get(shape)  # (views cost an operator call each, too)
        if view is None:
            n = math.prod(shape[1:])
            with torch.inference_mode(False):  # normal tensors, writable under no_grad too
                if self._eval_bufs[i % 2].numel() < n:
                    self._eval_bufs[i % 2] = torch.empty(n, dtype=w.dtype)
                    self._eval_views = {}
                view = self._eval_views[shape] = self._eval_bufs[i % 2][:n].view(shape[1:])
        return view

    def members(self, index: torch.Tensor) -> StackedMLP:
        """A view of some members (for predictions; shares no training state)."""
        sub = StackedMLP.__new__(StackedMLP)
        nn.Module.__init__(sub)
        sub.sizes, sub.act, sub.act_, sub.k = self.sizes, self.act, self.act_, len(index)
        sub.activation = self.activation
        sub.layer_rates = [self.layer_rates[i] for i in index.tolist()]
        sub.input_rates = [self.input_rates[i] for i in index.tolist()]
        sub.weights = [w.detach().index_select(0, index) for w in self.weights]
        sub.biases = [b.detach().index_select(0, index) for b in self.biases]
        sub.layers = list(zip(sub.weights, sub.biases))
        sub.masks = _MaskSampler(self.sizes, sub.layer_rates, sub.input_rates, [0] * sub.k)
        sub._eval_bufs, sub._eval_views = [torch.empty(0), torch.empty(0)], {}
        sub._grads = []
        sub.eval()
        return sub

    def l1_penalty(self) -> torch.Tensor:
        """Sum of |w| over weight matrices (biases are not penalized), summed over members."""
        return sum(w.abs().sum() for w in self.weights)

    def member_as_sequential(self, k: int) -> nn.Sequential:
        """Member k as a plain nn.Sequential with nn.Dropout: the textbook network (for tests)."""
        layers: list[nn.Module] = []
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}
        act_name = self.activation
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


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, wt: torch.Tensor | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """b + x @ w for every member: x (K, n, in), or (n, in) shared (broadcast without a copy),
    w (K, in, out), b (K, 1, out) -> (K, n, out). The bias is the product's starting value.

    A narrow layer (out < NARROW) is computed transposed, b^T + w^T x^T, into (K, out, n), and
    the (K, n, out) result is a view of that; w^T is copied first (wt, if the caller has it):
    MKL reads a contiguous w^T of a few rows 2x faster than a transposed view of w."""
    if x.dim() == 2:
        x = x.expand(w.shape[0], -1, -1)
    if w.shape[-1] >= NARROW:
        return torch.baddbmm(b, x, w, out=out)
    wt = w.transpose(1, 2).contiguous() if wt is None else wt
    return torch.baddbmm(b.transpose(1, 2), wt, x.transpose(1, 2)).transpose(1, 2)


def _chunks(n: int, rows: int) -> list[tuple[int, int]]:
    """[start, stop) of chunks of about `rows` (64 or more) of n rows that leave every row's
    numbers as one product over all n rows gives them (tested): MKL computes rows in blocks,
    the last block of a product its own way, so every chunk starts at a multiple of 16, and a
    last chunk that would be under 16 rows joins the one before it."""
    rows = max(64, rows // 16 * 16)
    starts = list(range(0, n, rows))
    if len(starts) > 1 and n - starts[-1] < 16:
        starts.pop()
    return list(zip(starts, [*starts[1:], n]))


def _loss_and_grad(logits: torch.Tensor, dim: int, y: torch.Tensor,
                   task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's mean loss (K,) and d(sum of the losses)/d logits, as metrics.member_loss
    and autograd compute them (the mean's 1/B, then nll_loss's and log_softmax's backward for
    cross-entropy; 2 d / B for the squared error). logits: (K, B, C) with classes along dim 2,
    or (K, C, B) with classes along dim 1 (a transposed output layer, see _affine); the
    gradient comes in the same layout. y (K, B)."""
    k, n = y.shape
    if task == "classification":
        ls = torch.log_softmax(logits, dim)
        index = y.unsqueeze(dim)
        loss = ls.gather(dim, index).view(k, n).mean(1).neg_()
        g = torch.zeros_like(ls).scatter_(dim, index, -1.0 / n)
        return loss, torch._log_softmax_backward_data(g, ls, dim, ls.dtype)
    d = logits.view(k, n) - y  # one output: (K, B, 1) and (K, 1, B) are the same memory
    loss = d.square().mean(1)
    return loss, d.mul_(2).mul_(1.0 / n).view(logits.shape)


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
        self._views: dict[int, tuple] = {}  # per batch size, see _views_of

    def sample(self, batch: int) -> torch.Tensor | None:
        """(K, batch, n_cols) mask for one training step, or None when no member drops anything.
        The mask lives in buffers that the next call of the same batch size overwrites."""
        if not self.active:
            return None
        if self._buf.shape[1] < batch:
            self._buf = np.ones((len(self.draws), batch, self.n_cols), np.float32)
            self._mask = torch.empty(0 if self.own else len(self.stream_of), batch, self.n_cols)
            self._views = {}
        buf = self._buf[:, :batch]
        for s, (rng, cols) in enumerate(self.draws):
            if cols == self.n_cols:  # the stream's rows are contiguous: draw straight into them
                rng.random(out=buf[s], dtype=np.float32)
            else:
                buf[s, :, :cols] = rng.random((batch, cols), dtype=np.float32)
        # u >= p keeps a unit (probability 1-p); columns a member does not draw have p = 0.
        # (Into float buffers: a bool result times the scale is several times slower.)
        u, mask, _ = self._views.get(batch) or self._views_of(batch)
        if self.own:
            return u.ge_(self.p).mul_(self.scale)  # u is the mask
        return torch.ge(u if len(self.draws) == 1 else u[self.stream_of], self.p,
                        out=mask).mul_(self.scale)

    def columns(self, batch: int) -> tuple[list[torch.Tensor | None], torch.Tensor | None]:
        """Views of the last mask of this batch size: per hidden layer (None where no member
        drops there), and of the inputs (None where none drops)."""
        return self._views[batch][2]

    def _views_of(self, batch: int) -> tuple:
        """(what ge reads, the mask, its column views) for a batch size, made once: each view
        costs an operator call, and a step needs several."""
        with torch.inference_mode(False):  # normal tensors, writable outside inference mode
            u = torch.from_numpy(self._buf)[:, :batch]
            if self.own:
                mask = u
            else:
                mask = self._mask[:, :batch]
                if len(self.draws) == 1:
                    u = u.expand(len(self.stream_of), -1, -1)
            cols = ([None if c is None else mask[:, :, c] for c in self.layer_cols],
                    None if self.input_cols is None else mask[:, :, self.input_cols])
        self._views[batch] = (u, mask, cols)
        return self._views[batch]
