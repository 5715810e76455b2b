"""Split the batches of conv and recurrent nets across two Python threads (an execution strategy, chosen once per model).

NumPy releases the GIL inside BLAS and ufunc loops, so two threads, each
running single-threaded BLAS on half a batch, keep two cores busy through the
im2col copies, pooling and elementwise work that multi-threaded BLAS leaves
serial (28 → 22 s per MNIST epoch for the seed CNN in PERFORMANCE.md). Small
MLPs get slower this way, so only models with a compute-bound layer (conv2d, lstm/gru/rnn)
do it, for training steps and for evaluation-mode forward passes (which
split for dropout, batchnorm and rrelu too: per-sample and deterministic there).

The second half runs on a replica: the same layers rebuilt from their specs,
whose parameters are views of the model's θ and whose gradients, caches and
work buffers are its own. The model's own layers do the first half. The
gradients are combined weighted by sub-batch size, so the result is the
gradient of the mean loss over the whole batch. Whether and where a batch is
split depends on the model and the batch size only, never on the machine's
core count, so a seed gives the same history on every run.

The model knows nothing of this: `splitter_for(model)` decides once per model
(and keeps the splitter, so its replica and buffers are made once), the
objective (objective.py) and evaluation (`evaluation_forward`) use it.

NOTE: the BLAS thread limit is process-wide; two models training at once in
different threads of one process would fight over it (results stay correct).
"""

from __future__ import annotations

import copy
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import CPU

MIN_HALF = 8  # samples per half below which one thread is faster
MAX_CHUNK = 1024  # larger batches (full-batch objectives) of conv and recurrent nets go through in chunks: large work arrays per sample

try:  # threadpoolctl sets BLAS to one thread per half while both halves run
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - a declared dependency
    ThreadpoolController = None

_controller = None
_controller_lock = threading.Lock()


def _blas_controller():
    global _controller
    with _controller_lock:
        if _controller is None:
            _controller = ThreadpoolController()
    return _controller


def can_split(model, training: bool = True) -> bool:
    """Worth and safe to split: a compute-bound layer, and every layer's samples independent; in training also
    stateless and deterministic (evaluation-mode dropout, batchnorm and rrelu are per-sample and change nothing)."""
    layers = [layer for top in model.layers for _, layer in top.walk()]
    if (
        ThreadpoolController is None
        or not getattr(model, "backend", CPU).on_host  # on a GPU, halves would only double the kernel launches
        or model.activity_regularized  # activity penalties read the outputs of the whole batch
        or not any(layer.compute_bound if training else layer.compute_bound_in_evaluation for layer in layers)
    ):
        return False
    if not training:
        return all(layer.independent_in_evaluation for layer in layers)
    return all(layer.independent_samples and not layer.has_randomness for layer in layers) and not any(
        layer.all_state_shapes() for layer in model.layers
    )


_splitters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (BatchSplitter | None, splits in training)


def splitter_for(model, training: bool = True) -> BatchSplitter | None:
    """The model's BatchSplitter when its batches (training ones, or evaluation ones) go through two threads, else None."""
    if model not in _splitters:
        splits = can_split(model, training=False)  # a model that splits in training splits in evaluation
        _splitters[model] = (BatchSplitter(model) if splits else None, splits and can_split(model))
    splitter, in_training = _splitters[model]
    return splitter if in_training or not training else None


def takes_chunks(model) -> bool:
    """Conv and recurrent nets whose samples are independent take large batches (full-batch objectives) in
    chunks of MAX_CHUNK: their work arrays are up to ~1 MB per sample. (MLPs need little memory per sample, and
    chunking would change their rounding.)"""
    walked = [layer for top in model.layers for _, layer in top.walk()]
    return any(layer.compute_bound_in_evaluation for layer in walked) and all(layer.independent_samples for layer in walked)


def evaluation_forward(model):
    """x -> evaluation-mode outputs: both halves in parallel where the model and the batch size allow."""
    splitter = splitter_for(model, training=False)

    def forward(x: np.ndarray) -> np.ndarray:
        if splitter is not None and splitter.applies(len(x)):
            return splitter.forward(x)
        return model.forward(x, training=False)

    return forward


def _with_errstate(settings: dict, fn):
    """fn run under the caller's floating-point error settings: np.errstate is per thread."""

    def run(*args):
        with np.errstate(**settings):
            return fn(*args)

    return run


class BatchSplitter:
    """Runs the per-sample part of a training step as two half-batch parts in parallel and combines them exactly."""

    def __init__(self, model):
        self.model = model
        self.replica = model.replica()
        self._executor: ThreadPoolExecutor | None = None
        self._losses: dict[int, tuple[object, object]] = {}  # id(loss) -> (loss, the replica's copy)
        self._outputs: dict[tuple, np.ndarray] = {}  # evaluation outputs of both halves

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nncli-half-batch")
        return self._executor

    def applies(self, n: int) -> bool:
        return n >= 2 * MIN_HALF

    def _loss_copy(self, loss):
        entry = self._losses.get(id(loss))
        if entry is None or entry[0] is not loss:
            entry = self._losses[id(loss)] = (loss, copy.deepcopy(loss))
        return entry[1]

    def train_step(self, part, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """Mean loss and correct predictions over the batch, its two halves in parallel; model.grad = ∇ of the mean loss.

        `part(model, loss, x, y)` is the one-thread per-sample step (objective.sample_part).
        (Batches larger than MAX_CHUNK reach it chunk by chunk, from the Objective.)
        """
        n = len(x)
        n1 = n - n // 2  # the first half takes the odd sample
        other = self._loss_copy(loss)
        with _blas_controller().limit(limits=1, user_api="blas"):
            future = self._pool().submit(_with_errstate(np.geterr(), part), self.replica, other, x[n1:], y[n1:])
            value1, correct1 = part(self.model, loss, x[:n1], y[:n1])
            value2, correct2 = future.result()
        # ∇ of the whole batch's mean loss: sub-batch means weighted by their sizes
        w1, w2 = n1 / n, (n - n1) / n
        grad, other_grad = self.model.grad, self.replica.grad
        grad *= w1
        other_grad *= w2
        grad += other_grad
        return w1 * value1 + w2 * value2, correct1 + correct2

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluation-mode outputs, both halves of each chunk in parallel, gathered into one reused array."""
        n = len(x)
        key = (n, self.model.dtype)
        out = self._outputs.get(key)
        if out is None:
            self._outputs.clear()  # keep one shape: outputs are small
            out = self._outputs[key] = np.empty((n, *self.model.output_shape), self.model.dtype)
        for start in range(0, n, MAX_CHUNK):
            xs = x[start : start + MAX_CHUNK]
            if len(xs) < 2 * MIN_HALF:
                out[start : start + len(xs)] = self.model.forward(xs, False)
                continue
            n1 = len(xs) - len(xs) // 2
            with _blas_controller().limit(limits=1, user_api="blas"):
                future = self._pool().submit(_with_errstate(np.geterr(), self.replica.forward), xs[n1:], False)
                out[start : start + n1] = self.model.forward(xs[:n1], False)
                out[start + n1 : start + len(xs)] = future.result()
        return out
