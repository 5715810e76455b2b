"""Weight initialisers: fill an array of a given shape from (fan_in, fan_out) and a Generator.

Values are drawn in float64 and then cast, so a float32 training model and a
float64 gradient-check model with the same seed start from the same numbers.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np

from .registry import PositiveFloat, Registry

INITIALIZERS = Registry("initializer")

Initializer = Annotated[object, INITIALIZERS]  # option type: an initializer name or mapping


class _Init:
    def __call__(self, shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@INITIALIZERS.register("zeros")
class Zeros(_Init):
    """All zeros (the usual bias initialiser; for weights it leaves every unit identical)."""

    def __call__(self, shape, fan_in, fan_out, rng):
        return np.zeros(shape)


@INITIALIZERS.register("ones")
class Ones(_Init):
    """All ones (batch-norm scales)."""

    def __call__(self, shape, fan_in, fan_out, rng):
        return np.ones(shape)


@INITIALIZERS.register("random_normal", "normal")
class RandomNormal(_Init):
    """Normal(mean, stddev) independent of the layer size.

    Options:
    mean: mean of the distribution
    stddev: standard deviation
    """

    def __init__(self, mean: float = 0.0, stddev: PositiveFloat = 0.05):
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, fan_in, fan_out, rng):
        return rng.normal(self.mean, self.stddev, size=shape)


@INITIALIZERS.register("random_uniform", "uniform")
class RandomUniform(_Init):
    """Uniform(minval, maxval) independent of the layer size.

    Options:
    minval: lower bound
    maxval: upper bound (exclusive)
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        if not minval < maxval:
            raise ValueError(f"minval must be below maxval, got minval={minval}, maxval={maxval}")
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, fan_in, fan_out, rng):
        return rng.uniform(self.minval, self.maxval, size=shape)


@INITIALIZERS.register("xavier_uniform", "glorot_uniform")
class XavierUniform(_Init):
    """Glorot & Bengio (2010): U(±√(6/(fan_in+fan_out))), keeps variance for tanh/sigmoid nets."""

    def __call__(self, shape, fan_in, fan_out, rng):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape)


@INITIALIZERS.register("xavier_normal", "glorot_normal")
class XavierNormal(_Init):
    """Glorot & Bengio (2010): N(0, 2/(fan_in+fan_out))."""

    def __call__(self, shape, fan_in, fan_out, rng):
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


@INITIALIZERS.register("he_uniform", "kaiming_uniform")
class HeUniform(_Init):
    """He et al. (2015): U(±√(6/fan_in)), keeps variance through ReLU layers."""

    def __call__(self, shape, fan_in, fan_out, rng):
        limit = math.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=shape)


@INITIALIZERS.register("he_normal", "kaiming_normal")
class HeNormal(_Init):
    """He et al. (2015): N(0, 2/fan_in)."""

    def __call__(self, shape, fan_in, fan_out, rng):
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


@INITIALIZERS.register("orthogonal")
class Orthogonal(_Init):
    """Saxe et al. (2014): a random orthogonal matrix (QR of a Gaussian one, signs fixed) times gain; the recurrent
    kernels' default, as in Keras. Shape (..., n) is treated as a (rows, n) matrix with orthonormal rows or columns."""

    def __init__(self, gain: PositiveFloat = 1.0):
        self.gain = gain

    def __call__(self, shape, fan_in, fan_out, rng):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # a uniform (Haar) draw, not one biased by QR's sign convention
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape)
