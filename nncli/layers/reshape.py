"""Layers that only change shape."""

from __future__ import annotations

import numpy as np

from .base import LAYERS, Layer


@LAYERS.register("flatten")
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...): a view, no copy."""

    def build(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        if not self.needs_input_grad:
            return None
        return grad_out.reshape(grad_out.shape[0], *self.input_shape)
