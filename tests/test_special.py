"""Special functions, checked against the standard library's math.erfc (correctly rounded to within an ulp or so)."""

import math

import numpy as np

from nncli.special import normal_cdf, softmax

# Reference Φ(x) = erfc(−x/√2)/2, one element at a time: slow, but independent of nncli's code.
ndtr = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)), otypes=[np.float64])


def test_normal_cdf_is_accurate_to_float64_precision_tails_included():
    x = np.concatenate([np.linspace(-40, 40, 40_001), [-0.67448975, 0.67448975, -np.sqrt(32), np.sqrt(32), np.inf, -np.inf, 1e300, -1e300]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got, want = normal_cdf(x), ndtr(x)
    assert np.max(np.abs(got - want)) < 5e-16
    tail = want > 1e-300
    assert np.max(np.abs(got[tail] - want[tail]) / want[tail]) < 1e-12  # relative accuracy far into the lower tail
    x32 = x[np.abs(x) < 1e30].astype(np.float32)
    assert normal_cdf(x32).dtype == np.float32
    assert np.max(np.abs(normal_cdf(x32) - ndtr(x32.astype(np.float64)))) < 2e-7


def test_normal_cdf_keeps_shapes_and_fills_out():
    x = np.linspace(-3, 3, 12).reshape(2, 3, 2)
    out = np.empty_like(x)
    assert normal_cdf(x, out=out) is out
    np.testing.assert_allclose(out, ndtr(x), rtol=1e-15, atol=1e-16)
    assert normal_cdf(np.array([1, -2])).dtype == np.float64  # integers become float64



def test_normal_cdf_can_reuse_work_arrays():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32) * 3  # centre, middle and far tails
    made = {}

    def buffer(name, dtype):
        return made.setdefault((name, np.dtype(dtype)), np.empty(x.shape, dtype))

    first = normal_cdf(x, buffer=buffer)
    arrays = {k: id(v) for k, v in made.items()}
    np.testing.assert_array_equal(normal_cdf(x, buffer=buffer), first)
    np.testing.assert_array_equal(normal_cdf(x), first)
    assert {k: id(v) for k, v in made.items()} == arrays and len(arrays) >= 4


def test_softmax_over_the_last_axis_never_overflows_and_may_work_in_place():
    x = np.random.default_rng(0).normal(size=(3, 2, 5)) * 4
    want = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(softmax(x), want, rtol=1e-14)
    same = x.copy()
    assert softmax(same, out=same) is same
    np.testing.assert_array_equal(same, softmax(x))
    huge = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        assert softmax(huge).dtype == np.float32
        np.testing.assert_array_equal(softmax(huge), [[1.0, 0.0, 0.0]])
