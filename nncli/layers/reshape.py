"""Layers that only change shape."""

from __future__ import annotations

import numpy as np

from .base import LAYERS, Layer, ShapeError


@LAYERS.register("flatten")
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...): a view, no copy."""

    independent_samples = True

    def build(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        if not self.needs_input_grad:
            return None
        return grad_out.reshape(grad_out.shape[0], *self.input_shape)


@LAYERS.register("reshape")
class Reshape(Layer):
    """(N, *input_shape) -> (N, *target_shape), same elements in C order (a view): e.g. flat pixels to (28, 28, 1).

    Options:
    target_shape: per-sample output shape; one entry may be -1 (inferred)
    """

    independent_samples = True

    def __init__(self, target_shape: tuple[int, ...]):
        super().__init__()
        if not target_shape:
            raise ValueError("target_shape must have at least one entry")
        if any(d == 0 or d < -1 for d in target_shape) or list(target_shape).count(-1) > 1:
            raise ValueError(f"target_shape entries must be positive, with at most one -1, got {list(target_shape)}")
        self.target_shape = tuple(target_shape)

    def build(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(f"cannot reshape {tuple(input_shape)} ({size} values) to {self.target_shape}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ShapeError(
                f"cannot reshape {tuple(input_shape)} ({size} values) to {self.target_shape} ({known} values)"
            )
        return self.target_shape

    def forward(self, x, training=False):
        """x: (N, *input_shape) -> (N, *output_shape)."""
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, grad_out):
        """(N, *output_shape) -> (N, *input_shape)."""
        if not self.needs_input_grad:
            return None
        return grad_out.reshape(grad_out.shape[0], *self.input_shape)

    def describe(self):
        return f"reshape({', '.join(map(str, self.output_shape or self.target_shape))})"
