"""Every layer and activation: finite-difference gradient checks (float64) and forward behaviour."""

import numpy as np
import pytest
from helpers import build_layer, check_layer_gradients

from nncli.errors import ConfigError
from nncli.layers import ACTIVATIONS, LAYERS
from nncli.model import Sequential

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
}


def test_every_layer_has_a_gradient_check():
    assert set(CASES) == set(LAYERS.names())


def test_every_activation_is_a_layer_with_a_check():
    assert set(ACTIVATIONS.names()) <= set(CASES)


@pytest.mark.parametrize(
    "spec,shape", [case for cases in CASES.values() for case in cases], ids=lambda v: str(v.get("type")) if isinstance(v, dict) else str(v)
)
def test_gradients_match_finite_differences(spec, shape):
    check_layer_gradients(spec, shape, batch=3)


def test_relu_family_kink_is_not_sampled():
    # finite differences straddling 0 would be wrong; make sure the random inputs keep clear of it
    x = np.array([[-1.0, -0.5, 0.5, 2.0]])
    check_layer_gradients({"type": "relu"}, (4,), x=x.copy())
    check_layer_gradients({"type": "leaky_relu"}, (4,), x=x.copy())


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
