"""Sequential model over one flat parameter vector.

All trainable arrays live in `theta` (and their gradients in `grad`), each
layer seeing reshaped views. First-order optimizers update `theta` in one
vectorised step; full-batch methods treat it as the point x of f(x); "same
initial weights" is `theta.copy()`.

Regularisation is part of the objective, not of the optimizer: `train_step`
(and so `loss_and_grad`) returns the data loss plus the penalties and adds
their gradients to `grad`, and `metrics.evaluate` reports the same sum, so
training and validation losses compare. With no regulariser configured the
penalty lists are empty and cost nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import parallel
from .errors import ConfigError
from .layers import LAYERS, Layer, ShapeError
from .layers.fusion import fuse
from .regularizers import L2


@dataclass(frozen=True)
class SummaryRow:
    index: int
    layer: str  # e.g. "dense(16, sigmoid)"
    output_shape: tuple[int, ...]  # per sample
    params: int


class Sequential:
    """A stack of layers built for a per-sample `input_shape`, parameters in one flat vector.

    `weight_decay` (wd) adds ½·wd·Σw² over every kernel (weights, not biases,
    batch-norm scales or PReLU slopes) to the objective: gradient wd·w, the
    convention of torch's `weight_decay`, i.e. an l2 kernel regulariser with
    l2 = wd/2 (Keras writes l2 as λ·Σw²). It adds to any kernel_regularizer.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int], dtype=np.float32, weight_decay: float = 0.0):
        self.layers = list(layers)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            layer.input_shape = shape
            try:
                shape = tuple(layer.build(shape))
            except ShapeError as exc:
                raise ConfigError(f"{layer.name}: {exc}", ("model", "layers", i)) from None
            layer.output_shape = shape
            layer.needs_input_grad = i > 0
        self.output_shape = shape
        fuse(self.layers)  # exact: a conv2d's ReLU runs after the max-pool that follows

        # One flat vector for θ and one for ∇θ; layers get views (never rebinding them).
        self._slots: list[tuple[int, str, slice, tuple[int, ...]]] = []
        offset = 0
        for i, layer in enumerate(self.layers):
            for name, pshape in layer.all_param_shapes().items():
                size = int(np.prod(pshape))
                self._slots.append((i, name, slice(offset, offset + size), tuple(pshape)))
                offset += size
        self.theta = np.zeros(offset, self.dtype)
        self.grad = np.zeros(offset, self.dtype)
        self._bind([{n: np.zeros(shp, self.dtype) for n, shp in layer.all_state_shapes().items()} for layer in self.layers])
        self._splitter = None  # parallel.BatchSplitter, made on the first train_step or forward of a conv net
        self._split_checked = False
        self._split_training = False  # the splitter also takes training steps (not only evaluation forwards)
        # Conv nets whose samples are independent take large batches (full-batch objectives) in chunks of
        # parallel.MAX_CHUNK: their work arrays are ~1 MB per sample. (MLPs need little memory per sample,
        # and chunking would change their rounding.)
        walked = [layer for top in self.layers for _, layer in top.walk()]
        self._chunked = any(layer.compute_bound for layer in walked) and all(layer.independent_samples for layer in walked)
        self._total: np.ndarray | None = None  # gradient sum over the chunks of a large batch

        # Regularisation. Weight penalties: (slice of θ, regularizer) for every penalised kernel.
        # Activity penalties: layer index -> regularizer, on that layer's output of the last forward.
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        decay = L2(self.weight_decay / 2) if self.weight_decay > 0 else None
        kernels = [layer.kernels() for layer in self.layers]
        self._penalties: list[tuple[slice, object]] = [
            (s, reg)
            for i, name, s, _ in self._slots
            if name in kernels[i]
            for reg in (kernels[i][name], decay)
            if reg is not None and reg.active
        ]
        self._activity: dict[int, object] = {
            i: layer.activity_regularizer
            for i, layer in enumerate(self.layers)
            if layer.activity_regularizer is not None and layer.activity_regularizer.active
        }
        self._outputs: dict[int, np.ndarray] = {}  # activity-regularised layers' latest outputs
        # Random layers (dropout, rrelu) work from the start; the trainer reseeds them from the run seed.
        self.seed_layers(np.random.SeedSequence(0))

    def _bind(self, states: list[dict]) -> None:
        """Hand every layer its views of θ and ∇θ (and its state arrays)."""
        for i, layer in enumerate(self.layers):
            mine = [(n, s, shp) for j, n, s, shp in self._slots if j == i]
            layer.bind(
                {n: self.theta[s].reshape(shp) for n, s, shp in mine},
                {n: self.grad[s].reshape(shp) for n, s, shp in mine},
                states[i],
            )

    def replica(self) -> Sequential:
        """The same layers rebuilt from their specs, sharing this model's θ (and state) but with their own ∇θ and buffers."""
        fresh = [LAYERS.create(layer.spec) if hasattr(layer, "spec") else copy.deepcopy(layer) for layer in self.layers]
        twin = Sequential(fresh, self.input_shape, self.dtype)
        twin.theta = self.theta
        twin._split_checked = True  # the replica itself never splits
        twin._bind([_all_state(layer) for layer in self.layers])
        return twin

    @classmethod
    def from_specs(
        cls, specs: Sequence, input_shape: Sequence[int], dtype=np.float32, weight_decay: float = 0.0
    ) -> Sequential:
        """Build from layer specs (names or {type: ...} mappings), as in `model.layers`."""
        layers = [LAYERS.create(spec, ("model", "layers", i)) for i, spec in enumerate(specs)]
        return cls(layers, input_shape, dtype, weight_decay)

    # -- parameters -----------------------------------------------------------
    @property
    def num_params(self) -> int:
        return int(self.theta.size)

    def param_key(self, index: int, name: str) -> str:
        """Checkpoint name of a trainable array: '<i>.<type>/<name>', e.g. '0.dense/W'."""
        return f"{index}.{self.layers[index].name}/{name}"

    def named_params(self) -> Iterator[tuple[str, np.ndarray]]:
        """('0.dense/W', view into θ) in θ order, the order of the checkpoint keys."""
        for i, name, s, shape in self._slots:
            yield self.param_key(i, name), self.theta[s].reshape(shape)

    def named_grads(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, name, s, shape in self._slots:
            yield self.param_key(i, name), self.grad[s].reshape(shape)

    def named_state(self) -> Iterator[tuple[str, np.ndarray]]:
        """Non-trainable arrays (running statistics), keyed like parameters."""
        for i, layer in enumerate(self.layers):
            for name, array in _all_state(layer).items():
                yield self.param_key(i, name), array

    def layer_slices(self) -> list[tuple[int, slice]]:
        """(layer index, slice of θ) for each layer that has parameters, in order."""
        spans: dict[int, slice] = {}
        for i, _, s, _ in self._slots:
            start = spans[i].start if i in spans else s.start
            spans[i] = slice(start, s.stop)
        return list(spans.items())

    def initialize(self, rng: np.random.Generator) -> None:
        """Draw initial weights (every layer from the same Generator, in order)."""
        for layer in self.layers:
            layer.initialize(rng)

    def seed_layers(self, seed_seq: np.random.SeedSequence) -> None:
        """Give every layer that draws random numbers in forward its own Generator."""
        randomized = [layer for top in self.layers for layer in top.random_layers()]
        for layer, child in zip(randomized, seed_seq.spawn(len(randomized))):
            layer.rng = np.random.default_rng(child)

    def random_generators(self) -> list[np.random.Generator]:
        return [layer.rng for top in self.layers for layer in top.random_layers() if layer.rng is not None]

    # -- computation ----------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x: (N, *input_shape) -> (N, *output_shape); the result is a work buffer, valid until the next call.

        Evaluation batches of conv nets are split across two threads, like training batches
        (also with dropout, batchnorm or rrelu, which are per-sample and deterministic in evaluation).
        """
        splitter = None if training else self._batch_splitter(len(x), training=False)
        if splitter is not None:
            return splitter.forward(x)
        return self.single_forward(x, training)

    def single_forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """forward in the calling thread, on the whole batch."""
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, training)
            if i in self._activity:
                self._outputs[i] = x
        return x

    def _batch_splitter(self, n: int, training: bool = True):
        """The BatchSplitter when this model splits batches of n samples across threads (training or evaluation ones), else None."""
        if not self._split_checked:
            self._split_checked = True
            if parallel.can_split(self, training=False):  # a model that splits in training splits in evaluation
                self._splitter = parallel.BatchSplitter(self)
                self._split_training = parallel.can_split(self)
        if self._splitter is not None and (self._split_training or not training) and self._splitter.applies(n):
            return self._splitter
        return None

    def backward(self, grad_out: np.ndarray) -> None:
        """Back-propagate dL/d(outputs) of the last training forward; fills `grad` (activity penalties included)."""
        for i in range(len(self.layers) - 1, -1, -1):
            if i in self._activity:  # d(penalty)/dy joins dL/dy of this layer's output (grad_out may be overwritten)
                y = self._outputs[i]
                self._activity[i].add_gradient(y, grad_out, 1.0 / len(y))
            grad_out = self.layers[i].backward(grad_out)

    # -- regularisation -------------------------------------------------------
    @property
    def regularized(self) -> bool:
        """Does the objective have any penalty term?"""
        return bool(self._penalties or self._activity)

    @property
    def activity_regularized(self) -> bool:
        """Does any layer have an activity penalty? It is read from the layer outputs of the last forward,
        so code that runs parts of a batch on other model copies must combine their activity_penalty()."""
        return bool(self._activity)

    def penalty(self) -> float:
        """Weight penalties at the current θ (kernel regularizers and weight decay); 0.0 when none."""
        return sum((reg.penalty(self.theta[s]) for s, reg in self._penalties), 0.0)

    def add_penalty_gradient(self) -> None:
        """Add ∇ of `penalty()` to `grad` (after backward, which overwrites `grad`)."""
        for s, reg in self._penalties:
            reg.add_gradient(self.theta[s], self.grad[s])

    def activity_penalty(self) -> float:
        """Activity penalties on the outputs of the last forward, each a mean over its samples; 0.0 when none."""
        return sum((reg.penalty(self._outputs[i]) / len(self._outputs[i]) for i, reg in self._activity.items()), 0.0)

    # -- objective ------------------------------------------------------------
    def train_step(self, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """Forward and backward on one training batch: fills `grad`; returns (objective, correct predictions).

        The objective is the batch's mean loss plus every penalty (activity
        penalties of this batch, weight penalties at θ); `grad` is its gradient.
        Conv nets split the batch across two threads (see parallel.py), and take
        batches larger than parallel.MAX_CHUNK in chunks (memory bounded by the
        chunk); the result is the same gradient, up to float rounding, and
        deterministic.
        """
        if self._chunked and len(x) > parallel.MAX_CHUNK:
            value, correct = self._chunked_step(loss, x, y)
        else:
            value, correct = self._step(loss, x, y)
        if self._penalties:
            value += self.penalty()
            self.add_penalty_gradient()
        return value, correct

    def _step(self, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """The per-sample part of train_step on one batch, its halves in two threads where the model and size allow."""
        splitter = self._batch_splitter(len(x))
        if splitter is not None:
            return splitter.train_step(loss, x, y)
        return self.single_train_step(loss, x, y)

    def _chunked_step(self, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """_step over chunks of parallel.MAX_CHUNK samples: Σ_chunks (size/n)·(chunk's mean objective and its gradient)."""
        n, chunk = len(x), parallel.MAX_CHUNK
        grad = self.grad
        if self._total is None:
            self._total = np.empty_like(grad)
        total = self._total
        value, correct = 0.0, 0
        for start in range(0, n, chunk):
            xs, ys = x[start : start + chunk], y[start : start + chunk]
            v, c = self._step(loss, xs, ys)
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

    def single_train_step(self, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """The per-sample part of train_step, in the calling thread: mean loss plus activity penalties, and their gradient.

        Weight penalties are left to train_step, which adds them once per batch:
        a caller that splits a batch combines these parts weighted by size.
        """
        outputs = self.single_forward(x, training=True)
        value = loss.forward(outputs, y)
        correct = int(np.count_nonzero(loss.predictions(outputs) == y))
        if self._activity:
            value += self.activity_penalty()
        self.backward(loss.backward())
        return value, correct

    def loss_and_grad(self, loss, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Training-mode objective (penalties included) and ∇θ on (x, y) at the current θ (the gradient is `self.grad`).

        The same computation as a training step, so full-batch minimisers and
        mini-batch optimizers see one objective.
        """
        value, _ = self.train_step(loss, x, y)
        return value, self.grad

    def predict(self, x: np.ndarray, batch_size: int = 1000, transform: Callable | None = None) -> np.ndarray:
        """Evaluation-mode outputs for all of x, in batches (memory bounded by the batch)."""
        out = None
        for start in range(0, len(x), batch_size):
            y = self.forward(x[start : start + batch_size], training=False)
            y = transform(y) if transform is not None else y
            if out is None:
                out = np.empty((len(x), *y.shape[1:]), y.dtype)
            out[start : start + len(y)] = y
        if out is None:
            out = np.empty((0, *self.output_shape), self.dtype)
        return out

    # -- description ----------------------------------------------------------
    def summary_rows(self) -> list[SummaryRow]:
        return [
            SummaryRow(i, layer.describe(), layer.output_shape, layer.count_params())
            for i, layer in enumerate(self.layers)
        ]


def _all_state(layer: Layer) -> dict[str, np.ndarray]:
    """The state arrays of a layer and its children, named as in all_state_shapes()."""
    return {p + k: v for p, sub in layer.walk() for k, v in sub.state.items()}
