"""Evaluation: loss, accuracy, confusion matrix and per-class precision/recall, in batches.

A regression (float targets, data.task: regression) has no accuracy: its
evaluation keeps the model's outputs, and `regression_metrics` turns them
(in the target's own units) into MSE, RMSE, MAE, R² and the training-mean
baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import parallel
from .backend import fetch, for_model, to_host
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
    outputs: np.ndarray | None = None  # regression: (N, T) model outputs, in the units the model was trained on
    regression: RegressionMetrics | None = None  # regression: filled in by who knows the target's units (api, compare)

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.full(len(predicted), np.nan), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.full(len(actual), np.nan), where=actual > 0)


@dataclass
class RegressionMetrics:
    """A regression's metrics on one split, in the target's own units; several targets: the mean over targets
    (`per_target` has each target's). R² = 1 − Σ(y − ŷ)²/Σ(y − ȳ)² with ȳ the mean of this split's targets
    (NaN where they are constant); RMSE is averaged over targets like MAE (sklearn's uniform average). The
    baseline predicts the TRAINING split's mean for every row."""

    mse: float
    rmse: float
    mae: float
    r2: float
    baseline_mse: float
    baseline_r2: float
    per_target: dict[str, np.ndarray]  # name -> (T,) values, for mse, rmse, mae, r2, baseline_mse, baseline_r2


def _r2(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    return np.divide(sse, sst, out=np.full(sse.shape, np.nan), where=sst > 0) * -1.0 + 1.0


def regression_metrics(y: np.ndarray, predicted: np.ndarray, train_mean: np.ndarray) -> RegressionMetrics:
    """Metrics of (N, T) predictions of (N, T) targets, `train_mean` (T,) the baseline's prediction."""
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    predicted = np.asarray(predicted, np.float64).reshape(y.shape)
    diff = predicted - y
    sse = np.sum(diff * diff, axis=0)
    sst = np.sum(np.square(y - y.mean(axis=0)), axis=0) if len(y) else np.zeros(y.shape[1])
    base = np.sum(np.square(y - np.asarray(train_mean, np.float64)), axis=0)
    n = max(len(y), 1)
    per = {
        "mse": sse / n,
        "rmse": np.sqrt(sse / n),
        "mae": np.abs(diff).sum(axis=0) / n,
        "r2": _r2(sse, sst),
        "baseline_mse": base / n,
        "baseline_r2": _r2(base, sst),
    }
    if not len(y):
        per = {k: np.full(y.shape[1], np.nan) for k in per}
    mean = {k: float(np.mean(v)) for k, v in per.items()}
    return RegressionMetrics(**mean, per_target=per)


def regression_report(dataset, part: Split, outputs: np.ndarray) -> RegressionMetrics:
    """`regression_metrics` of a model's `outputs` on `part` of `dataset`, in the target's own units
    (undoing data.standardize_target), against the mean of the dataset's training targets."""
    train_mean = dataset.in_target_units(dataset.train.y).mean(axis=0)
    return regression_metrics(dataset.in_target_units(part.y), dataset.in_target_units(outputs), train_mean)


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
    A regression's evaluation has no accuracy (NaN) and keeps the outputs.
    On a GPU model, `split.x` may already be on the device (the Trainer uploads
    it once); targets stay on the host, and each batch's predictions come back.
    """
    if split.regression:
        outputs = np.empty(split.y.shape, np.float64)

        def keep(start, stop, out):
            outputs[start:stop] = to_host(out)

        value, penalty = _objective_over(model, loss, split, batch_size, keep)
        return Evaluation(len(split), value, float("nan"), np.zeros((0, 0), np.int64), penalty=penalty, outputs=outputs)
    predictions = np.empty(len(split), np.int64)
    probabilities = np.empty((len(split), num_classes), np.float64) if keep_probabilities else None

    def classify(start, stop, out):
        predictions[start:stop] = to_host(loss.predictions(out))
        if probabilities is not None:
            probabilities[start:stop] = to_host(loss.probabilities(out))

    value, penalty = _objective_over(model, loss, split, batch_size, classify)
    n = len(split)
    return Evaluation(
        n=n,
        loss=value,
        accuracy=float(np.mean(predictions == split.y)) if n else float("nan"),
        confusion=confusion_matrix(split.y, predictions, num_classes),
        probabilities=probabilities,
        penalty=penalty,
    )


def _objective_over(model, loss: Loss, split: Split, batch_size: int, each) -> tuple[float, float]:
    """(objective, its penalty part) over a split in evaluation mode, batch by batch; `each(start, stop, outputs)`
    sees every batch's outputs (a regression keeps them; a classifier keeps its predictions)."""
    forward = parallel.evaluation_forward(model)
    total = activity = 0.0  # device scalars on a GPU: read once, at the end
    for start in range(0, len(split), batch_size):
        stop = min(start + batch_size, len(split))
        outputs = forward(for_model(model, split.x[start:stop]))
        each(start, stop, outputs)
        total += loss.forward(outputs, for_model(model, split.y[start:stop])) * (stop - start)
        if model.regularized:
            activity += model.activity_penalty() * (stop - start)
    n = len(split)
    penalty = (model.penalty() + activity / n) if n and model.regularized else 0.0
    total, penalty = fetch(total, penalty)
    return (total / n + penalty if n else float("nan")), penalty


def ensemble_regression(outputs: list[np.ndarray], y: np.ndarray, loss: Loss) -> Evaluation:
    """The mean prediction of several regressions' (N, T) outputs (no vote); its loss is the loss of that mean."""
    mean = np.mean(outputs, axis=0)
    return Evaluation(
        n=len(y),
        loss=float(loss.forward(mean, y)) if len(y) else float("nan"),
        accuracy=float("nan"),
        confusion=np.zeros((0, 0), np.int64),
        outputs=mean,
    )


def predict(model, x: np.ndarray, batch_size: int = 1000, transform=None) -> np.ndarray:
    """Evaluation-mode outputs (or `transform(outputs)`, e.g. loss.probabilities) for all of x, in batches
    (memory bounded by the batch), each split across threads where evaluation splits it."""
    forward = parallel.evaluation_forward(model)
    out = None
    for start in range(0, len(x), batch_size):
        y = forward(for_model(model, x[start : start + batch_size]))
        y = to_host(transform(y) if transform is not None else y)
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
