"""Initialisers: the distribution each one promises, from (fan_in, fan_out)."""

import math

import numpy as np
import pytest

from nncli.initializers import INITIALIZERS

SHAPE, FAN_IN, FAN_OUT = (400, 300), 400, 300

# name -> (options, expected mean, expected std, bound or None). Every initializer must appear here.
CASES = {
    "zeros": ({}, 0.0, 0.0, 0.0),
    "ones": ({}, 1.0, 0.0, 1.0),
    "random_normal": ({"mean": 0.5, "stddev": 0.2}, 0.5, 0.2, None),
    "random_uniform": ({"minval": -0.3, "maxval": 0.1}, -0.1, 0.4 / math.sqrt(12), 0.3),
    "xavier_uniform": ({}, 0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "xavier_normal": ({}, 0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "he_uniform": ({}, 0.0, math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "he_normal": ({}, 0.0, math.sqrt(2 / FAN_IN), None),
    "orthogonal": ({"gain": 2.0}, 0.0, 2.0 / math.sqrt(SHAPE[0]), None),  # unit columns times the gain
}


def test_every_initializer_is_checked():
    assert set(CASES) == set(INITIALIZERS.names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_initializer_statistics(name):
    options, mean, std, bound = CASES[name]
    values = INITIALIZERS.create({"type": name, **options})(SHAPE, FAN_IN, FAN_OUT, np.random.default_rng(0))
    assert values.shape == SHAPE
    assert values.mean() == pytest.approx(mean, abs=0.01)
    assert values.std() == pytest.approx(std, rel=0.02, abs=1e-12)
    if bound is not None:
        assert np.abs(values).max() <= bound + 1e-12


def test_same_seed_same_weights_in_any_dtype():
    from nncli.models import Sequential

    specs = [{"type": "dense", "units": 5, "activation": "relu"}, {"type": "dense", "units": 2}]
    a = Sequential.from_specs(specs, (3,), np.float32)
    b = Sequential.from_specs(specs, (3,), np.float64)
    a.initialize(np.random.default_rng(7))
    b.initialize(np.random.default_rng(7))
    np.testing.assert_array_equal(a.theta, b.theta.astype(np.float32))


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (2, 3, 5)])
def test_orthogonal_has_orthonormal_rows_or_columns(shape):
    W = INITIALIZERS.create({"type": "orthogonal", "gain": 1.5})(shape, 0, 0, np.random.default_rng(1))
    assert W.shape == shape
    M = W.reshape(-1, shape[-1])
    small = min(M.shape)
    gram = M.T @ M if M.shape[0] >= M.shape[1] else M @ M.T
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(small), atol=1e-12)
