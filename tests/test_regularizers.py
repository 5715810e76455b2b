"""Regularisation: penalty values and gradients, the penalised objective, evaluation, training and the CLI listing."""

import numpy as np
import pytest
from helpers import mlp_config, numeric_grad, rel_error
from typer.testing import CliRunner

import nncli
from nncli.cli import app
from nncli.data import Split
from nncli.losses import LOSSES
from nncli.metrics import evaluate
from nncli.models import Sequential
from nncli.objective import Objective, full_batch_objective
from nncli.regularizers import L1, L2, REGULARIZERS, L1L2

# Every registered regularizer, with options that make every term non-zero.
CASES = {
    "l1": {"type": "l1", "l1": 0.3},
    "l2": {"type": "l2", "l2": 0.3},
    "l1_l2": {"type": "l1_l2", "l1": 0.2, "l2": 0.05},
}


def test_every_regularizer_has_a_case():
    assert set(CASES) == set(REGULARIZERS.names())


def away_from_zero(shape, seed=0):
    """Random values with |w| > 0.1, so finite differences never straddle the kink of |w|."""
    w = np.random.default_rng(seed).normal(size=shape)
    return np.where(np.abs(w) < 0.1, np.sign(w) * 0.1 + w, w)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("l1", lambda w: 0.01 * np.abs(w).sum()),  # Keras defaults: 0.01
        ("l2", lambda w: 0.01 * (w**2).sum()),
        ({"type": "l1", "l1": 0.5}, lambda w: 0.5 * np.abs(w).sum()),
        ({"type": "l2", "l2": 0.5}, lambda w: 0.5 * (w**2).sum()),  # λ·Σw², no ½
        ({"type": "l1_l2", "l1": 0.2, "l2": 0.3}, lambda w: 0.2 * np.abs(w).sum() + 0.3 * (w**2).sum()),
        ("l1_l2", lambda w: 0.0),  # Keras: both coefficients default to 0
    ],
)
def test_penalty_values_follow_the_keras_convention(spec, expected):
    w = away_from_zero((4, 3))
    assert REGULARIZERS.create(spec).penalty(w) == pytest.approx(expected(w), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", sorted(CASES))
def test_regularizer_gradients_match_finite_differences(name):
    reg = REGULARIZERS.create(CASES[name])
    w = away_from_zero((5, 3), seed=1)
    grad = np.zeros_like(w)
    reg.add_gradient(w, grad)
    assert rel_error(grad, numeric_grad(lambda: reg.penalty(w), w)) < 1e-6
    scaled = np.ones_like(w)
    reg.add_gradient(w, scaled, scale=0.25)  # adds into grad, times scale
    np.testing.assert_allclose(scaled, 1.0 + 0.25 * grad, rtol=1e-12)


def test_l1_subgradient_is_zero_at_zero():
    grad = np.zeros(3)
    L1(0.5).add_gradient(np.array([-2.0, 0.0, 3.0]), grad)
    np.testing.assert_array_equal(grad, [-0.5, 0.0, 0.5])


def test_zero_coefficients_are_inactive():
    assert not L1(0.0).active and not L2(0.0).active and not L1L2().active
    assert L1L2(l2=1e-4).active


# -- the penalised objective ---------------------------------------------------
SPECS = [
    {
        "type": "dense", "units": 5, "activation": "tanh",
        "kernel_regularizer": {"type": "l1_l2", "l1": 0.01, "l2": 0.02},
        "activity_regularizer": {"type": "l1", "l1": 0.05},
    },
    {"type": "dense", "units": 4, "activation": "sigmoid", "activity_regularizer": {"type": "l2", "l2": 0.03}},
    {"type": "dense", "units": 3, "kernel_regularizer": {"type": "l2", "l2": 0.1}},
]


def regularized_model(weight_decay=0.01, specs=SPECS, input_shape=(6,)):
    model = Sequential.from_specs(specs, input_shape, np.float64, weight_decay=weight_decay)
    model.initialize(np.random.default_rng(0))
    model.theta += 0.1 * np.random.default_rng(1).normal(size=model.theta.shape)  # non-zero biases too
    return model


def batch(n=7, features=6, classes=3, seed=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)), rng.integers(0, classes, n)


WITH_LAYERS = [  # the penalties next to the issue-5 layers, random ones included
    {"type": "dense", "units": 5, "activation": "prelu", "kernel_regularizer": {"type": "l1", "l1": 0.02}},
    {"type": "batchnorm", "momentum": 0.9},
    {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 4, "activation": "rrelu", "activity_regularizer": {"type": "l2", "l2": 0.05}},
    {"type": "dense", "units": 3, "activation": "swish", "activity_regularizer": {"type": "l1", "l1": 0.05}},
]


CONV = [  # penalties on conv kernels and outputs, next to pooling, batchnorm and dropout
    {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "tanh",
     "kernel_regularizer": {"type": "l2", "l2": 0.05}, "activity_regularizer": {"type": "l1", "l1": 0.02}},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "batchnorm", "momentum": 0.9},
    {"type": "conv2d", "filters": 2, "kernel_size": 2, "activation": "elu", "kernel_regularizer": {"type": "l1", "l1": 0.02}},
    {"type": "dropout", "rate": 0.25},
    "flatten",
    {"type": "dense", "units": 3},
]
SPLIT_CONV = [  # no state, no randomness, no activity penalty: batches are split across threads
    {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu", "kernel_regularizer": {"type": "l2", "l2": 0.05}},
    {"type": "maxpool2d", "pool_size": 2},
    "flatten",
    {"type": "dense", "units": 3, "kernel_regularizer": {"type": "l1_l2", "l1": 0.01, "l2": 0.02}},
]
GRADIENT_CASES = {
    "dense": (SPECS, (6,), 7),
    "with new layers": (WITH_LAYERS, (6,), 7),
    "conv": (CONV, (6, 6, 1), 5),
    "conv, batch split": (SPLIT_CONV, (6, 6, 2), 20),
}


@pytest.mark.parametrize("specs, input_shape, n", GRADIENT_CASES.values(), ids=GRADIENT_CASES)
def test_train_step_gradient_includes_every_penalty(specs, input_shape, n):
    """∇θ of train_step (kernel and activity regularizers, weight decay) against finite differences of its value."""
    model, loss = regularized_model(specs=specs, input_shape=input_shape), LOSSES.create("cross_entropy")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(n, *input_shape)), rng.integers(0, 3, n)
    step = Objective(model, loss)
    assert step.splits(n) == (specs is SPLIT_CONV)

    def objective():
        model.seed_layers(np.random.SeedSequence(7))  # the same dropout mask and rrelu slopes every time
        return step(x, y)[0]

    objective()
    assert min((np.abs(out).min() for out in model._outputs.values()), default=1.0) > 1e-5  # |y| is smooth where sampled (EPS steps move it far less)
    analytic = model.grad.copy()
    numeric = numeric_grad(objective, model.theta)
    assert rel_error(analytic, numeric) < 1e-6


def test_train_step_value_is_data_loss_plus_penalties():
    model, loss = regularized_model(), LOSSES.create("cross_entropy")
    assert model.regularized and model.activity_regularized
    x, y = batch()
    value, _ = Objective(model, loss)(x, y)
    data = loss.forward(model.forward(x, training=True), y)
    weights, activity = model.penalty(), model.activity_penalty()
    assert weights > 0.01 and activity > 0.01
    assert value == pytest.approx(data + weights + activity, rel=1e-12)
    assert full_batch_objective(model, loss, x, y)(model.theta)[0] == pytest.approx(value, rel=1e-12)  # what full-batch minimisers see


def test_weight_penalty_is_exactly_the_configured_terms():
    model = regularized_model(weight_decay=0.01)
    W0, W1, W2 = (layer.params["W"] for layer in model.layers)
    expected = (
        0.01 * np.abs(W0).sum() + 0.02 * (W0**2).sum()  # layer 0 kernel_regularizer
        + 0.1 * (W2**2).sum()  # layer 2 kernel_regularizer
        + 0.5 * 0.01 * sum((W**2).sum() for W in (W0, W1, W2))  # weight decay: ½·wd·Σw² on every kernel
    )
    assert model.penalty() == pytest.approx(expected, rel=1e-12)


def test_activity_penalty_is_a_mean_over_the_batch():
    model = regularized_model()
    x, _ = batch(n=9)
    h0 = model.layers[0].forward(x).copy()
    h1 = model.layers[1].forward(h0).copy()
    expected = 0.05 * np.abs(h0).sum() / 9 + 0.03 * (h1**2).sum() / 9
    model.forward(x, training=True)
    assert model.activity_penalty() == pytest.approx(expected, rel=1e-12)


DECAY_CASES = {
    "dense": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 3}],
    "prelu and batchnorm": [  # alpha, gamma and beta are not kernels
        {"type": "dense", "units": 4, "activation": {"type": "prelu"}},
        {"type": "batchnorm"},
        {"type": "prelu", "shared": True},
        {"type": "dense", "units": 3},
    ],
}


@pytest.mark.parametrize("specs", DECAY_CASES.values(), ids=DECAY_CASES)
def test_weight_decay_adds_wd_times_w_to_kernels_only(specs):
    """torch convention: ∇ gains wd·W on kernels; biases (and other non-kernel parameters) are not decayed."""
    plain = regularized_model(0.0, specs)
    decayed = regularized_model(0.1, specs)
    np.testing.assert_array_equal(plain.theta, decayed.theta)
    loss = LOSSES.create("cross_entropy")
    x, y = batch()
    v0, _ = Objective(plain, loss)(x, y)
    v1, _ = Objective(decayed, loss)(x, y)
    diff = dict(decayed.named_grads())
    for (key, g0), (_, theta) in zip(plain.named_grads(), plain.named_params()):
        expected = 0.1 * theta if key.endswith("/W") else 0.0 * theta
        np.testing.assert_allclose(diff[key] - g0, expected, atol=1e-12, err_msg=key)
    kernels = sum((w**2).sum() for k, w in plain.named_params() if k.endswith("/W"))
    assert v1 - v0 == pytest.approx(0.05 * kernels, rel=1e-9)


def test_no_regularizer_costs_nothing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a penalty was computed for an unregularised model")

    for cls in (L1, L2, L1L2):
        monkeypatch.setattr(cls, "penalty", fail)
        monkeypatch.setattr(cls, "add_gradient", fail)
    zero = [{"type": "dense", "units": 4, "activation": "relu", "kernel_regularizer": {"type": "l2", "l2": 0.0}}, {"type": "dense", "units": 3}]
    model = regularized_model(0.0, zero)
    assert not model.regularized and not model.activity_regularized
    loss = LOSSES.create("cross_entropy")
    x, y = batch()
    value, _ = Objective(model, loss)(x, y)
    assert value == pytest.approx(loss.forward(model.forward(x, training=True), y))
    assert evaluate(model, loss, Split(x, y), 3).penalty == 0.0


def test_evaluate_reports_data_loss_plus_penalty():
    model, loss = regularized_model(), LOSSES.create("cross_entropy")
    x, y = batch(n=7)
    result = evaluate(model, loss, Split(x, y), 3, batch_size=4)  # two batches: 4 + 3
    data = loss.forward(model.forward(x, training=False), y)
    penalty = model.penalty() + model.activity_penalty()  # the whole set in one batch: the same per-sample mean
    assert result.penalty == pytest.approx(penalty, rel=1e-12) and penalty > 0.02
    assert result.loss == pytest.approx(data + penalty, rel=1e-12)


# -- through the config --------------------------------------------------------
def regularized_config(digits, weight_decay=0.01, **training):
    config = mlp_config(digits, weight_decay=weight_decay, **training)
    config["model"]["layers"][1].update(kernel_regularizer={"type": "l2", "l2": 1e-3}, activity_regularizer="l1")
    return config


def test_a_regularized_run_records_its_penalties_and_eval_reproduces_them(tmp_path, digits):
    result = nncli.train(regularized_config(digits, epochs=1), out=tmp_path / "run")
    resolved = result.experiment.resolved()
    assert resolved["training"]["weight_decay"] == 0.01
    layer = resolved["model"]["layers"][1]
    assert layer["kernel_regularizer"] == {"type": "l2", "l2": 1e-3} and layer["activity_regularizer"] == {"type": "l1", "l1": 0.01}
    report = nncli.evaluate([result.final_checkpoint], split="val").models[0].evaluation
    assert report.penalty > 0
    assert report.loss == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)


def test_weight_decay_shrinks_the_weights(tmp_path, digits):
    def kernel_norm(weight_decay):
        result = nncli.train(mlp_config(digits, epochs=2, weight_decay=weight_decay), out=tmp_path / f"wd{weight_decay}")
        arrays = nncli.read_checkpoint(result.final_checkpoint).arrays
        return sum(float((arrays[k] ** 2).sum()) for k in arrays if k.endswith("/W"))

    assert kernel_norm(0.5) < 0.5 * kernel_norm(0.0)


def test_components_lists_regularizers():
    result = CliRunner().invoke(app, ["components", "regularizer"])
    assert result.exit_code == 0, result.output
    for name in ("l1", "l2", "l1_l2"):
        assert name in result.stdout


def test_kernels_of_child_layers_are_penalised_too():
    """A layer built from sub-layers (as dense holds its activation): their kernels are named '<child>.W' and decayed."""
    from nncli.layers import LAYERS, Layer

    class Wrapper(Layer):
        def __init__(self):
            super().__init__()
            self.children["inner"] = LAYERS.create({"type": "dense", "units": 2, "kernel_regularizer": {"type": "l1", "l1": 0.5}})

        def build(self, input_shape):
            return self.children["inner"].build(input_shape)

    model = Sequential([Wrapper()], (3,), np.float64, weight_decay=0.2)
    model.theta[...] = np.random.default_rng(0).normal(size=model.theta.shape)
    W = dict(model.named_params())["0.layer/inner.W"]
    assert model.penalty() == pytest.approx(0.5 * np.abs(W).sum() + 0.1 * (W**2).sum(), rel=1e-12)


def test_activity_penalty_on_a_conv_keeps_the_batch_whole_and_the_relu_in_place():
    """The penalty reads the conv's own activated output over the whole batch: no half-batch threads, no ReLU moved into the pool."""
    specs = [
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu", "activity_regularizer": {"type": "l1", "l1": 0.1}},
        {"type": "maxpool2d"},
        "flatten",
        {"type": "dense", "units": 3},
    ]
    model = regularized_model(weight_decay=0.0, specs=specs, input_shape=(6, 6, 1))
    assert not Objective(model, LOSSES.create("cross_entropy")).splits(32)
    assert not model.layers[0].activation_deferred
    x = np.random.default_rng(3).normal(size=(32, 6, 6, 1))
    model.forward(x, training=True)
    assert model.activity_penalty() == pytest.approx(0.1 * np.abs(model._outputs[0]).sum() / 32)
    assert (model._outputs[0] >= 0).all() and (model._outputs[0] == 0).any()  # the ReLU was applied in the conv
    plain = regularized_model(weight_decay=0.0, specs=[{**specs[0], "activity_regularizer": None}, *specs[1:]], input_shape=(6, 6, 1))
    assert Objective(plain, LOSSES.create("cross_entropy")).splits(32) and plain.layers[0].activation_deferred
