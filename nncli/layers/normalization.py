"""Batch normalisation."""

from __future__ import annotations

import numpy as np

from ..registry import Fraction, PositiveFloat
from .base import LAYERS, Layer, ShapeError


@LAYERS.register("batchnorm", "batch_norm", "batch_normalization")
class BatchNorm(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015) over every axis but the last: features after dense, channels of NHWC images.

    y = gamma·(x − mean)/√(var + epsilon) + beta per channel. Training uses
    the batch's mean and biased variance and updates the running statistics
    as Keras does, running = momentum·running + (1 − momentum)·batch (torch's
    `momentum` is 1 minus this one), with the unbiased batch variance
    (m/(m − 1) for m values per channel, as torch) for running_var.
    Evaluation normalises with the running statistics and changes nothing.
    gamma and beta are trainable (`param/<i>.batchnorm/gamma`, `beta`; not
    weight-decayed); running_mean and running_var are saved under `state/`.

    Options:
    momentum: weight of the old running statistics in each update (Keras 0.99; torch's default 0.1 is 0.9 here)
    epsilon: added to the variance before the square root (Keras 1e-3)
    """

    kernel_names = ()

    updates_state = True
    independent_in_evaluation = True  # normalises with the running statistics, changing nothing

    def __init__(self, momentum: Fraction = 0.99, epsilon: PositiveFloat = 1e-3):
        super().__init__()
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) == 0:
            raise ShapeError("batchnorm needs at least one axis per sample (its last axis holds the channels)")
        c = input_shape[-1]
        self.param_shapes = {"gamma": (c,), "beta": (c,)}
        self.state_shapes = {"running_mean": (c,), "running_var": (c,)}
        return tuple(input_shape)

    def initialize(self, rng):
        self.params["gamma"][...] = 1.0
        self.params["beta"][...] = 0.0
        self.state["running_mean"][...] = 0.0
        self.state["running_var"][...] = 1.0

    def forward(self, x, training=False):
        """x: (N, ..., C) -> same shape, normalised per channel over the other axes."""
        xp = self.xp
        c = self.param_shapes["gamma"][0]
        x2 = x.reshape(-1, c)  # (m, C): a view of a contiguous input
        m = x2.shape[0]
        y = self.buffer("y", x.shape, x.dtype)
        y2 = y.reshape(-1, c)
        gamma, beta = self.params["gamma"], self.params["beta"]
        inv_std = self.buffer("inv_std", (c,), x.dtype)
        if training:
            ones = self.ones(m, x.dtype)
            mean = self.buffer("mean", (c,), x.dtype)
            xp.matmul(ones, x2, out=mean)  # column sums through BLAS
            mean *= 1.0 / m
            xhat = self.buffer("xhat", x2.shape, x.dtype)
            xp.subtract(x2, mean, out=xhat)
            xp.multiply(xhat, xhat, out=y2)  # y as scratch for the squares
            var = self.buffer("var", (c,), x.dtype)
            xp.matmul(ones, y2, out=var)
            var *= 1.0 / m  # biased: what the batch is normalised with
            xp.add(var, self.epsilon, out=inv_std)
            xp.sqrt(inv_std, out=inv_std)
            xp.reciprocal(inv_std, out=inv_std)
            xhat *= inv_std
            xp.multiply(xhat, gamma, out=y2)
            y2 += beta
            rm, rv = self.state["running_mean"], self.state["running_var"]
            keep, new = self.momentum, 1.0 - self.momentum
            rm *= keep
            rm += new * mean
            rv *= keep
            rv += (new * m / (m - 1) if m > 1 else new) * var
            self._cache = (True, xhat, inv_std)
        else:
            xp.add(self.state["running_var"], self.epsilon, out=inv_std)
            xp.sqrt(inv_std, out=inv_std)
            xp.reciprocal(inv_std, out=inv_std)
            scale = self.buffer("scale", (c,), x.dtype)
            xp.multiply(gamma, inv_std, out=scale)
            shift = self.buffer("shift", (c,), x.dtype)
            xp.multiply(self.state["running_mean"], scale, out=shift)
            xp.subtract(beta, shift, out=shift)
            xp.multiply(x2, scale, out=y2)
            y2 += shift
            self._cache = (False, x2, inv_std)
        return y

    def backward(self, grad_out):
        """dL/dy (N, ..., C) -> dL/dx; dgamma = Σ dy·x̂, dbeta = Σ dy over all but the channel axis.

        After a training forward: dx = gamma/σ · (dy − mean(dy) − x̂·mean(dy·x̂)),
        the batch statistics depending on x; after an evaluation forward the
        map is affine and dx = gamma/σ_running · dy.
        """
        xp = self.xp
        training, cached, inv_std = self._cache
        c = inv_std.shape[0]
        dy = grad_out.reshape(-1, c)
        m = dy.shape[0]
        ones = self.ones(m, dy.dtype)
        gamma, dgamma, dbeta = self.params["gamma"], self.grads["gamma"], self.grads["beta"]
        work = self.buffer("dx", (m, c), dy.dtype)
        if training:
            xhat = cached
        else:  # x̂ from the running statistics
            xhat = self.buffer("xhat", (m, c), dy.dtype)
            xp.subtract(cached, self.state["running_mean"], out=xhat)
            xhat *= inv_std
        xp.matmul(ones, dy, out=dbeta)
        xp.multiply(dy, xhat, out=work)
        xp.matmul(ones, work, out=dgamma)
        if not self.needs_input_grad:
            return None
        if training:
            xp.multiply(xhat, dgamma * (1.0 / m), out=work)
            work += dbeta * (1.0 / m)
            xp.subtract(dy, work, out=work)
            work *= gamma * inv_std
        else:
            xp.multiply(dy, gamma * inv_std, out=work)
        return work.reshape(grad_out.shape)

    def describe(self):
        return "batchnorm"
