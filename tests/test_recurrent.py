"""Recurrent layers beyond the per-layer gradient checks in test_layers.py: the Keras equations, masks of
different lengths in one batch, go_backwards, stacks and the bidirectional wrapper, all in float64."""

import numpy as np
import pytest
from helpers import numeric_grad, rel_error

from nncli.errors import ConfigError
from nncli.layers import LAYERS
from nncli.models import MODELS, Sequential
from nncli.models.sequential import split_padding

BIAS = {"bias_initializer": {"type": "random_normal", "stddev": 0.5}}
LENGTHS = [6, 3, 5, 1]  # one batch, padded at the end to T = 6


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference(layer, x):
    """The layer's Keras equations as a plain loop over steps: (N, T, H) states, x (N, T, D) unpadded."""
    p = {k: v.astype(np.float64) for k, v in layer.params.items()}
    W, U = p["kernel"], p["recurrent_kernel"]
    H = layer.units
    N, T, _ = x.shape
    h, c = np.zeros((N, H)), np.zeros((N, H))
    out = []
    for t in range(T):
        xt = x[:, t]
        if layer.name == "lstm":
            z = xt @ W + h @ U + p["bias"]
            i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        elif layer.name == "gru" and layer.reset_after:
            xz, hz = xt @ W + p["bias"][0], h @ U + p["bias"][1]
            u = sigmoid(xz[:, :H] + hz[:, :H])
            r = sigmoid(xz[:, H : 2 * H] + hz[:, H : 2 * H])
            cand = np.tanh(xz[:, 2 * H :] + r * hz[:, 2 * H :])
            h = u * h + (1 - u) * cand
        elif layer.name == "gru":
            xz = xt @ W + p["bias"]
            u = sigmoid(xz[:, :H] + h @ U[:, :H])
            r = sigmoid(xz[:, H : 2 * H] + h @ U[:, H : 2 * H])
            cand = np.tanh(xz[:, 2 * H :] + (r * h) @ U[:, 2 * H :])
            h = u * h + (1 - u) * cand
        else:
            h = np.tanh(xt @ W + h @ U + p["bias"])
        out.append(h)
    return np.stack(out, axis=1)


def padded_batch(rng, lengths, features):
    x = rng.normal(size=(len(lengths), max(lengths), features))
    for n, length in enumerate(lengths):
        x[n, length:] = np.nan
    return x


def model_of(specs, input_shape, seed=0):
    model = Sequential([LAYERS.create(s) for s in specs], input_shape, dtype=np.float64)
    model.initialize(np.random.default_rng(seed))
    return model


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "lstm", "units": 3, "return_sequences": True, **BIAS},
        {"type": "gru", "units": 3, "return_sequences": True, **BIAS},
        {"type": "gru", "units": 3, "return_sequences": True, "reset_after": False, **BIAS},
        {"type": "rnn", "units": 3, "return_sequences": True, **BIAS},
    ],
    ids=lambda s: s["type"] + ("" if s.get("reset_after", True) else "-reset-before"),
)
def test_forward_follows_the_keras_equations(spec):
    model = model_of([spec], (6, 2))
    x = np.random.default_rng(1).normal(size=(4, 6, 2))
    layer = model.layers[0]
    np.testing.assert_allclose(model.forward(x), reference(layer, x), rtol=1e-12, atol=1e-12)
    backwards = model_of([{**spec, "go_backwards": True}], (6, 2))
    backwards.theta[:] = model.theta
    np.testing.assert_allclose(backwards.forward(x), reference(layer, x[:, ::-1]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kind", [{"type": "lstm"}, {"type": "gru"}, {"type": "gru", "reset_after": False}, {"type": "rnn"}], ids=str
)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_a_padded_sequence_gives_what_it_gives_alone(kind, go_backwards):
    """Masked steps change nothing: each sequence's last valid state (and its valid steps' outputs) equal the
    outputs for that sequence alone, unpadded; padded steps output zeros."""
    spec = {**kind, "units": 3, "go_backwards": go_backwards, **BIAS}
    rng = np.random.default_rng(2)
    x = padded_batch(rng, LENGTHS, 2)
    last = model_of([spec], (6, 2))
    steps = model_of([{**spec, "return_sequences": True}], (6, 2))
    steps.theta[:] = last.theta
    y_last, y_steps = last.forward(x).copy(), steps.forward(x).copy()
    for n, length in enumerate(LENGTHS):
        alone = model_of([spec], (length, 2))
        alone.theta[:] = last.theta
        np.testing.assert_allclose(y_last[n], alone.forward(x[n : n + 1, :length])[0], rtol=1e-12)
        alone_steps = model_of([{**spec, "return_sequences": True}], (length, 2))
        alone_steps.theta[:] = last.theta
        expected = alone_steps.forward(x[n : n + 1, :length])[0]
        if go_backwards:  # outputs come in reading order: the padding is read first, and outputs zeros
            np.testing.assert_array_equal(y_steps[n, : 6 - length], 0.0)
            np.testing.assert_allclose(y_steps[n, 6 - length :], expected, rtol=1e-12)
        else:
            np.testing.assert_allclose(y_steps[n, :length], expected, rtol=1e-12)
            np.testing.assert_array_equal(y_steps[n, length:], 0.0)


def check_model_gradients(model, x, tol=1e-6):
    """Finite differences of L = Σ model(x)·R over every element of θ (x may hold NaN padding)."""
    probe = np.random.default_rng(7).normal(size=(len(x), *model.output_shape))

    def loss():
        return float(np.sum(model.forward(x, training=True) * probe))

    model.forward(x, training=True)
    model.backward(probe.copy())
    analytic = model.grad.copy()
    numeric = numeric_grad(loss, model.theta)
    worst = {}
    offset = 0
    for name, param in model.named_params():
        size = param.size
        worst[name] = rel_error(analytic[offset : offset + size], numeric[offset : offset + size])
        offset += size
    bad = {k: v for k, v in worst.items() if not v < tol}
    assert not bad, f"relative errors {bad}"


# A time-distributed dense layer first: its kernel's gradient is the recurrent layer's dL/dx, and its bias
# makes the padded steps non-zero inputs that the mask must keep out.
STACKS = {
    "lstm": [{"type": "lstm", "units": 3, "return_sequences": True, **BIAS}],
    "lstm-last": [{"type": "lstm", "units": 3, **BIAS}],
    "gru-backwards": [{"type": "gru", "units": 3, "return_sequences": True, "go_backwards": True, **BIAS}],
    "gru-reset-before": [{"type": "gru", "units": 3, "reset_after": False, "return_sequences": True, **BIAS}],
    "rnn-backwards-last": [{"type": "rnn", "units": 3, "go_backwards": True, **BIAS}],
    "stacked": [
        {"type": "lstm", "units": 3, "return_sequences": True, **BIAS},
        {"type": "gru", "units": 2, "return_sequences": True, **BIAS},
        {"type": "rnn", "units": 2, **BIAS},
    ],
    "bidirectional-concat": [{"type": "bidirectional", "layer": {"type": "lstm", "units": 2, "return_sequences": True, **BIAS}}],
    "bidirectional-mul-last": [{"type": "bidirectional", "layer": {"type": "gru", "units": 2, **BIAS}, "merge": "mul"}],
    "bidirectional-then-pools": [
        {"type": "bidirectional", "layer": {"type": "rnn", "units": 2, "return_sequences": True, **BIAS}, "merge": "sum"},
        {"type": "dense", "units": 3, "activation": "tanh"},
        {"type": "global_maxpool1d"},
    ],
    "avgpool": [{"type": "lstm", "units": 3, "return_sequences": True, **BIAS}, {"type": "global_avgpool1d"}],
}


@pytest.mark.parametrize("name", list(STACKS))
def test_masked_batch_gradients_match_finite_differences(name):
    specs = [{"type": "dense", "units": 3, "bias_initializer": {"type": "ones"}}, *STACKS[name]]
    model = model_of(specs, (6, 2))
    x = padded_batch(np.random.default_rng(3), LENGTHS, 2)
    check_model_gradients(model, x)


def test_masked_steps_receive_no_gradient_and_padding_changes_nothing():
    layer = LAYERS.create({"type": "lstm", "units": 3, "return_sequences": True, **BIAS})
    model = Sequential([layer], (6, 2), dtype=np.float64)
    model.initialize(np.random.default_rng(0))
    layer.needs_input_grad = True
    x, mask = split_padding(padded_batch(np.random.default_rng(4), LENGTHS, 2))
    y = layer.forward(x, True, mask).copy()
    dx = layer.backward(np.ones_like(y)).copy()
    assert np.all(dx[~mask] == 0) and np.all(np.abs(dx[mask]) > 0)
    garbage = x.copy()
    garbage[~mask] = 1e3  # whatever sits in the padded steps
    np.testing.assert_array_equal(layer.forward(garbage, True, mask), y)


def test_time_poolings_ignore_padding():
    x = padded_batch(np.random.default_rng(5), LENGTHS, 3)
    for kind, reduce in (("global_avgpool1d", np.mean), ("global_maxpool1d", np.max)):
        y = model_of([{"type": kind}], (6, 3)).forward(x)
        for n, length in enumerate(LENGTHS):
            np.testing.assert_allclose(y[n], reduce(x[n, :length], axis=0), rtol=1e-12)


def test_keras_parameter_counts():
    for spec, count in (("lstm", 80_384), ("gru", 60_672), ("rnn", 20_096)):
        plan = MODELS.create({"type": "sequential", "layers": [{"type": spec, "units": 128}, {"type": "dense", "units": 10}]})
        assert sum(r.params for r in plan.plan((28, 28), 10, np.float32).rows) == count + 1290, spec
    layer = LAYERS.create({"type": "bidirectional", "layer": {"type": "lstm", "units": 64}})
    layer.build((28, 28))
    assert layer.count_params() == 2 * 4 * 64 * (28 + 64 + 1)
    assert sorted(layer.all_param_shapes()) == [
        "backward.bias", "backward.kernel", "backward.recurrent_kernel", "forward.bias", "forward.kernel", "forward.recurrent_kernel",
    ]


def test_unit_forget_bias_and_orthogonal_recurrent_kernel():
    model = model_of([{"type": "lstm", "units": 4}], (5, 3))
    lstm = model.layers[0]
    np.testing.assert_array_equal(lstm.params["bias"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    U = lstm.params["recurrent_kernel"]
    np.testing.assert_allclose(U @ U.T, np.eye(4), atol=1e-12)  # (4, 16): orthonormal rows


def test_a_model_whose_output_keeps_the_time_axis_is_refused_with_a_hint():
    kind = MODELS.create({"type": "sequential", "layers": [{"type": "lstm", "units": 8, "return_sequences": True}]})
    with pytest.raises(ConfigError, match="return_sequences: false.*global_avgpool1d") as info:
        kind.plan((6, 2), 3, np.float32)
    assert info.value.path == ("model", "layers", 0)


def test_recurrent_layers_refuse_images_and_bidirectional_refuses_other_layers():
    with pytest.raises(ConfigError, match="sequences"):
        MODELS.create({"type": "sequential", "layers": [{"type": "lstm", "units": 8}]}).plan((28, 28, 1), 10, np.float32)
    with pytest.raises(ConfigError, match="lstm, gru or rnn"):
        LAYERS.create({"type": "bidirectional", "layer": {"type": "dense", "units": 3}})


def test_compare_optimizers_trains_a_small_recurrent_model_with_minimisers(tmp_path, monkeypatch):
    """The full-batch minimisers and a first-order method on an RNN over 8×8 digits read as rows: every one lowers the
    objective from the same start, and the minimisers agree on a lower loss than Adam's few updates reach."""
    import nncli
    from helpers import make_digits, mlp_config

    monkeypatch.setattr("nncli.plots.plot_curves", lambda runs, path, title="": path.write_bytes(b"skipped"))
    config = mlp_config(make_digits(tmp_path / "digits", n_train=90, n_test=30))
    config["data"]["sequence"] = "rows"
    config["model"]["layers"] = [{"type": "rnn", "units": 3}, {"type": "dense", "units": 3}]
    config["compare"] = {"max_iterations": 15, "batch_size": 30, "optimizers": [{"type": "adam", "learning_rate": 0.01}, "bfgs", "lbfgs", "cg"]}
    runs = nncli.compare_optimizers(config, out=tmp_path / "o").comparison.runs
    start = runs[0].losses[0]
    assert all(run.losses[0] == start and run.final_loss < start for run in runs)
    assert max(run.final_loss for run in runs[1:]) < runs[0].final_loss


def test_time_gradient_norms_follow_the_linear_recurrence():
    """A linear RNN with no bias: dL/dh_t = g·(Uᵀ)^(T−t), so the recorded norm at every step has a closed form."""
    layer = LAYERS.create({"type": "rnn", "units": 3, "activation": "linear", "use_bias": False})
    model = Sequential([layer], (6, 2), dtype=np.float64)
    model.initialize(np.random.default_rng(0))
    layer.params["recurrent_kernel"][...] *= 0.7  # a contraction: the norms shrink towards the first step
    layer.record_time_gradients = True
    x, g = np.random.default_rng(1).normal(size=(4, 6, 2)), np.random.default_rng(2).normal(size=(4, 3))
    model.forward(x, training=True)
    model.backward(g.copy())
    U = layer.params["recurrent_kernel"]
    expected = [np.sqrt(np.sum((g @ np.linalg.matrix_power(U.T, 5 - t)) ** 2) / 4) for t in range(6)]
    np.testing.assert_allclose(layer.time_gradient_norms, expected, rtol=1e-12)
    assert expected[0] < expected[-1]


def test_log_gradients_writes_the_per_step_norms_of_each_recurrent_layer(tmp_path):
    import csv

    import nncli
    from helpers import make_digits, mlp_config

    config = mlp_config(make_digits(tmp_path / "digits", n_train=60, n_test=20), epochs=2, log_gradients=True)
    config["data"]["sequence"] = "rows"
    config["model"]["layers"] = [
        {"type": "bidirectional", "layer": {"type": "lstm", "units": 3, "return_sequences": True}},
        {"type": "rnn", "units": 3},
        {"type": "dense", "units": 3},
    ]
    nncli.train(config, out=tmp_path / "run")
    rows = list(csv.DictReader(open(tmp_path / "run" / "time_gradients.csv")))
    layers = ["0.bidirectional.forward", "0.bidirectional.backward", "1.rnn"]
    assert [(r["epoch"], r["layer"], r["step"]) for r in rows] == [
        (str(e), name, str(t)) for e in (1, 2) for name in layers for t in range(1, 9)
    ]
    assert all(float(r["grad_norm"]) > 0 for r in rows)
    assert (tmp_path / "run" / "time_gradients.png").stat().st_size > 0


@pytest.mark.parametrize(
    "layer,count,shape",
    [
        ("{type: lstm, units: 128}", "80,384", "(128,)"),
        ("{type: gru, units: 128, return_sequences: true}", "60,672", "(28, 128)"),
        ("{type: rnn, units: 128}", "20,096", "(128,)"),
    ],
)
def test_summary_of_the_rows_config_gives_keras_counts_and_shows_the_time_axis(layer, count, shape):
    from pathlib import Path

    from typer.testing import CliRunner

    from nncli.cli import app

    repo = Path(__file__).resolve().parent.parent
    head = "{type: global_maxpool1d}, " if "return_sequences" in layer else ""
    args = ["summary", str(repo / "configs" / "mnist_rows_lstm.yaml"), "--set", f"data.path={repo / 'datasets' / 'mnist'}",
            "--set", f"model.layers=[{layer}, {head}{{type: dense, units: 10}}]"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert count in result.stdout and shape in result.stdout and "(28, 28)" in result.stdout


def test_split_batches_give_the_whole_batch_gradient_with_masks():
    """Recurrent nets split evaluation batches over two threads (parallel.py), and training ones when a layer asks
    for it; each half finds its own mask."""
    from nncli import parallel
    from nncli.losses import LOSSES
    from nncli.objective import Objective

    specs = [
        {"type": "bidirectional", "layer": {"type": "lstm", "units": 3, "return_sequences": True, **BIAS}},
        {"type": "gru", "units": 3, **BIAS},
        {"type": "dense", "units": 3},
    ]
    split, whole = model_of(specs, (6, 2)), model_of(specs, (6, 2))
    assert parallel.can_split(split, training=False) and not parallel.can_split(split)
    split.layers[1].compute_bound = True  # as a conv layer is: training batches split too
    lengths = [6, 3, 5, 1, 2, 6, 4, 4] * 3
    x, y = padded_batch(np.random.default_rng(8), lengths, 2), np.arange(len(lengths)) % 3
    loss = LOSSES.create("cross_entropy")
    split_objective, whole_objective = Objective(split, loss), Objective(whole, LOSSES.create("cross_entropy"))
    whole_objective.splitter = None
    assert split_objective.splitter is not None and split_objective.splits(len(x))
    assert split_objective(x, y)[0] == pytest.approx(whole_objective(x, y)[0], rel=1e-12)
    np.testing.assert_allclose(split.grad, whole.grad, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(parallel.evaluation_forward(split)(x), whole.forward(x), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_mnist_rows_lstm_reaches_98_5_percent_test_accuracy_in_5_epochs(tmp_path):
    """The acceptance run: `nncli train configs/mnist_rows_lstm.yaml`, then `nncli eval` on the last checkpoint."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from nncli.cli import app

    repo = Path(__file__).resolve().parent.parent
    runner = CliRunner()
    config, data = repo / "configs" / "mnist_rows_lstm.yaml", repo / "datasets" / "mnist"
    result = runner.invoke(app, ["train", str(config), "--set", f"data.path={data}", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    result = runner.invoke(app, ["eval", last, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert report["n"] == 10_000 and report["accuracy"] >= 0.985, report["accuracy"]


@pytest.mark.parametrize(
    "after",
    [{"type": "global_avgpool1d"}, {"type": "global_maxpool1d"}, {"type": "lstm", "units": 2, **BIAS},
     {"type": "dense", "units": 2, "activation": "tanh"}],
    ids=lambda s: s["type"],
)
def test_a_go_backwards_sequence_feeds_the_next_layer_its_own_mask(after):
    """go_backwards outputs come in reading order (padding first): the next layer sees the mask reversed too, so a
    padded sequence still gives what it gives alone through a stack."""
    specs = [{"type": "gru", "units": 3, "go_backwards": True, "return_sequences": True, **BIAS}, after]
    if after["type"] == "dense":
        specs.append({"type": "global_avgpool1d"})
    x = padded_batch(np.random.default_rng(9), LENGTHS, 2)
    model = model_of(specs, (6, 2))
    y = model.forward(x).copy()
    for n, length in enumerate(LENGTHS):
        alone = model_of(specs, (length, 2))
        alone.theta[:] = model.theta
        np.testing.assert_allclose(y[n], alone.forward(x[n : n + 1, :length])[0], rtol=1e-10, atol=1e-12)
