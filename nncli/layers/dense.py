"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from ..initializers import Initializer
from ..registry import PositiveInt
from ..regularizers import Regularizer_
from .activations import Activation_
from .base import LAYERS, ShapeError
from .kernel import KernelLayer


@LAYERS.register("dense", "fully_connected")
class Dense(KernelLayer):
    """Fully connected layer: y = activation(x @ W + b), W (in, units), b (units,); on sequences (time, in), applied at every step.

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
        if len(input_shape) not in (1, 2):
            raise ShapeError(
                f"dense expects flat inputs (features,) or sequences (time, features), got {tuple(input_shape)}; "
                "add a flatten layer before it"
            )
        self.param_shapes = {"W": (input_shape[-1], self.units)}
        if self.use_bias:
            self.param_shapes["b"] = (self.units,)
        out = (*input_shape[:-1], self.units)
        if self.activation is not None:
            self.activation.build(out)
        return out

    def forward(self, x, training=False):
        """x: (N, in) -> (N, units), or (N, T, in) -> (N, T, units) (every step alike, as one GEMM)."""
        xp = self.xp
        x2 = x.reshape(-1, x.shape[-1])
        z = self.buffer("z", (x2.shape[0], self.units), x.dtype)
        xp.matmul(x2, self.params["W"], out=z)
        if self.use_bias:
            z += self.params["b"]
        self._x = x2
        return self.activate(z, training).reshape(*x.shape[:-1], self.units)

    def backward(self, grad_out):
        """(N, [T,] units) -> (N, [T,] in); dW = xᵀ·dz, db = 1ᵀ·dz."""
        xp = self.xp
        dz = self.activation_backward(grad_out.reshape(-1, self.units))
        x = self._x
        xp.matmul(x.T, dz, out=self.grads["W"])
        if self.use_bias:
            xp.matmul(self.ones(x.shape[0], dz.dtype), dz, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        dx = self.buffer("dx", x.shape, dz.dtype)
        xp.matmul(dz, self.params["W"].T, out=dx)
        return dx.reshape(grad_out.shape[0], *self.input_shape)

    def describe(self):
        return self.describe_with_activation("dense", str(self.units))
