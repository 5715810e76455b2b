"""What dense and conv2d share: a kernel W, an optional bias b, an optional fused activation."""

from __future__ import annotations

import numpy as np

from ..initializers import INITIALIZERS
from .activations import ACTIVATIONS
from .base import Layer, fans


def default_kernel_initializer(activation) -> object:
    """He for ReLU-family activations, Glorot (Xavier) otherwise: the textbook pairing."""
    name = "he_uniform" if getattr(activation, "relu_family", False) else "xavier_uniform"
    return INITIALIZERS.create(name)


class KernelLayer(Layer):
    """What dense and conv2d share: a kernel W, an optional bias b, an optional fused
    activation, their initialisers and the kernel and activity regularizers."""

    activation_deferred = False  # True when the next layer applies our activation (set by fusion.fuse)

    def setup_kernel(
        self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, activity_regularizer
    ) -> None:
        """One call in the constructor, with the options of the same names."""
        self.activation = ACTIVATIONS.create(activation) if activation is not None else None
        if self.activation is not None:
            self.children["act"] = self.activation
        self.use_bias = use_bias
        self.kernel_initializer = (
            INITIALIZERS.create(kernel_initializer)
            if kernel_initializer is not None
            else default_kernel_initializer(self.activation)
        )
        self.bias_initializer = INITIALIZERS.create(bias_initializer)
        self.set_regularizers(kernel_regularizer, activity_regularizer)

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        if options["kernel_initializer"] is None:
            options = {**options, "kernel_initializer": default_kernel_initializer(options["activation"])}
        return options

    def activate(self, z: np.ndarray, training: bool) -> np.ndarray:
        """The fused activation of z (in place when it allows), unless there is none or it is deferred."""
        if self.activation is None or self.activation_deferred:
            return z
        return self.activation.forward(z, training, out=z if self.activation.from_output else None)

    def activation_backward(self, grad_out: np.ndarray) -> np.ndarray:
        """dL/d(activation output) -> dL/dz, through the activation that `activate` applied."""
        if self.activation is None or self.activation_deferred:
            return grad_out
        return self.activation.backward(grad_out)

    def describe_with_activation(self, name: str, *parts: str) -> str:
        """'name(part, …, activation)', e.g. 'dense(16, sigmoid)'."""
        if self.activation is not None:
            parts = (*parts, self.activation.describe())
        return f"{name}({', '.join(parts)})"

    def initialize(self, rng):
        W = self.params["W"]
        W[...] = self.kernel_initializer(W.shape, *fans(W.shape), rng)
        if self.use_bias:
            b = self.params["b"]
            b[...] = self.bias_initializer(b.shape, *fans(W.shape), rng)
        super().initialize(rng)
