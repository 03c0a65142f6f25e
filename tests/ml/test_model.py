"""StackedMLP against PyTorch itself: init, forward, gradients, eval mode and dropout masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.ml.model import StackedMLP

ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


def plain_network(sizes, activation, seed):
    """The textbook network, built under torch.manual_seed(seed) in layer order."""
    torch.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACT[activation]())
    return nn.Sequential(*layers)


def linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


def stacked(sizes, seeds, rates=None, input_rates=None, activation="relu"):
    k, hidden = len(seeds), len(sizes) - 2
    rates = rates if rates is not None else [[0.0] * hidden] * k
    input_rates = input_rates if input_rates is not None else [0.0] * k
    return StackedMLP(sizes, activation, rates, input_rates, seeds)


def test_init_equals_nn_linear_default_init_under_manual_seed():
    sizes, seeds = [5, 16, 8, 3], [3, 7, 123]
    model = stacked(sizes, seeds)
    assert [tuple(w.shape) for w in model.weights] == [(3, 5, 16), (3, 16, 8), (3, 8, 3)]
    assert [tuple(b.shape) for b in model.biases] == [(3, 1, 16), (3, 1, 8), (3, 1, 3)]
    for k, seed in enumerate(seeds):
        for i, lin in enumerate(linears(plain_network(sizes, "relu", seed))):
            torch.testing.assert_close(model.weights[i][k], lin.weight.t(), rtol=0, atol=0)
            torch.testing.assert_close(model.biases[i][k, 0], lin.bias, rtol=0, atol=0)


def test_members_with_different_seeds_differ():
    model = stacked([4, 8, 2], [0, 1])
    assert not torch.equal(model.weights[0][0], model.weights[0][1])


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "sigmoid"])
@pytest.mark.parametrize("shared_input", [True, False])
def test_p0_forward_and_gradients_equal_plain_pytorch(activation, shared_input):
    sizes, seeds = [6, 32, 16, 4], [11, 12, 13]
    model = stacked(sizes, seeds, activation=activation)
    model.train()  # p=0: training mode must equal the plain network too
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 6, generator=gen)  # (K, B, in)
    target = torch.randn(3, 20, 4, generator=gen)
    out = model(x[0] if shared_input else x)  # (K, B, out)
    assert out.shape == (3, 20, 4)
    (out * target).sum().backward()
    for k, seed in enumerate(seeds):
        net = plain_network(sizes, activation, seed)
        ref = net(x[0] if shared_input else x[k])
        torch.testing.assert_close(out[k], ref, rtol=1e-5, atol=1e-6)
        (ref * target[k]).sum().backward()
        for i, lin in enumerate(linears(net)):
            torch.testing.assert_close(model.weights[i].grad[k], lin.weight.grad.t(),
                                       rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model.biases[i].grad[k, 0], lin.bias.grad,
                                       rtol=1e-5, atol=1e-5)


def test_member_as_sequential_is_the_same_network():
    sizes = [5, 12, 7, 3]
    model = stacked(sizes, [4, 5], rates=[[0.2, 0.0], [0.5, 0.7]], input_rates=[0.0, 0.3],
                    activation="tanh")
    x = torch.randn(9, 5)
    model.eval()
    out = model(x)
    for k in range(2):
        seq = model.member_as_sequential(k).eval()
        torch.testing.assert_close(out[k], seq(x), rtol=1e-5, atol=1e-6)
        n_dropout = sum(isinstance(m, nn.Dropout) for m in seq)
        assert n_dropout == [1, 3][k]
        assert [m.p for m in seq if isinstance(m, nn.Dropout)] == [[0.2], [0.3, 0.5, 0.7]][k]


def test_eval_mode_is_deterministic_and_uses_every_unit_unscaled():
    sizes, seeds = [4, 24, 24, 3], [1, 2]
    model = stacked(sizes, seeds, rates=[[0.5, 0.3], [0.9, 0.1]], input_rates=[0.2, 0.6])
    x = torch.randn(50, 4)
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    for k, seed in enumerate(seeds):
        with torch.no_grad():
            ref = plain_network(sizes, "relu", seed)(x)
        torch.testing.assert_close(first[k], ref, rtol=1e-5, atol=1e-6)
    # and training mode does drop units: the output changes from call to call
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_eval_without_autograd_reuses_buffers_but_not_results():
    """Without autograd the hidden layers write into buffers kept between calls: outputs equal
    the autograd path's, survive later calls of other sizes, and inference_mode works too."""
    model = stacked([3, 16, 8, 16, 2], [1, 2], activation="tanh")  # 3 hidden: buffers alternate
    model.eval()
    xs = [torch.randn(n, 3) for n in (40, 7, 90)]
    want = [model(x).detach() for x in xs]
    with torch.inference_mode():  # the buffers are first made here
        got = [model(xs[0])]
    with torch.no_grad():
        got += [model(x) for x in xs]
    for out, ref in zip(got, [want[0], *want], strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def identity_readout(sizes, seeds, rates, input_rates, activation="sigmoid"):
    """A model whose last layer copies its input: the output shows the dropped activations."""
    model = stacked(sizes, seeds, rates, input_rates, activation)
    with torch.no_grad():
        model.weights[-1].copy_(torch.eye(sizes[-2]).expand_as(model.weights[-1]))
        model.biases[-1].zero_()
    return model


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_hidden_dropout_zeroes_a_fraction_p_and_rescales_the_rest(p):
    width, batch = 200, 2000  # 400,000 units per member
    model = identity_readout([3, width, width], [5], [[p]], [0.0])  # sigmoid: never exactly 0
    x = torch.randn(batch, 3)
    with torch.no_grad():
        model.eval()
        clean = model(x)[0]  # (B, H) hidden activations, nothing dropped
        model.train()
        dropped = model(x)[0]
    assert (clean > 0).all()
    zero = dropped == 0
    n = zero.numel()
    assert abs(zero.float().mean().item() - p) < 5 * np.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(dropped[~zero], clean[~zero] / (1 - p), rtol=1e-6, atol=0)


def test_input_dropout_zeroes_a_fraction_of_inputs_and_rescales_the_rest():
    p, d, batch = 0.3, 50, 4000
    model = identity_readout([d, d], [2], [[]], [p])  # no hidden layer: output = dropped inputs
    x = torch.rand(batch, d) + 0.5
    model.train()
    with torch.no_grad():
        dropped = model(x)[0]
    zero = dropped == 0
    assert abs(zero.float().mean().item() - p) < 5 * np.sqrt(p * (1 - p) / zero.numel())
    torch.testing.assert_close(dropped[~zero], x[~zero] / (1 - p), rtol=1e-6, atol=0)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], x, rtol=1e-6, atol=1e-6)


def test_masks_have_per_member_and_per_layer_rates():
    hidden, d = [300, 200], 100
    rates = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9], [0.0, 0.0], [0.2, 0.7]]
    input_rates = [0.0, 0.0, 0.4, 0.0, 0.0]
    model = stacked([d, *hidden, 2], list(range(5)), rates, input_rates)
    batch = 5000
    mask = model.masks.sample(batch)
    assert mask.shape == (5, batch, sum(hidden) + d)
    blocks = {"layer1": slice(0, 300), "layer2": slice(300, 500), "input": slice(500, 600)}
    expected = {k: {"layer1": r[0], "layer2": r[1], "input": input_rates[k]}
                for k, r in enumerate(rates)}
    for k in range(5):
        for block, cols in blocks.items():
            p = expected[k][block]
            m = mask[k, :, cols]
            if p == 0:
                assert torch.all(m == 1)
                continue
            zero, kept = torch.unique(m).tolist()
            assert zero == 0.0 and kept == pytest.approx(1 / (1 - p), rel=1e-6)
            frac = (m == 0).float().mean().item()
            assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / m.numel()), (k, block)


def test_masks_come_from_numpy_default_rng_of_the_seed():
    """The documented stream: one rng.random((B, cols), float32) per step, kept when u >= p.

    Members 3 and 4 share member 0's seed (as a sweep's rates do): 3 draws the same columns,
    so it shares 0's draws at its own rates; 4 also drops inputs, so its stream is its own."""
    hidden, d, seeds = [7, 5], 3, [21, 22, 23, 21, 21]
    rates = [[0.3, 0.6], [0.0, 0.0], [0.5, 0.5], [0.1, 0.2], [0.3, 0.6]]
    input_rates = [0.0, 0.0, 0.25, 0.0, 0.5]
    model = stacked([d, *hidden, 2], seeds, rates, input_rates)
    rngs = [np.random.default_rng(s) for s in seeds]
    for batch in (4, 6, 2):  # a short last batch must not disturb the stream
        mask = model.masks.sample(batch).numpy()
        for k, rng in enumerate(rngs):
            p = np.concatenate([np.repeat(rates[k], hidden), np.full(d, input_rates[k])])
            p = p.astype(np.float32)
            if not p.any():
                np.testing.assert_array_equal(mask[k], 1)  # draws nothing
                continue
            cols = sum(hidden) + (d if input_rates[k] else 0)
            u = rng.random((batch, cols), dtype=np.float32)
            want = np.ones((batch, len(p)), np.float32)
            want[:, :cols] = (u >= p[:cols]) / (1 - p[:cols])
            np.testing.assert_allclose(mask[k], want, rtol=1e-6)


def test_no_mask_when_nothing_drops():
    model = stacked([3, 8, 2], [0, 1])
    assert model.masks.sample(10) is None


def test_members_are_independent_of_their_neighbours():
    """A member's train-mode outputs are the same alone or beside others."""
    sizes = [4, 16, 16, 2]
    group = stacked(sizes, [1, 2, 3], [[0.0, 0.0], [0.3, 0.3], [0.6, 0.6]], [0.0, 0.2, 0.0])
    alone = stacked(sizes, [2], [[0.3, 0.3]], [0.2])
    group.train()
    alone.train()
    x = torch.randn(3, 10, 4)
    for _ in range(3):
        with torch.no_grad():
            torch.testing.assert_close(group(x)[1], alone(x[1:2])[0], rtol=1e-6, atol=1e-7)


def test_dropout_gradient_flows_only_through_kept_units():
    model = identity_readout([3, 64, 64], [0], [[0.5]], [0.0])
    model.train()
    x = torch.randn(1, 3)
    out = model(x)[0]  # (1, 64)
    out.sum().backward()
    dropped = (out == 0)[0]
    # the first layer's weight column of a dropped unit gets no gradient
    grad = model.weights[0].grad[0]  # (in, H)
    assert torch.all(grad[:, dropped] == 0)
    assert torch.all(grad[:, ~dropped].abs().sum(0) > 0)


def test_l1_penalty_sums_weights_not_biases():
    model = stacked([3, 5, 2], [0, 1])
    with torch.no_grad():
        for b in model.biases:
            b.fill_(100.0)
    want = sum(w.abs().sum() for w in model.weights)
    torch.testing.assert_close(model.l1_penalty(), want)
    nets = [plain_network([3, 5, 2], "relu", s) for s in (0, 1)]
    per_net = sum(lin.weight.abs().sum() for net in nets for lin in linears(net))
    torch.testing.assert_close(model.l1_penalty(), per_net.detach(), rtol=1e-6, atol=1e-6)


def test_cross_entropy_of_stacked_output_matches_per_member():
    """Stacking does not mix members: loss of member k depends only on member k's weights."""
    model = stacked([2, 8, 3], [0, 1, 2])
    x = torch.randn(10, 2)
    y = torch.randint(0, 3, (10,))
    out = model(x)
    F.cross_entropy(out[1], y).backward()
    assert torch.all(model.weights[0].grad[0] == 0) and torch.all(model.weights[0].grad[2] == 0)
    assert model.weights[0].grad[1].abs().sum() > 0


# -- train_step: the hand-written backward against autograd ------------------------------------


def autograd_step(model, x, y, task, l1):
    """What train_step replaces: forward (dropout on), member_loss, L1, autograd's backward."""
    from app.ml.metrics import member_loss

    model.train()
    for p in model.parameters():
        p.grad = None
    loss_k = member_loss(model(x), y, task)
    loss = loss_k.sum()
    if l1:
        loss = loss + l1 * model.l1_penalty()
    loss.backward()
    return loss_k.detach(), [p.grad.clone() for p in model.parameters()]


STEP_CASES = {  # sizes, task: narrow outputs (< NARROW) are computed transposed, wide ones not
    "classes_3": ([5, 24, 16, 3], "classification"),
    "classes_20_wide": ([5, 24, 16, 20], "classification"),
    "regression": ([1, 32, 32, 1], "regression"),
    "one_hidden_layer": ([4, 40, 2], "classification"),
    "no_hidden_layer": ([6, 2], "classification"),
}


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "sigmoid"])
@pytest.mark.parametrize("case", list(STEP_CASES))
@pytest.mark.parametrize("shared_input", [True, False])
def test_train_step_equals_autograd(activation, case, shared_input):
    """Same masks (two models of the same seeds draw the same streams), same losses, same
    gradients, step after step: members with and without dropout side by side (one sharing
    another's seed, as a sweep's rates do), input dropout, an L1 term, a short last batch."""
    sizes, task = STEP_CASES[case]
    hidden = len(sizes) - 2
    seeds = [3, 4, 3, 5]
    rates = [[0.5] * hidden, [0.0] * hidden, [0.2] * hidden, [0.7] * hidden]
    input_rates = [0.0, 0.0, 0.0, 0.3]
    ours, ref = (stacked(sizes, seeds, rates, input_rates, activation) for _ in range(2))
    ours.train()
    gen = torch.Generator().manual_seed(1)
    for batch, l1 in [(9, 0.0), (9, 1e-3), (4, 0.0)]:
        x = torch.randn(4, batch, sizes[0], generator=gen)
        if task == "classification":
            y = torch.randint(0, sizes[-1], (4, batch), generator=gen)
        else:
            y = torch.randn(4, batch, generator=gen)
        x_in = x[0] if shared_input else x
        if shared_input:
            y = y[0].expand(4, -1)
        loss = ours.train_step(x_in, y, task, l1)
        want_loss, want_grads = autograd_step(ref, x_in, y, task, l1)
        torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=1e-7)
        for got, want in zip(ours.parameters(), want_grads, strict=True):
            torch.testing.assert_close(got.grad, want, rtol=1e-5, atol=1e-7)
        with torch.no_grad():  # the same small update on both, so the next step differs
            for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
                a.sub_(0.1 * a.grad)
                b.sub_(0.1 * b.grad)


def test_train_step_overwrites_gradients_and_keeps_its_buffers():
    """No zero_grad is needed between steps: each step's .grad is that step's alone."""
    model = stacked([3, 16, 2], [0])
    x, y = torch.randn(8, 3), torch.randint(0, 2, (1, 8))
    model.train_step(x, y, "classification")
    first = [p.grad.clone() for p in model.parameters()]
    buffers = [p.grad for p in model.parameters()]
    model.train_step(x, y, "classification")  # same weights, same data, p=0: same gradient
    for p, want, buf in zip(model.parameters(), first, buffers, strict=True):
        assert p.grad is buf
        torch.testing.assert_close(p.grad, want, rtol=0, atol=0)


# -- evaluation in chunks, narrow outputs --------------------------------------------------------


@pytest.mark.parametrize("sizes", [[5, 64, 32, 3], [64, 256, 256, 10], [5, 40, 40, 20],
                                   [3, 48, 48, 1], [13, 100, 7, 3]])
@pytest.mark.parametrize("shared_input", [True, False])
def test_predict_in_chunks_equals_forward_to_the_bit(sizes, shared_input):
    """Whatever the chunk size asked for and the split's length, each row's outputs are the
    ones a single product over the whole split gives (the chunks keep MKL's row blocks)."""
    model = stacked(sizes, [1, 2, 3], [[0.5, 0.5]] * 3, [0.1] * 3)
    model.eval()
    for n in (17, 300, 359, 1079):
        x = torch.randn(n, sizes[0]) if shared_input else torch.randn(3, n, sizes[0])
        with torch.no_grad():
            want = model(x)
        for rows in (1, 33, 64, 170, 341, 4096):
            got = model.predict(x, rows)
            assert got.shape == (3, n, sizes[-1])
            torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("n_classes", [2, 10])
def test_a_member_evaluates_the_same_alone_and_in_a_batch(n_classes):
    """Eval-mode outputs of member 2 of six, in the chunks a 6-run sweep uses, equal the same
    network's alone over the whole split: a run's numbers do not depend on its neighbours."""
    from app.ml.train import eval_rows

    sizes = [64, 256, 256, n_classes]
    model = stacked(sizes, list(range(6)), [[0.5, 0.5]] * 6, [0.0] * 6)
    model.eval()
    alone = model.members(torch.tensor([2]))
    x = torch.randn(1079, 64)
    got = model.predict(x, eval_rows(6, sizes))[2]
    torch.testing.assert_close(got, alone.predict(x, eval_rows(1, sizes))[0], rtol=0, atol=0)


def test_chunks_cover_every_row_once_from_multiples_of_16():
    from app.ml.model import _chunks

    for n in (1, 15, 16, 17, 64, 65, 79, 80, 81, 1000, 1079):
        for rows in (1, 64, 70, 100, 4096):
            chunks = _chunks(n, rows)
            assert chunks[0][0] == 0 and chunks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
            assert all(start % 16 == 0 for start, _ in chunks)
            assert len(chunks) == 1 or chunks[-1][1] - chunks[-1][0] >= 16


def test_narrow_outputs_are_transposed_views_and_metrics_read_them_alike():
    """A few-class output comes as a view of a (K, C, n) tensor (see model._affine); the
    metrics give the same numbers on it as on the same values laid out (K, n, C)."""
    from app.ml import metrics

    model = stacked([4, 32, 3], [0, 1])
    model.eval()
    x, y = torch.randn(50, 4), torch.randint(0, 3, (2, 50))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 50, 3) and out.stride(1) == 1  # rows are adjacent: transposed
    plain = out.contiguous()
    for name, value in metrics.classification(out, y, detailed=True).items():
        torch.testing.assert_close(value, metrics.classification(plain, y, True)[name],
                                   rtol=1e-6, atol=1e-7)
    assert torch.equal(metrics.confusion(out, y), metrics.confusion(plain, y))
    torch.testing.assert_close(metrics.member_loss(out, y, "classification"),
                               metrics.member_loss(plain, y, "classification"),
                               rtol=1e-6, atol=1e-7)
