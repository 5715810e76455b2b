"""Dropout."""

from __future__ import annotations

import numpy as np

from ..registry import Fraction
from .base import LAYERS, Layer


@LAYERS.register("dropout")
class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014): in training each input is zeroed with probability rate, the rest scaled by 1/(1 − rate); identity in evaluation.

    The mask is drawn from the layer's own seeded generator (saved in
    checkpoints, so --resume repeats it). Works on any shape, elementwise.

    Options:
    rate: fraction of inputs dropped in training
    """

    has_randomness = True
    independent_in_evaluation = True  # the identity

    def __init__(self, rate: Fraction = 0.5):
        super().__init__()
        self.rate = rate
        self._mask: np.ndarray | None = None

    def build(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        """x: (N, ...) -> same shape; x itself (no copy) in evaluation or when rate is 0."""
        xp = self.xp
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        mask = self.uniform("mask", x.shape, x.dtype)
        xp.greater_equal(mask, self.rate, out=mask)  # keep with probability 1 − rate
        mask *= 1.0 / (1.0 - self.rate)
        y = self.buffer("y", x.shape, x.dtype)
        xp.multiply(x, mask, out=y)
        self._mask = mask
        return y

    def backward(self, grad_out):
        """dL/dy -> dL/dx = dL/dy · mask (in place)."""
        if not self.needs_input_grad:
            return None
        if self._mask is not None:
            grad_out *= self._mask
        return grad_out

    def describe(self):
        return f"dropout({self.rate:g})"
