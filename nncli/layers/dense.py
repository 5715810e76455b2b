"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, Activation_
from ..initializers import INITIALIZERS, Initializer
from ..registry import PositiveInt
from ..regularizers import Regularizer_
from .base import LAYERS, Layer, ShapeError, fans


def default_kernel_initializer(activation) -> object:
    """He for ReLU-family activations, Glorot (Xavier) otherwise: the textbook pairing."""
    name = "he_uniform" if getattr(activation, "relu_family", False) else "xavier_uniform"
    return INITIALIZERS.create(name)


class KernelLayer(Layer):
    """What dense and conv2d share: a kernel W, an optional bias b, an optional fused
    activation, their initialisers and the kernel and activity regularizers."""

    activation_deferred = False  # True when the next layer applies our activation (conv2d's ReLU before a max-pool)

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


@LAYERS.register("dense", "fully_connected")
class Dense(KernelLayer):
    """Fully connected layer: y = activation(x @ W + b), W (in, units), b (units,).

    Options:
    units: number of outputs
    activation: applied to x @ W + b; null for none (logits)
    use_bias: add the bias vector b
    kernel_initializer: null picks he_uniform after a ReLU-family activation, xavier_uniform otherwise
    bias_initializer: initialiser for b
    kernel_regularizer: penalty on W added to the loss, e.g. {type: l2, l2: 1e-4}; null for none
    activity_regularizer: penalty on the layer's output (per-sample mean), e.g. {type: l1, l1: 1e-4} for sparse activations
    """

    independent_samples = True

    def __init__(
        self,
        units: PositiveInt,
        activation: Activation_ | None = None,
        use_bias: bool = True,
        kernel_initializer: Initializer | None = None,
        bias_initializer: Initializer = "zeros",
        kernel_regularizer: Regularizer_ | None = None,
        activity_regularizer: Regularizer_ | None = None,
    ):
        super().__init__()
        self.units = units
        self.setup_kernel(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, activity_regularizer)

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(
                f"dense expects flat inputs (features,), got {tuple(input_shape)}; add a flatten layer before it"
            )
        self.param_shapes = {"W": (input_shape[0], self.units)}
        if self.use_bias:
            self.param_shapes["b"] = (self.units,)
        if self.activation is not None:
            self.activation.build((self.units,))
        return (self.units,)

    def forward(self, x, training=False):
        """x: (N, in) -> (N, units)."""
        z = self.buffer("z", (x.shape[0], self.units), x.dtype)
        np.matmul(x, self.params["W"], out=z)
        if self.use_bias:
            z += self.params["b"]
        self._x = x
        return self.activate(z, training)

    def backward(self, grad_out):
        """(N, units) -> (N, in); dW = xᵀ·dz, db = 1ᵀ·dz."""
        dz = self.activation_backward(grad_out)
        x = self._x
        np.matmul(x.T, dz, out=self.grads["W"])
        if self.use_bias:
            np.matmul(self.ones(x.shape[0], dz.dtype), dz, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        dx = self.buffer("dx", x.shape, dz.dtype)
        np.matmul(dz, self.params["W"].T, out=dx)
        return dx

    def describe(self):
        return self.describe_with_activation("dense", str(self.units))
