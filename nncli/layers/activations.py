"""Elementwise activations. Each is a layer (so `{type: relu}` works in a layer list)
and an activation (so `dense(activation: relu)` works); both tables hold the same class.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from .base import LAYERS, Layer
from ..registry import Range, Registry

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

    def saturation(self, y: np.ndarray) -> float | None:
        """Fraction of outputs where f' is nearly 0 (the unit has stopped learning); None if it cannot saturate."""
        return None


@activation("linear", "identity")
class Linear(Activation):
    """Identity, f(x) = x (a dense layer with no activation)."""

    def apply(self, x, y):
        if y is not x:
            np.copyto(y, x)

    def derivative(self, dy):
        return dy


@activation("sigmoid", "logistic")
class Sigmoid(Activation):
    """Logistic σ(x) = 1/(1+e^-x), computed as (1+tanh(x/2))/2 so it never overflows; saturates."""

    def apply(self, x, y):
        np.multiply(x, 0.5, out=y)
        np.tanh(y, out=y)
        y += 1.0
        y *= 0.5

    def derivative(self, dy):
        y = self._y
        dy *= y
        dy -= dy * y  # dy·y·(1-y)
        return dy

    def saturation(self, y):
        return float(np.mean((y < 0.01) | (y > 0.99)))  # σ' < 0.0099, a 25th of its peak


@activation("tanh")
class Tanh(Activation):
    """Hyperbolic tangent, zero-centred, saturates at ±1."""

    def apply(self, x, y):
        np.tanh(x, out=y)

    def derivative(self, dy):
        y = self._y
        dy -= dy * y * y  # dy·(1-y²)
        return dy

    def saturation(self, y):
        return float(np.mean(np.abs(y) > 0.99))  # tanh' < 0.02


@activation("relu")
class ReLU(Activation):
    """Rectified linear unit max(0, x): no saturation for x > 0, exact zeros (sparsity) below."""

    relu_family = True

    def apply(self, x, y):
        np.maximum(x, 0.0, out=y)

    def derivative(self, dy):
        np.multiply(dy, self._y > 0, out=dy)
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
        if y is x:
            np.maximum(x, x * self.alpha, out=y)
        else:
            np.multiply(x, self.alpha, out=y)
            np.maximum(x, y, out=y)

    def derivative(self, dy):
        slope = np.where(self._y > 0, 1.0, self.alpha).astype(dy.dtype, copy=False)
        dy *= slope
        return dy

    def describe(self):
        return f"leaky_relu({self.alpha:g})"


@activation("softmax")
class Softmax(Activation):
    """Softmax over the last axis (probabilities). With `cross_entropy`, leave it out: that loss takes logits."""

    def apply(self, x, y):
        np.subtract(x, x.max(axis=-1, keepdims=True), out=y)
        np.exp(y, out=y)
        y /= y.sum(axis=-1, keepdims=True)

    def derivative(self, dy):
        y = self._y
        inner = np.einsum("...k,...k->...", dy, y)[..., None]
        dy -= inner
        dy *= y  # y·(dy - <dy, y>)
        return dy
