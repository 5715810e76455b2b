"""Every layer and activation: finite-difference gradient checks (float64) and forward behaviour."""

import math

import helpers
import numpy as np
import pytest
from helpers import build_layer, check_layer_gradients

from nncli.errors import ConfigError
from nncli.layers import ACTIVATIONS, LAYERS
from nncli.models import Sequential

# name -> list of (spec, per-sample input shape). Every registered layer must appear here.
CASES = {
    "dense": [
        ({"type": "dense", "units": 4}, (5,)),
        ({"type": "dense", "units": 3, "activation": "tanh", "use_bias": False}, (2,)),
        ({"type": "dense", "units": 3, "activation": {"type": "leaky_relu", "alpha": 0.2}}, (4,)),
    ],
    "flatten": [({"type": "flatten"}, (2, 3, 2))],
    "reshape": [({"type": "reshape", "target_shape": [3, -1]}, (6,)), ({"type": "reshape", "target_shape": [2, 2, 1]}, (2, 2))],
    "conv2d": [
        ({"type": "conv2d", "filters": 2, "kernel_size": [3, 2], "activation": "tanh"}, (5, 4, 3)),
        ({"type": "conv2d", "filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, (5, 6, 2)),
        ({"type": "conv2d", "filters": 2, "kernel_size": [2, 3], "strides": [2, 1], "use_bias": False}, (5, 5, 2)),
        # one input channel takes the transposed-im2col path (bias folded into the GEMM)
        ({"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "sigmoid"}, (4, 5, 1)),
        ({"type": "conv2d", "filters": 2, "kernel_size": 2, "strides": [1, 2], "padding": "same", "use_bias": False}, (4, 5, 1)),
    ],
    "maxpool2d": [
        ({"type": "maxpool2d"}, (5, 6, 2)),
        ({"type": "maxpool2d", "pool_size": 3, "strides": 2, "padding": "same"}, (5, 6, 2)),
        ({"type": "maxpool2d", "pool_size": [2, 3], "strides": [1, 2]}, (4, 7, 1)),
    ],
    "avgpool2d": [
        ({"type": "avgpool2d"}, (5, 5, 2)),
        ({"type": "avgpool2d", "pool_size": 3, "strides": 2, "padding": "same"}, (5, 6, 2)),
        ({"type": "avgpool2d", "pool_size": 2, "strides": 1}, (3, 4, 1)),
    ],
    "global_avgpool2d": [({"type": "global_avgpool2d"}, (3, 4, 2))],
    "linear": [({"type": "linear"}, (4,))],
    "sigmoid": [({"type": "sigmoid"}, (6,))],
    "tanh": [({"type": "tanh"}, (6,))],
    "relu": [({"type": "relu"}, (6,))],
    "leaky_relu": [({"type": "leaky_relu", "alpha": 0.1}, (6,))],
    "softmax": [({"type": "softmax"}, (5,)), ({"type": "softmax"}, (2, 3))],
    "elu": [({"type": "elu"}, (6,)), ({"type": "elu", "alpha": 0.5}, (2, 3))],
    "softplus": [({"type": "softplus"}, (6,))],
    "swish": [({"type": "swish"}, (6,)), ({"type": "swish", "beta": 2.5}, (2, 3))],
    "gelu": [({"type": "gelu"}, (7,)), ({"type": "gelu", "approximate": True}, (7,))],
    "prelu": [
        ({"type": "prelu"}, (5,)),
        ({"type": "prelu", "shared": True}, (5,)),
        ({"type": "prelu"}, (2, 3, 4)),  # NHWC: one alpha per channel
        ({"type": "prelu", "initial_alpha": -0.3}, (4,)),  # a negative slope: y's sign is not x's
    ],
    "rrelu": [({"type": "rrelu"}, (6,)), ({"type": "rrelu", "lower": 0.0, "upper": 0.9}, (2, 3))],
    "dropout": [({"type": "dropout", "rate": 0.3}, (6,)), ({"type": "dropout", "rate": 0.5}, (2, 2, 3))],
    "batchnorm": [
        ({"type": "batchnorm"}, (4,)),
        ({"type": "batchnorm", "momentum": 0.9, "epsilon": 1e-5}, (3, 3, 2)),  # NHWC: statistics over N, H, W
    ],
}
# Recurrent layers: random non-zero biases, T >= 5, the loss on every step where return_sequences (Σ y·R).
# Masks, stacks and the wrapper's merges are checked in tests/test_recurrent.py.
_BIAS = {"bias_initializer": {"type": "random_normal", "stddev": 0.5}}
CASES.update(
    {
        "lstm": [
            ({"type": "lstm", "units": 3, "return_sequences": True, **_BIAS}, (6, 2)),
            ({"type": "lstm", "units": 2, "go_backwards": True, "unit_forget_bias": False, **_BIAS}, (5, 3)),
            ({"type": "lstm", "units": 3, "return_sequences": True, "dropout": 0.3, "recurrent_dropout": 0.4, **_BIAS}, (5, 2)),
            ({"type": "lstm", "units": 2, "return_sequences": True, "activation": "relu", "recurrent_activation": "tanh", **_BIAS}, (5, 2)),
        ],
        "gru": [
            ({"type": "gru", "units": 3, "return_sequences": True, **_BIAS}, (6, 2)),
            ({"type": "gru", "units": 3, "return_sequences": True, "reset_after": False, **_BIAS}, (5, 2)),
            ({"type": "gru", "units": 2, "go_backwards": True, "recurrent_dropout": 0.3, "dropout": 0.2, **_BIAS}, (5, 3)),
            ({"type": "gru", "units": 2, "return_sequences": True, "reset_after": False, "recurrent_dropout": 0.3, **_BIAS}, (5, 3)),
        ],
        "rnn": [
            ({"type": "rnn", "units": 3, "return_sequences": True, **_BIAS}, (6, 2)),
            ({"type": "rnn", "units": 3, "go_backwards": True, "activation": "sigmoid", "recurrent_dropout": 0.3, **_BIAS}, (5, 2)),
        ],
        "bidirectional": [
            ({"type": "bidirectional", "layer": {"type": "lstm", "units": 2, "return_sequences": True, **_BIAS}}, (5, 2)),
            ({"type": "bidirectional", "layer": {"type": "gru", "units": 2, **_BIAS}, "merge": "mul"}, (5, 3)),
            ({"type": "bidirectional", "layer": {"type": "rnn", "units": 2, "return_sequences": True, **_BIAS}, "merge": "ave"}, (5, 2)),
            ({"type": "bidirectional", "layer": {"type": "lstm", "units": 2, "dropout": 0.2, **_BIAS}, "merge": "sum"}, (5, 2)),
        ],
        "global_avgpool1d": [({"type": "global_avgpool1d"}, (5, 3))],
        "global_maxpool1d": [({"type": "global_maxpool1d"}, (5, 3))],
    }
)
CASES["dense"] += [
    ({"type": "dense", "units": 3, "activation": "tanh"}, (5, 4)),  # on a sequence: every step
    ({"type": "dense", "units": 3, "activation": {"type": "prelu"}}, (4,)),
    ({"type": "dense", "units": 3, "activation": "rrelu"}, (4,)),
    ({"type": "dense", "units": 3, "activation": "gelu"}, (4,)),
    ({"type": "dense", "units": 3, "activation": "elu"}, (4,)),
]


def test_every_layer_has_a_gradient_check():
    assert set(CASES) == set(LAYERS.names())


def test_every_activation_is_a_layer_with_a_check():
    assert set(ACTIVATIONS.names()) <= set(CASES)


@pytest.mark.parametrize(
    "spec,shape", [case for cases in CASES.values() for case in cases], ids=lambda v: str(v.get("type")) if isinstance(v, dict) else str(v)
)
def test_gradients_match_finite_differences(spec, shape):
    check_layer_gradients(spec, shape, batch=3)


def test_relu_family_kink_is_not_sampled(monkeypatch):
    # finite differences straddling 0 would be wrong; make sure the random inputs keep clear of it
    x = np.array([[-1.0, -0.5, 0.5, 2.0]])
    check_layer_gradients({"type": "relu"}, (4,), x=x.copy())
    check_layer_gradients({"type": "leaky_relu"}, (4,), x=x.copy())
    inputs = []
    numeric_grad = helpers.numeric_grad

    def recording(f, array, eps=helpers.EPS):
        inputs.append(array.copy())
        return numeric_grad(f, array, eps)

    monkeypatch.setattr(helpers, "numeric_grad", recording)
    for name in ("relu", "leaky_relu", "prelu", "rrelu", "elu"):  # a kink in f or f' at 0
        for spec, shape in CASES[name]:
            inputs.clear()
            check_layer_gradients(spec, shape, batch=3)  # as test_gradients_match_finite_differences
            assert np.abs(inputs[0]).min() > 100 * helpers.EPS, spec  # the first array differentiated is x


@pytest.mark.parametrize(
    "name,fn",
    [
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("tanh", np.tanh),
        ("relu", lambda x: np.maximum(x, 0)),
        ("leaky_relu", lambda x: np.where(x > 0, x, 0.01 * x)),
        ("linear", lambda x: x),
        ("softmax", lambda x: np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)),
    ],
)
def test_activation_values(name, fn):
    layer, _ = build_layer(name, (7,))
    x = np.random.default_rng(0).normal(size=(4, 7)) * 3
    np.testing.assert_allclose(layer.forward(x), fn(x), rtol=1e-12, atol=1e-12)


def test_sigmoid_and_softmax_do_not_overflow():
    sig, _ = build_layer("sigmoid", (3,))
    soft, _ = build_layer("softmax", (3,))
    x = np.array([[-1000.0, 0.0, 1000.0]])
    np.testing.assert_array_equal(sig.forward(x), [[0.0, 0.5, 1.0]])
    assert np.isfinite(soft.forward(x)).all()


def test_dense_matches_contract_layout():
    layer, model = build_layer({"type": "dense", "units": 3}, (2,))
    W, b = layer.params["W"], layer.params["b"]
    assert W.shape == (2, 3) and b.shape == (3,)
    x = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(layer.forward(x), x @ W + b)
    assert [k for k, _ in model.named_params()] == ["0.dense/W", "0.dense/b"]


def test_params_and_grads_are_views_into_theta():
    model = Sequential.from_specs([{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dense", "units": 2}], (3,), np.float64)
    model.initialize(np.random.default_rng(0))
    for layer in model.layers:
        for k in layer.params:
            assert np.shares_memory(layer.params[k], model.theta)
            assert np.shares_memory(layer.grads[k], model.grad)
    model.theta[:] = 0.5
    assert (model.layers[1].params["W"] == 0.5).all()


def test_default_kernel_initializer_follows_the_activation():
    relu = LAYERS.create({"type": "dense", "units": 4, "activation": "relu"})
    sig = LAYERS.create({"type": "dense", "units": 4, "activation": "sigmoid"})
    assert relu.spec["kernel_initializer"] == "he_uniform"
    assert sig.spec["kernel_initializer"] == "xavier_uniform"


def test_dense_on_images_needs_flatten_and_names_the_layer():
    with pytest.raises(ConfigError) as err:
        Sequential.from_specs([{"type": "dense", "units": 4}], (28, 28, 1))
    assert err.value.path == ("model", "layers", 0)
    assert "add a flatten layer" in str(err.value)


def test_first_layer_skips_input_gradient():
    model = Sequential.from_specs([{"type": "dense", "units": 2}, {"type": "dense", "units": 2}], (3,), np.float64)
    assert model.layers[0].needs_input_grad is False and model.layers[1].needs_input_grad is True


def test_parameter_count_of_the_classic_digit_net():
    model = Sequential.from_specs(
        [{"type": "flatten"}, {"type": "dense", "units": 16, "activation": "sigmoid"},
         {"type": "dense", "units": 16, "activation": "sigmoid"}, {"type": "dense", "units": 10}],
        (28, 28, 1),
    )
    assert model.num_params == 13_002


# -- activations added for issue 5 ----------------------------------------------------
ndtr = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)), otypes=[np.float64])  # reference Φ


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize(
    "spec,fn",
    [
        ("elu", lambda x: np.where(x > 0, x, np.exp(x) - 1)),
        ({"type": "elu", "alpha": 0.5}, lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
        ("softplus", lambda x: np.log1p(np.exp(x))),
        ("swish", lambda x: x * _sigmoid(x)),
        ("silu", lambda x: x * _sigmoid(x)),
        ({"type": "swish", "beta": 2.0}, lambda x: x * _sigmoid(2 * x)),
        ({"type": "gelu"}, lambda x: x * ndtr(x)),
        ({"type": "gelu", "approximate": True}, lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
        ("prelu", lambda x: np.where(x > 0, x, 0.25 * x)),
    ],
    ids=str,
)
def test_new_activation_values(spec, fn):
    layer, _ = build_layer(spec, (7,))
    x = np.random.default_rng(0).normal(size=(4, 7)) * 3
    np.testing.assert_allclose(layer.forward(x), fn(x), rtol=1e-13, atol=1e-14)


def test_new_activations_do_not_overflow():
    x = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        for name in ("elu", "softplus", "swish", "gelu", {"type": "gelu", "approximate": True}, "prelu"):
            layer, _ = build_layer(name, (5,))
            y = layer.forward(x, training=True)
            assert np.isfinite(y).all(), name
            assert np.isfinite(layer.backward(np.ones_like(x))).all(), name
    softplus, _ = build_layer("softplus", (5,))
    np.testing.assert_allclose(softplus.forward(x), [[0.0, np.log1p(np.exp(-30.0)), np.log(2.0), 30.0, 1000.0]], rtol=1e-14, atol=0)


def test_gelu_tanh_form_is_close_to_the_exact_one():
    exact, _ = build_layer("gelu", (1000,))
    approx, _ = build_layer({"type": "gelu", "approximate": True}, (1000,))
    x = np.linspace(-6, 6, 1000)[None]
    diff = np.abs(exact.forward(x) - approx.forward(x))
    assert 1e-5 < diff.max() < 1e-3  # close, and really a different function


def test_relu_family_gets_he_initialisation():
    for name in ("prelu", "rrelu", "elu", "gelu", "swish"):
        assert LAYERS.create({"type": "dense", "units": 2, "activation": name}).spec["kernel_initializer"] == "he_uniform", name
    for name in ("softplus",):
        assert LAYERS.create({"type": "dense", "units": 2, "activation": name}).spec["kernel_initializer"] == "xavier_uniform"


def test_prelu_alpha_per_channel_or_shared_and_named_under_dense():
    model = Sequential.from_specs([{"type": "dense", "units": 3, "activation": "prelu"}, {"type": "prelu", "shared": True}], (2,), np.float64)
    model.initialize(np.random.default_rng(0))
    params = dict(model.named_params())
    assert list(params) == ["0.dense/W", "0.dense/b", "0.dense/act.alpha", "1.prelu/alpha"]
    assert params["0.dense/act.alpha"].shape == (3,) and params["1.prelu/alpha"].shape == (1,)
    assert (params["0.dense/act.alpha"] == 0.25).all() and (params["1.prelu/alpha"] == 0.25).all()
    image, _ = build_layer("prelu", (2, 2, 3))
    image.params["alpha"][...] = [0.1, 0.2, 0.3]
    x = -np.ones((1, 2, 2, 3))
    np.testing.assert_array_equal(image.forward(x)[0, 1, 1], [-0.1, -0.2, -0.3])


def test_prelu_learns_its_slope():
    """Fit y = prelu_0.6(x) from alpha = 0.25: gradient descent on alpha alone reaches 0.6."""
    layer, model = build_layer({"type": "prelu", "shared": True}, (5,))
    x = np.random.default_rng(0).normal(size=(20, 5))
    target = np.where(x > 0, x, 0.6 * x)
    for _ in range(200):
        y = layer.forward(x, training=True)
        layer.backward((y - target) / len(x))
        model.theta -= 0.5 * model.grad
    assert layer.params["alpha"][0] == pytest.approx(0.6, abs=1e-6)


def test_rrelu_draws_slopes_in_training_and_uses_the_mean_in_evaluation():
    layer, model = build_layer({"type": "rrelu", "lower": 0.1, "upper": 0.3}, (1000,))
    layer.rng = np.random.default_rng(5)
    x = np.random.default_rng(0).normal(size=(4, 1000))
    before = layer.rng.bit_generator.state
    y_eval = layer.forward(x, training=False).copy()
    assert layer.rng.bit_generator.state == before  # evaluation draws nothing
    np.testing.assert_allclose(y_eval, np.where(x > 0, x, 0.2 * x))
    y = layer.forward(x, training=True)
    neg = x < 0
    slopes = y[neg] / x[neg]
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.05  # per element, spread over the range
    np.testing.assert_array_equal(y[~neg], x[~neg])
    assert layer.rng.bit_generator.state != before


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize(
    "spec,negative_slope",
    [
        ("relu", 0.0),
        ({"type": "leaky_relu", "alpha": 0.1}, 0.1),
        ({"type": "elu", "alpha": 0.5}, 0.5),  # alpha·e⁰
        ({"type": "prelu", "initial_alpha": 0.25}, 0.25),
        ({"type": "rrelu", "lower": 0.2, "upper": 0.2}, 0.2),  # one slope, so training draws it too
    ],
    ids=str,
)
def test_relu_family_takes_the_negative_side_slope_at_exactly_zero(spec, negative_slope, training):
    """At x = ±0, f = 0 and f' is the slope for x < 0: x > 0 is the positive branch (as torch's relu, leaky_relu, elu, prelu, rrelu)."""
    layer, _ = build_layer(spec, (4,))
    x = np.array([[-2.0, -0.0, 0.0, 3.0]])
    y = layer.forward(x.copy(), training=training)
    assert np.all(y[0, 1:3] == 0.0) and y[0, 3] == 3.0
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx[0, 1:], [negative_slope, negative_slope, 1.0])


def test_rrelu_draws_its_slope_at_zero_in_training():
    layer, _ = build_layer({"type": "rrelu", "lower": 0.1, "upper": 0.3}, (1000,))
    layer.forward(np.zeros((2, 1000)), training=True)
    dx = layer.backward(np.ones((2, 1000)))
    assert dx.min() >= 0.1 and dx.max() <= 0.3 and dx.std() > 0.05  # the negative side's drawn slopes, never 1


def test_rrelu_bounds_are_checked():
    with pytest.raises(ConfigError, match=r"rrelu: lower must not exceed upper, got lower=0.5, upper=0.2"):
        LAYERS.create({"type": "rrelu", "lower": 0.5, "upper": 0.2}, ("model", "layers", 3))
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\], got 1.5"):
        LAYERS.create({"type": "rrelu", "upper": 1.5})


@pytest.mark.parametrize(
    "spec,shape",
    [
        ({"type": "dropout", "rate": 0.4}, (5,)),
        ({"type": "rrelu"}, (6,)),
        ({"type": "dense", "units": 3, "activation": "rrelu"}, (4,)),
        ({"type": "batchnorm"}, (4,)),
        ({"type": "batchnorm"}, (2, 2, 3)),
    ],
    ids=str,
)
def test_evaluation_mode_gradients(spec, shape):
    def running_stats(layer):
        if "running_mean" in layer.state:
            rng = np.random.default_rng(3)
            layer.state["running_mean"][...] = rng.normal(size=layer.state["running_mean"].shape)
            layer.state["running_var"][...] = rng.uniform(0.5, 2.0, size=layer.state["running_var"].shape)
            layer.params["gamma"][...] = rng.uniform(0.5, 2.0, size=layer.params["gamma"].shape)

    check_layer_gradients(spec, shape, batch=3, training=False, setup=running_stats)


# -- dropout ----------------------------------------------------------------------------
def test_dropout_is_inverted_and_the_identity_in_evaluation():
    layer, _ = build_layer({"type": "dropout", "rate": 0.25}, (100, 10))
    layer.rng = np.random.default_rng(1)
    x = np.random.default_rng(0).uniform(1, 2, size=(20, 100, 10))
    before = layer.rng.bit_generator.state
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    assert layer.rng.bit_generator.state == before
    y = layer.forward(x, training=True)
    dropped = y == 0
    assert dropped.mean() == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.75)  # survivors scaled by 1/(1 − rate)
    g = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(g == 0, dropped)
    np.testing.assert_allclose(g[~dropped], 1 / 0.75)


def test_dropout_masks_come_from_the_seeded_layer_generator():
    def masks(seed):
        model = Sequential.from_specs([{"type": "dense", "units": 50}, {"type": "dropout", "rate": 0.5}], (3,), np.float64)
        model.initialize(np.random.default_rng(0))
        model.seed_layers(np.random.SeedSequence(seed))
        x = np.ones((4, 3))
        return [model.forward(x, training=True) == 0 for _ in range(2)]

    a, b, c = masks(0), masks(0), masks(1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[0] != a[1]).any() and (a[0] != c[0]).any()


def test_dropout_rate_must_be_below_one():
    with pytest.raises(ConfigError, match=r"rate: must be in \[0, 1\), got 1.0"):
        LAYERS.create({"type": "dropout", "rate": 1.0}, ("model", "layers", 1))


# -- batch normalisation ------------------------------------------------------------------
def test_batchnorm_training_normalises_each_channel_and_updates_running_statistics():
    layer, model = build_layer({"type": "batchnorm", "momentum": 0.9, "epsilon": 1e-5}, (4, 4, 3))
    x = np.random.default_rng(0).normal(loc=[1.0, -2.0, 5.0], scale=[0.5, 2.0, 3.0], size=(6, 4, 4, 3))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), x.var(axis=(0, 1, 2)) / (x.var(axis=(0, 1, 2)) + 1e-5), rtol=1e-12)
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(layer.state["running_mean"], 0.1 * flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.state["running_var"], 0.9 + 0.1 * flat.var(axis=0, ddof=1), rtol=1e-12)  # unbiased
    assert [k for k, _ in model.named_params()] == ["0.batchnorm/gamma", "0.batchnorm/beta"]
    assert [k for k, _ in model.named_state()] == ["0.batchnorm/running_mean", "0.batchnorm/running_var"]


def test_batchnorm_evaluation_uses_running_statistics_and_changes_nothing():
    layer, _ = build_layer({"type": "batchnorm", "epsilon": 1e-3}, (2, 2, 3))
    rng = np.random.default_rng(0)
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([0.25, 4.0, 1.5])
    gamma, beta = np.array([1.5, 0.5, -2.0]), np.array([0.1, 0.2, 0.3])
    layer.state["running_mean"][...] = mean
    layer.state["running_var"][...] = var
    layer.params["gamma"][...] = gamma
    layer.params["beta"][...] = beta
    x = rng.normal(size=(5, 2, 2, 3))
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + 1e-3) + beta, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(layer.state["running_mean"], mean)
    np.testing.assert_array_equal(layer.state["running_var"], var)


def test_batchnorm_running_statistics_converge_to_the_data():
    layer, _ = build_layer({"type": "batchnorm", "momentum": 0.5}, (2,))
    rng = np.random.default_rng(0)
    for _ in range(60):
        layer.forward(rng.normal(loc=[3.0, -1.0], scale=[2.0, 0.5], size=(256, 2)), training=True)
    np.testing.assert_allclose(layer.state["running_mean"], [3.0, -1.0], atol=0.15)
    np.testing.assert_allclose(layer.state["running_var"], [4.0, 0.25], rtol=0.15)


def test_batchnorm_keeps_float32():
    model = Sequential.from_specs([{"type": "dense", "units": 4}, {"type": "batchnorm"}, {"type": "dense", "units": 2}], (3,), np.float32)
    model.initialize(np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    assert model.forward(x, training=True).dtype == np.float32
    model.backward(np.ones((8, 2), np.float32))
    assert model.layers[1].state["running_var"].dtype == np.float32 and np.isfinite(model.grad).all()


def test_batchnorm_options_are_checked():
    with pytest.raises(ConfigError, match=r"momentum: must be in \[0, 1\), got 1.5"):
        LAYERS.create({"type": "batchnorm", "momentum": 1.5}, ("model", "layers", 2))
    with pytest.raises(ConfigError, match=r"epsilon: must be > 0"):
        LAYERS.create({"type": "batchnorm", "epsilon": 0})


def test_random_layers_work_before_the_trainer_seeds_them():
    def run():
        model = Sequential.from_specs([{"type": "dropout", "rate": 0.5}, {"type": "rrelu"}], (20,), np.float64)
        return model.forward(-np.ones((3, 20)), training=True).copy()

    np.testing.assert_array_equal(run(), run())  # a fixed default seed until Trainer calls seed_layers
