"""Losses: the mean over the batch of a per-sample loss; `backward` includes the 1/N.

Every loss also says how its model outputs become class probabilities and
class predictions, so accuracy, confusion matrices and ensembles work the
same way whatever the loss.
"""

from __future__ import annotations

import numpy as np

from .registry import Registry
from .special import softmax

LOSSES = Registry("loss")


class Loss:
    """forward(outputs, targets) -> mean loss; backward() -> dL/d(outputs) of that call."""

    registered_name = "loss"
    spec: dict

    def check(self, output_shape: tuple[int, ...], num_classes: int | None) -> None:
        """Raise ValueError when the model's per-sample output shape does not fit this loss."""

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """(N, ...) outputs -> (N, K) class probabilities (or scores, for mse)."""
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray) -> np.ndarray:
        """(N, ...) outputs -> (N,) predicted class indices."""
        return np.argmax(outputs, axis=1)


def _buffer(owner, shape, dtype):
    buf = getattr(owner, "_buf", None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = owner._buf = np.empty(shape, dtype)
    return buf


@LOSSES.register("cross_entropy", "categorical_crossentropy", "softmax_cross_entropy")
class CrossEntropy(Loss):
    """Softmax + cross-entropy on logits with integer labels; log-sum-exp keeps it stable."""

    def check(self, output_shape, num_classes):
        if len(output_shape) != 1 or output_shape[0] < 2:
            raise ValueError(f"cross_entropy needs a vector of K >= 2 logits per sample, got output shape {output_shape}")
        if num_classes is not None and output_shape[0] != num_classes:
            raise ValueError(
                f"the last layer has {output_shape[0]} outputs but the data has {num_classes} classes"
            )

    def forward(self, outputs, targets):
        n = outputs.shape[0]
        p = _buffer(self, outputs.shape, outputs.dtype)
        np.subtract(outputs, outputs.max(axis=1, keepdims=True), out=p)  # shifted logits
        rows = np.arange(n)
        picked = p[rows, targets].astype(np.float64)
        np.exp(p, out=p)
        total = p.sum(axis=1)
        loss = float(np.mean(np.log(total.astype(np.float64)) - picked))
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

    def check(self, output_shape, num_classes):
        if tuple(output_shape) != (1,):
            raise ValueError(f"binary_cross_entropy needs one logit per sample (dense units: 1), got output shape {output_shape}")
        if num_classes is not None and num_classes != 2:
            raise ValueError(f"binary_cross_entropy needs 2 classes, the data has {num_classes}")

    def forward(self, outputs, targets):
        z = outputs[:, 0].astype(np.float64)
        y = targets.astype(np.float64)
        per_sample = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
        sig = 0.5 * (1.0 + np.tanh(0.5 * z))
        self._grad = ((sig - y) / len(z)).astype(outputs.dtype)[:, None]
        return float(per_sample.mean())

    def backward(self):
        return self._grad

    def probabilities(self, outputs):
        p1 = 0.5 * (1.0 + np.tanh(0.5 * outputs[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)

    def predictions(self, outputs):
        return (outputs[:, 0] > 0).astype(np.int64)


@LOSSES.register("mse", "mean_squared_error")
class MeanSquaredError(Loss):
    """Mean of (output - target)² over all output elements; targets are one-hot class vectors (or the 0/1 label for one output)."""

    def check(self, output_shape, num_classes):
        if len(output_shape) != 1:
            raise ValueError(f"mse needs a vector output per sample, got {output_shape}")
        k = output_shape[0]
        if num_classes is not None and k != num_classes and not (k == 1 and num_classes == 2):
            raise ValueError(
                f"the last layer has {k} outputs; mse needs one per class ({num_classes}) or 1 for two classes"
            )

    def _target(self, outputs, targets):
        if outputs.shape[1] == 1:
            return targets.astype(outputs.dtype)[:, None]
        onehot = np.zeros(outputs.shape, outputs.dtype)
        onehot[np.arange(len(targets)), targets] = 1.0
        return onehot

    def forward(self, outputs, targets):
        diff = outputs - self._target(outputs, targets)
        self._grad = diff * (2.0 / diff.size)
        return float(np.mean(np.square(diff, dtype=np.float64)))

    def backward(self):
        return self._grad

    def probabilities(self, outputs):
        if outputs.shape[1] == 1:
            p1 = np.clip(outputs[:, 0], 0.0, 1.0)
            return np.stack([1.0 - p1, p1], axis=1)
        return outputs.copy()

    def predictions(self, outputs):
        if outputs.shape[1] == 1:
            return (outputs[:, 0] > 0.5).astype(np.int64)
        return np.argmax(outputs, axis=1)
