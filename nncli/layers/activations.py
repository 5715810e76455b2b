"""Elementwise activations. Each is a layer (so `{type: relu}` works in a layer list)
and an activation (so `dense(activation: relu)` works); both tables hold the same class.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np

from ..registry import PositiveFloat, Probability, Range, Registry
from .base import LAYERS, Layer, ShapeError
from ..special import normal_cdf, softmax

ACTIVATIONS = Registry("activation")

Activation_ = Annotated[object, ACTIVATIONS]  # option type: an activation name or mapping


def activation(name: str, *aliases: str):
    """Register a class as both an activation and a layer."""

    def decorator(cls):
        ACTIVATIONS.register(name, *aliases)(cls)
        LAYERS.register(name, *aliases)(cls)
        return cls

    return decorator


class Activation(Layer):
    """Base class: y = f(x) elementwise; backward from the cached output where possible."""

    from_output = True  # backward needs only y, so forward may write y over its input (out=x)
    independent_samples = True
    relu_family = False  # ReLU-like: He initialisation suits the layer before it

    def build(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False, out=None):
        """x: (N, ...) -> y, same shape. `out` may be x itself when from_output."""
        y = self.buffer("y", x.shape, x.dtype) if out is None else out
        self._x = None if self.from_output else x
        self._training = training  # for apply (rrelu draws slopes in training only)
        self.apply(x, y)
        self._y = y
        return y

    def backward(self, grad_out):
        """dL/dy -> dL/dx, computed in place in grad_out."""
        return self.derivative(grad_out)

    def apply(self, x: np.ndarray, y: np.ndarray) -> None:
        """Write f(x) into y (y may be x)."""
        raise NotImplementedError

    def derivative(self, dy: np.ndarray) -> np.ndarray:
        """Overwrite dy with dy * f'(x) and return it."""
        raise NotImplementedError

    def one_where(self, v: np.ndarray, slope: np.ndarray) -> np.ndarray:
        """Set slope to 1 where v > 0, in place, and return it: slope·[v <= 0] + [v > 0] (at 0 the negative side's slope).

        Exact (slope must be finite) and ~8× faster than np.copyto(slope, 1.0, where=...), whose masked copy is slow.
        """
        xp = self.xp
        pos = self.buffer("pos", v.shape, np.bool_)
        rest = self.buffer("rest", v.shape, np.bool_)
        xp.greater(v, 0, out=pos)
        xp.logical_not(pos, out=rest)
        slope *= rest
        slope += pos
        return slope

    def saturation(self, y: np.ndarray) -> float | None:
        """Fraction of outputs where f' is nearly 0 (the unit has stopped learning); None if it cannot saturate."""
        return None


@activation("linear", "identity")
class Linear(Activation):
    """Identity, f(x) = x (a dense layer with no activation)."""

    def apply(self, x, y):
        xp = self.xp
        if y is not x:
            xp.copyto(y, x)

    def derivative(self, dy):
        return dy


@activation("sigmoid", "logistic")
class Sigmoid(Activation):
    """Logistic σ(x) = 1/(1+e^-x), computed as (1+tanh(x/2))/2 so it never overflows; saturates."""

    def apply(self, x, y):
        xp = self.xp
        xp.multiply(x, 0.5, out=y)
        xp.tanh(y, out=y)
        y += 1.0
        y *= 0.5

    def derivative(self, dy):
        y = self._y
        dy *= y
        dy -= dy * y  # dy·y·(1-y)
        return dy

    def saturation(self, y):
        xp = self.xp
        return float(xp.mean((y < 0.01) | (y > 0.99)))  # σ' < 0.0099, a 25th of its peak


@activation("tanh")
class Tanh(Activation):
    """Hyperbolic tangent, zero-centred, saturates at ±1."""

    def apply(self, x, y):
        xp = self.xp
        xp.tanh(x, out=y)

    def derivative(self, dy):
        y = self._y
        dy -= dy * y * y  # dy·(1-y²)
        return dy

    def saturation(self, y):
        xp = self.xp
        return float(xp.mean(xp.abs(y) > 0.99))  # tanh' < 0.02


@activation("relu")
class ReLU(Activation):
    """Rectified linear unit max(0, x): no saturation for x > 0, exact zeros (sparsity) below."""

    relu_family = True

    def apply(self, x, y):
        xp = self.xp
        xp.maximum(x, 0.0, out=y)

    def derivative(self, dy):
        xp = self.xp
        xp.multiply(dy, self._y > 0, out=dy)
        return dy


@activation("leaky_relu")
class LeakyReLU(Activation):
    """max(x, alpha·x): a small slope below zero keeps gradients alive.

    Options:
    alpha: slope for x < 0
    """

    relu_family = True

    def __init__(self, alpha: Annotated[float, Range(0.0, 1.0, max_open=True)] = 0.01):
        super().__init__()
        self.alpha = alpha

    def apply(self, x, y):
        xp = self.xp
        if y is x:
            xp.maximum(x, x * self.alpha, out=y)
        else:
            xp.multiply(x, self.alpha, out=y)
            xp.maximum(x, y, out=y)

    def derivative(self, dy):
        slope = self.buffer("slope", dy.shape, dy.dtype)
        slope.fill(self.alpha)
        dy *= self.one_where(self._y, slope)
        return dy

    def describe(self):
        return f"leaky_relu({self.alpha:g})"


@activation("softmax")
class Softmax(Activation):
    """Softmax over the last axis (probabilities). With `cross_entropy`, leave it out: that loss takes logits."""

    def apply(self, x, y):
        softmax(x, out=y)

    def derivative(self, dy):
        xp = self.xp
        y = self._y
        inner = xp.einsum("...k,...k->...", dy, y)[..., None]
        dy -= inner
        dy *= y  # y·(dy - <dy, y>)
        return dy


@activation("elu")
class ELU(Activation):
    """Exponential linear unit: x for x > 0, alpha·(eˣ − 1) below (Clevert et al. 2015); smooth, mean closer to 0.

    Options:
    alpha: the negative saturation value is -alpha
    """

    relu_family = True

    def __init__(self, alpha: PositiveFloat = 1.0):
        super().__init__()
        self.alpha = alpha

    def apply(self, x, y):
        xp = self.xp
        t = self.buffer("t", x.shape, x.dtype)
        xp.minimum(x, 0.0, out=t)
        xp.expm1(t, out=t)  # no overflow for large x
        t *= self.alpha
        xp.maximum(x, 0.0, out=y)
        y += t

    def derivative(self, dy):
        xp = self.xp
        y = self._y  # f' = 1 for x > 0, alpha·eˣ = y + alpha below (y > 0 exactly when x > 0)
        slope = self.buffer("slope", y.shape, y.dtype)
        xp.minimum(y, 0.0, out=slope)  # finite where y = +inf, for one_where
        slope += self.alpha
        dy *= self.one_where(y, slope)
        return dy

    def describe(self):
        return f"elu({self.alpha:g})"


@activation("softplus")
class Softplus(Activation):
    """log(1 + eˣ), a smooth ReLU, computed as max(x, 0) + log1p(exp(−abs(x))) so it never overflows; f' = σ(x)."""

    def apply(self, x, y):
        xp = self.xp
        t = self.buffer("t", x.shape, x.dtype)
        xp.abs(x, out=t)
        xp.negative(t, out=t)
        xp.exp(t, out=t)
        xp.log1p(t, out=t)
        xp.maximum(x, 0.0, out=y)
        y += t

    def derivative(self, dy):
        xp = self.xp
        s = self.buffer("slope", self._y.shape, self._y.dtype)
        xp.negative(self._y, out=s)
        xp.expm1(s, out=s)  # σ(x) = 1 − e^-y = −expm1(−y), accurate in both tails
        dy *= s
        xp.negative(dy, out=dy)
        return dy


@activation("swish", "silu")
class Swish(Activation):
    """x·σ(βx) (Ramachandran et al. 2017); β = 1 is SiLU (Elfwing et al.), also called swish-1.

    Options:
    beta: steepness of the gate σ(βx); 0 gives x/2, large values approach ReLU
    """

    from_output = False  # f' needs σ(βx), cached from forward
    relu_family = True

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def apply(self, x, y):
        xp = self.xp
        s = self.buffer("s", x.shape, x.dtype)
        xp.multiply(x, 0.5 * self.beta, out=s)  # σ(βx) = (1 + tanh(βx/2))/2: no overflow
        xp.tanh(s, out=s)
        s += 1.0
        s *= 0.5
        xp.multiply(x, s, out=y)
        self._s = s

    def derivative(self, dy):
        xp = self.xp
        s, x = self._s, self._x  # f' = σ + βx·σ(1 − σ) = σ·(1 + βx·(1 − σ))
        slope = self.buffer("slope", x.shape, x.dtype)
        xp.subtract(1.0, s, out=slope)
        slope *= x
        slope *= self.beta
        slope += 1.0
        slope *= s
        dy *= slope
        return dy

    def describe(self):
        return "swish" if self.beta == 1.0 else f"swish({self.beta:g})"


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@activation("gelu")
class GELU(Activation):
    """Gaussian error linear unit x·Φ(x) (Hendrycks & Gimpel 2016), Φ the standard normal CDF: the exact (erf) form unless approximate.

    Exact: Φ from `nncli.special.normal_cdf` (Cody's rational approximations,
    accurate to about 1e-16 in float64, NumPy only, no scipy), as torch's
    default and Keras' approximate=False. `approximate: true` is the tanh form
    0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) of torch's approximate="tanh" and
    BERT/GPT-2 (within 1e-3 of exact, a little cheaper).

    Options:
    approximate: use the tanh approximation instead of the exact erf form
    """

    from_output = False  # f' needs x, and Φ(x) or the tanh, cached from forward
    relu_family = True

    def __init__(self, approximate: bool = False):
        super().__init__()
        self.approximate = approximate

    def apply(self, x, y):
        xp = self.xp
        t = self.buffer("t", x.shape, x.dtype)
        if self.approximate:
            xp.multiply(x, x, out=t)  # u = √(2/π)(x + 0.044715x³); t = tanh(u)
            t *= 0.044715
            t += 1.0
            t *= x
            t *= _SQRT_2_OVER_PI
            xp.tanh(t, out=t)
            xp.add(t, 1.0, out=y)
            y *= x
            y *= 0.5
        else:
            normal_cdf(x, out=t, buffer=lambda name, dtype: self.buffer(name, x.shape, dtype))
            xp.multiply(x, t, out=y)
        self._t = t

    def derivative(self, dy):
        xp = self.xp
        x, t = self._x, self._t
        slope = self.buffer("slope", x.shape, x.dtype)
        if self.approximate:
            # f' = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)
            xp.multiply(x, x, out=slope)
            slope *= 3 * 0.044715
            slope += 1.0
            slope *= _SQRT_2_OVER_PI
            slope *= x
            u = self.buffer("u", x.shape, x.dtype)
            xp.multiply(t, t, out=u)
            xp.subtract(1.0, u, out=u)
            slope *= u  # (1 − t²)
            xp.add(t, 1.0, out=u)
            slope += u  # (1 + t)
            slope *= 0.5
        else:
            # f' = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π)
            xp.multiply(x, x, out=slope)
            slope *= -0.5
            xp.exp(slope, out=slope)
            slope *= _INV_SQRT_2PI
            slope *= x
            slope += t
        dy *= slope
        return dy

    def describe(self):
        return "gelu(tanh)" if self.approximate else "gelu"


@activation("prelu")
class PReLU(Activation):
    """Parametric ReLU max(x, 0) + alpha·min(x, 0) with a learned slope alpha (He et al. 2015).

    One alpha per channel (the last axis: features after dense, channels of
    NHWC images), or one shared by all; initialised to 0.25 as in the paper.
    Named `alpha`, e.g. `param/0.dense/act.alpha` as a dense activation. Not
    weight-decayed (the paper advises against it).

    Options:
    shared: one alpha for the whole layer instead of one per channel
    initial_alpha: starting value of alpha
    """

    from_output = False  # alpha may become negative, so the sign of x is not the sign of y
    relu_family = True
    kernel_names = ()

    def __init__(self, shared: bool = False, initial_alpha: float = 0.25):
        super().__init__()
        self.shared = shared
        self.initial_alpha = initial_alpha

    def build(self, input_shape):
        if len(input_shape) == 0:
            raise ShapeError("prelu needs at least one axis per sample")
        self.param_shapes = {"alpha": (1,) if self.shared else (input_shape[-1],)}
        return tuple(input_shape)

    def initialize(self, rng):
        self.params["alpha"][...] = self.initial_alpha

    def apply(self, x, y):
        xp = self.xp
        neg = self.buffer("neg", x.shape, x.dtype)
        xp.minimum(x, 0.0, out=neg)
        neg *= self.params["alpha"]
        xp.maximum(x, 0.0, out=y)
        y += neg

    def derivative(self, dy):
        xp = self.xp
        x, alpha = self._x, self.params["alpha"]
        # dL/dalpha = Σ dy·min(x, 0) over every axis but the channel axis (all axes when shared)
        neg = self.buffer("neg", x.shape, x.dtype)
        xp.minimum(x, 0.0, out=neg)
        neg *= dy
        g = self.grads["alpha"]
        if self.shared:
            g[0] = neg.sum()
        else:
            flat = neg.reshape(-1, g.shape[0])
            xp.matmul(self.ones(flat.shape[0], flat.dtype), flat, out=g)
        slope = self.buffer("slope", x.shape, x.dtype)
        slope[...] = alpha
        dy *= self.one_where(x, slope)
        return dy

    def describe(self):
        return "prelu(shared)" if self.shared else "prelu"


@activation("rrelu")
class RReLU(Activation):
    """Randomized leaky ReLU (Xu et al. 2015): slope a ~ U(lower, upper) per element for x < 0 in training, (lower+upper)/2 in evaluation.

    Slopes are drawn from the layer's own seeded generator (saved in
    checkpoints); evaluation draws nothing. Defaults 1/8 and 1/3 as the paper
    and torch.

    Options:
    lower: smallest slope
    upper: largest slope
    """

    has_randomness = True
    independent_in_evaluation = True  # the mean slope
    relu_family = True

    def __init__(self, lower: Probability = 1.0 / 8.0, upper: Probability = 1.0 / 3.0):
        super().__init__()
        if lower > upper:
            raise ValueError(f"lower must not exceed upper, got lower={lower:g}, upper={upper:g}")
        self.lower, self.upper = lower, upper

    def apply(self, x, y):
        xp = self.xp
        if self._training and self.upper > self.lower:
            slope = self.uniform("slope", x.shape, x.dtype)
            slope *= self.upper - self.lower
            slope += self.lower
        else:
            slope = self.buffer("slope", x.shape, x.dtype)
            slope.fill(0.5 * (self.lower + self.upper))
        self.one_where(x, slope)  # before y overwrites x (y may be x)
        xp.multiply(x, slope, out=y)
        self._slope = slope

    def derivative(self, dy):
        dy *= self._slope
        return dy

    def describe(self):
        return f"rrelu({self.lower:g}, {self.upper:g})"
