"""The objective a model is trained on, and how one batch of it is computed.

f(θ) on a batch is the mean data loss plus every penalty (the activity
penalties of this batch, the weight penalties at θ); `Objective(x, y)`
returns it with the number of correct predictions and leaves ∇f in
`model.grad`. The model only holds layers and θ; the loss and the penalties
meet here, and the execution strategy is chosen once, when the objective is
made, from the model's layers and never from the machine:

- the whole batch in the calling thread (MLPs);
- conv nets whose samples are independent: the batch's halves in two threads
  (parallel.BatchSplitter), and batches larger than parallel.MAX_CHUNK (full-
  batch objectives) chunk by chunk, so memory is bounded by the chunk.

Every strategy returns the same gradient up to float rounding, and is
deterministic. `full_batch_objective` is what full-batch minimisers see.
"""

from __future__ import annotations

import numpy as np

from . import parallel
from .backend import for_model, to_host, xp_of
from .data.base import is_regression


def sample_part(model, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """The per-sample part of f on one batch, in the calling thread: mean loss plus activity penalties,
    their gradient in model.grad, and the correct predictions. Weight penalties are added once per batch
    by `Objective`, so a caller that splits a batch combines these parts weighted by size."""
    outputs = model.forward(x, training=True)
    value = loss.forward(outputs, y)
    # a regression has no accuracy; the count stays on the model's device (read with the step's other numbers)
    correct = 0 if is_regression(y) else xp_of(outputs).count_nonzero(loss.predictions(outputs) == y)
    if model.activity_regularized:
        value += model.activity_penalty()
    model.backward(loss.backward())
    return value, correct


class Objective:
    """f and ∇f of `model` under `loss` on training batches: `objective(x, y) -> (f, correct)`, ∇f in model.grad."""

    def __init__(self, model, loss):
        self.model, self.loss = model, loss
        self.splitter = parallel.splitter_for(model, training=True)  # None: one thread
        self.chunked = parallel.takes_chunks(model)
        self._total: np.ndarray | None = None  # gradient sum over the chunks of a large batch

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        model = self.model
        if self.chunked and len(x) > parallel.MAX_CHUNK:
            value, correct = self._chunks(x, y)
        else:
            value, correct = self._part(x, y)
        if model.weight_penalized:
            value += model.penalty()
            model.add_penalty_gradient()
        return value, correct

    def splits(self, n: int) -> bool:
        """Does a batch of n samples go through two threads?"""
        return self.splitter is not None and self.splitter.applies(n)

    def _part(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        if self.splits(len(x)):
            return self.splitter.train_step(sample_part, self.loss, x, y)
        return sample_part(self.model, self.loss, x, y)

    def _chunks(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """The per-sample part over chunks of parallel.MAX_CHUNK samples: Σ_chunks (size/n)·(chunk's mean and its gradient)."""
        n, chunk = len(x), parallel.MAX_CHUNK
        grad = self.model.grad
        if self._total is None:
            self._total = xp_of(grad).empty_like(grad)
        total = self._total
        value, correct = 0.0, 0
        for start in range(0, n, chunk):
            xs, ys = x[start : start + chunk], y[start : start + chunk]
            v, c = self._part(xs, ys)
            weight = len(xs) / n
            value += weight * v
            correct += c
            grad *= weight
            if start == 0:
                total[...] = grad
            else:
                total += grad
        grad[...] = total
        return value, correct


def full_batch_objective(model, loss, x: np.ndarray, y: np.ndarray):
    """θ -> (f(θ), ∇f(θ)): f over all of (x, y) and its gradient (a fresh array), what full-batch
    minimisers and their line searches see: the same objective as a training step."""
    # an ndarray as it is; an npy source's Rows gathered whole (full batch); on a GPU, uploaded once
    x, y = for_model(model, np.asarray(x, dtype=model.dtype)), for_model(model, y)
    objective = Objective(model, loss)

    def evaluate(theta: np.ndarray) -> tuple[float, np.ndarray]:
        model.theta[...] = for_model(model, theta)
        value, _ = objective(x, y)
        grad = model.grad
        return float(value), grad.copy() if isinstance(grad, np.ndarray) else to_host(grad)  # a fresh host array

    return evaluate
