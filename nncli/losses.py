"""Losses: the mean over the batch of a per-sample loss; `backward` includes the 1/N.

Every loss also says how its model outputs become class probabilities and
class predictions, so accuracy, confusion matrices and ensembles work the
same way whatever the loss.

Regression (data.task: regression): the targets are float (N, T) values
(`data.is_regression`), and mse, mae and huber compare the T outputs with them
element by element, as the mean over samples and targets. The task is told
explicitly at `check` (`targets`: T for a regression, None for classes), and
at forward time the targets' dtype says which comparison applies.
"""

from __future__ import annotations

import numpy as np

from .backend import xp_of
from .data.base import is_regression
from .registry import PositiveFloat, Registry
from .special import softmax

LOSSES = Registry("loss")


class Loss:
    """forward(outputs, targets) -> mean loss; backward() -> dL/d(outputs) of that call."""

    registered_name = "loss"
    spec: dict

    def check(self, output_shape: tuple[int, ...], num_classes: int | None, targets: int | None = None) -> None:
        """Raise ValueError when the model's per-sample output shape does not fit this loss and the data:
        `num_classes` classes, or, for a regression (data.task: regression), `targets` target columns."""
        if targets is not None:
            raise ValueError(
                f"{self.spec['type']} is a classification loss but data.task is regression; use mse, mae or huber"
            )

    def forward(self, outputs: np.ndarray, targets: np.ndarray):
        """The mean loss over the batch, a float64 scalar on the outputs' device (no host copy: the caller
        reads it with the step's other numbers, once)."""
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """(N, ...) outputs -> (N, K) class probabilities (or scores, for mse)."""
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """(N, ...) outputs -> (N,) predicted class indices."""
        xp = xp_of(outputs)
        return xp.argmax(outputs, axis=1)


def _buffer(owner, like):
    """A work array of like's shape and dtype, on like's device, kept by owner across calls."""
    buf = getattr(owner, "_buf", None)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or xp_of(buf) is not xp_of(like):
        buf = owner._buf = xp_of(like).empty(like.shape, like.dtype)
    return buf


@LOSSES.register("cross_entropy", "categorical_crossentropy", "softmax_cross_entropy")
class CrossEntropy(Loss):
    """Softmax + cross-entropy on logits with integer labels; log-sum-exp keeps it stable."""

    def check(self, output_shape, num_classes, targets=None):
        super().check(output_shape, num_classes, targets)
        if len(output_shape) != 1 or output_shape[0] < 2:
            raise ValueError(f"cross_entropy needs a vector of K >= 2 logits per sample, got output shape {output_shape}")
        if num_classes is not None and output_shape[0] != num_classes:
            raise ValueError(
                f"the last layer has {output_shape[0]} outputs but the data has {num_classes} classes"
            )

    def forward(self, outputs, targets):
        xp = xp_of(outputs)
        n = outputs.shape[0]
        p = _buffer(self, outputs)
        xp.subtract(outputs, outputs.max(axis=1, keepdims=True), out=p)  # shifted logits
        rows = xp.arange(n)
        picked = p[rows, targets].astype(np.float64)
        xp.exp(p, out=p)
        total = p.sum(axis=1)
        loss = xp.mean(xp.log(total.astype(np.float64)) - picked)
        p /= total[:, None]  # softmax, as special.softmax (written out for the shifted logits and their sums)
        self._grad, self._targets, self._rows = p, targets, rows
        return loss

    def backward(self):
        g = self._grad
        g[self._rows, self._targets] -= 1.0
        g *= 1.0 / g.shape[0]
        return g

    def probabilities(self, outputs):
        return softmax(outputs)


@LOSSES.register("binary_cross_entropy", "bce", "binary_crossentropy")
class BinaryCrossEntropy(Loss):
    """Sigmoid + cross-entropy on one logit per sample (labels 0/1): softplus(z) - y·z, stable for any z."""

    def check(self, output_shape, num_classes, targets=None):
        super().check(output_shape, num_classes, targets)
        if tuple(output_shape) != (1,):
            raise ValueError(f"binary_cross_entropy needs one logit per sample (dense units: 1), got output shape {output_shape}")
        if num_classes is not None and num_classes != 2:
            raise ValueError(f"binary_cross_entropy needs 2 classes, the data has {num_classes}")

    def forward(self, outputs, targets):
        xp = xp_of(outputs)
        z = outputs[:, 0].astype(np.float64)
        y = targets.astype(np.float64)
        per_sample = xp.maximum(z, 0.0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
        sig = 0.5 * (1.0 + xp.tanh(0.5 * z))
        self._grad = ((sig - y) / len(z)).astype(outputs.dtype)[:, None]
        return per_sample.mean()

    def backward(self):
        return self._grad

    def probabilities(self, outputs):
        xp = xp_of(outputs)
        p1 = 0.5 * (1.0 + xp.tanh(0.5 * outputs[:, 0]))
        return xp.stack([1.0 - p1, p1], axis=1)

    def predictions(self, outputs):
        return (outputs[:, 0] > 0).astype(np.int64)


def check_regression_outputs(name: str, output_shape, targets: int) -> None:
    """A regression's model has one output per target column."""
    if tuple(output_shape) != (targets,):
        plural = "s" if targets != 1 else ""
        raise ValueError(
            f"the last layer has output shape {tuple(output_shape)} but the data has {targets} target column{plural}; "
            f"{name} needs {targets} output{plural} (dense units: {targets})"
        )


class _Elementwise(Loss):
    """Mean over all output elements of ℓ(output − target): a regression's target values, or one-hot classes.

    Subclasses give ℓ (`_values`) and ℓ' (`_derivative`) of the difference d = output − target.
    """

    classes = True  # compares with one-hot classes when the data has classes

    def check(self, output_shape, num_classes, targets=None):
        name = self.spec["type"]
        if targets is not None:
            check_regression_outputs(name, output_shape, targets)
            return
        if not self.classes:
            raise ValueError(f"{name} compares outputs with target values: it needs data.task: regression (for classes use cross_entropy)")
        if len(output_shape) != 1:
            raise ValueError(f"{name} needs a vector output per sample, got {output_shape}")
        k = output_shape[0]
        if num_classes is not None and k != num_classes and not (k == 1 and num_classes == 2):
            raise ValueError(
                f"the last layer has {k} outputs; {name} needs one per class ({num_classes}) or 1 for two classes"
            )

    def _target(self, outputs, targets):
        xp = xp_of(outputs)
        if is_regression(targets):
            return targets.astype(outputs.dtype, copy=False).reshape(outputs.shape)
        if outputs.shape[1] == 1:
            return targets.astype(outputs.dtype)[:, None]
        onehot = xp.zeros(outputs.shape, outputs.dtype)
        onehot[xp.arange(len(targets)), targets] = 1.0
        return onehot

    def _values(self, diff: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _derivative(self, diff: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, outputs, targets):
        xp = xp_of(outputs)
        diff = outputs - self._target(outputs, targets)
        self._grad = self._derivative(diff) * (1.0 / diff.size)
        return xp.mean(self._values(diff.astype(np.float64)))

    def backward(self):
        return self._grad

    def probabilities(self, outputs):
        xp = xp_of(outputs)
        if outputs.shape[1] == 1:
            p1 = xp.clip(outputs[:, 0], 0.0, 1.0)
            return xp.stack([1.0 - p1, p1], axis=1)
        return outputs.copy()

    def predictions(self, outputs):
        xp = xp_of(outputs)
        if outputs.shape[1] == 1:
            return (outputs[:, 0] > 0.5).astype(np.int64)
        return xp.argmax(outputs, axis=1)


@LOSSES.register("mse", "mean_squared_error")
class MeanSquaredError(_Elementwise):
    """Mean of (output - target)² over samples and outputs: a regression's target values, or one-hot class vectors (the 0/1 label for one output)."""

    def _values(self, diff):
        xp = xp_of(diff)
        return xp.square(diff)

    def _derivative(self, diff):
        return diff * 2.0


@LOSSES.register("mae", "mean_absolute_error", "l1")
class MeanAbsoluteError(_Elementwise):
    """Regression: mean of |output - target| over samples and targets (gradient sign(d); 0 at d = 0)."""

    classes = False

    def _values(self, diff):
        xp = xp_of(diff)
        return xp.abs(diff)

    def _derivative(self, diff):
        xp = xp_of(diff)
        return xp.sign(diff)


@LOSSES.register("huber", "smooth_l1")
class Huber(_Elementwise):
    """Regression: mean over samples and targets of ½d² for |d| ≤ delta, delta·(|d| − ½delta) beyond (d = output − target).

    Options:
    delta: where the loss turns from quadratic to linear, in the target's (standardised, by default) units
    """

    classes = False

    def __init__(self, delta: PositiveFloat = 1.0):
        self.delta = delta

    def _values(self, diff):
        xp = xp_of(diff)
        a = xp.abs(diff)
        return xp.where(a <= self.delta, 0.5 * xp.square(diff), self.delta * (a - 0.5 * self.delta))

    def _derivative(self, diff):
        xp = xp_of(diff)
        return xp.clip(diff, -self.delta, self.delta)
