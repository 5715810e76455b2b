"""Evaluation: loss, accuracy, confusion matrix and per-class precision/recall, in batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import parallel
from .data import Split
from .losses import Loss


@dataclass
class Evaluation:
    n: int
    loss: float
    accuracy: float
    confusion: np.ndarray  # (K, K), rows = true class, columns = predicted
    probabilities: np.ndarray | None = None  # (N, K), kept for ensembles
    penalty: float = 0.0  # the regularisation part of `loss` (weight and activity penalties)

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.full(len(predicted), np.nan), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.full(len(actual), np.nan), where=actual > 0)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def evaluate(
    model,
    loss: Loss,
    split: Split,
    num_classes: int,
    batch_size: int = 1000,
    keep_probabilities: bool = False,
) -> Evaluation:
    """Evaluation-mode loss and metrics over a whole split, one batch at a time.

    The loss is the objective training reports: the mean data loss plus the
    model's penalties (weight penalties at θ, activity penalties on the
    evaluation-mode outputs, per sample), as Keras does, so training and
    validation losses compare. `Evaluation.penalty` says how much of it that is.
    """
    forward = parallel.evaluation_forward(model)
    total = 0.0
    activity = 0.0
    predictions = np.empty(len(split), np.int64)
    probabilities = np.empty((len(split), num_classes), np.float64) if keep_probabilities else None
    for start in range(0, len(split), batch_size):
        stop = min(start + batch_size, len(split))
        outputs = forward(split.x[start:stop])
        predictions[start:stop] = loss.predictions(outputs)
        if probabilities is not None:
            probabilities[start:stop] = loss.probabilities(outputs)
        total += loss.forward(outputs, split.y[start:stop]) * (stop - start)
        if model.regularized:
            activity += model.activity_penalty() * (stop - start)
    n = len(split)
    penalty = (model.penalty() + activity / n) if n and model.regularized else 0.0
    return Evaluation(
        n=n,
        loss=total / n + penalty if n else float("nan"),
        accuracy=float(np.mean(predictions == split.y)) if n else float("nan"),
        confusion=confusion_matrix(split.y, predictions, num_classes),
        probabilities=probabilities,
        penalty=penalty,
    )


def predict(model, x: np.ndarray, batch_size: int = 1000, transform=None) -> np.ndarray:
    """Evaluation-mode outputs (or `transform(outputs)`, e.g. loss.probabilities) for all of x, in batches
    (memory bounded by the batch), each split across threads where evaluation splits it."""
    forward = parallel.evaluation_forward(model)
    out = None
    for start in range(0, len(x), batch_size):
        y = forward(x[start : start + batch_size])
        y = transform(y) if transform is not None else y
        if out is None:
            out = np.empty((len(x), *y.shape[1:]), y.dtype)
        out[start : start + len(y)] = y
    if out is None:
        out = np.empty((0, *model.output_shape), model.dtype)
    return out


def ensemble(probabilities: list[np.ndarray], y: np.ndarray, num_classes: int) -> tuple[Evaluation, Evaluation]:
    """(mean of predicted probabilities, majority vote) over several models' (N, K) probabilities.

    The mean's loss is the negative log-likelihood of the averaged probabilities;
    the vote breaks ties by the mean probability. The vote has no loss (NaN).
    """
    mean = np.mean(probabilities, axis=0)
    mean_pred = np.argmax(mean, axis=1)
    picked = np.clip(mean[np.arange(len(y)), y], 1e-12, None)
    by_mean = Evaluation(
        n=len(y),
        loss=float(-np.mean(np.log(picked))),
        accuracy=float(np.mean(mean_pred == y)),
        confusion=confusion_matrix(y, mean_pred, num_classes),
        probabilities=mean,
    )
    votes = np.zeros((len(y), num_classes))
    for p in probabilities:
        votes[np.arange(len(y)), np.argmax(p, axis=1)] += 1.0
    vote_pred = np.argmax(votes + 1e-6 * mean, axis=1)  # ties go to the higher mean probability
    by_vote = Evaluation(
        n=len(y),
        loss=float("nan"),
        accuracy=float(np.mean(vote_pred == y)),
        confusion=confusion_matrix(y, vote_pred, num_classes),
    )
    return by_mean, by_vote
