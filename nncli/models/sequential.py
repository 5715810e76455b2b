"""Sequential model over one flat parameter vector.

All trainable arrays live in `theta` (and their gradients in `grad`), each
layer seeing reshaped views. First-order optimizers update `theta` in one
vectorised step; full-batch methods treat it as the point x of f(x); "same
initial weights" is `theta.copy()`.

The model holds layers, θ and the penalties its layers declare; the
objective (objective.py) adds them to the loss, so training, full-batch
minimisers and `metrics.evaluate` see the same sum and training and
validation losses compare. With no regulariser configured the penalty lists
are empty and cost nothing. The `sequential` model kind (`LayerStack`, at
the end) builds it from the `model:` section.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Annotated

import numpy as np

from ..backend import CPU, Backend, xp_of
from ..errors import ConfigError
from ..layers import LAYERS, Layer, ShapeError
from ..layers.fusion import fuse
from ..metrics import evaluate
from ..registry import PositiveInt
from ..regularizers import L2
from .base import MODELS, ModelKind, ModelPlan, PlanRow, shape_size


def split_padding(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A batch of sequences (N, T, D) padded with NaN steps -> (the batch with those steps zeroed, the (N, T) mask
    of valid steps); (x, None) when no step is padded. Data sources pad with NaN in every feature and never put
    NaN in a real step, so the first feature tells."""
    xp = xp_of(x)
    padded = xp.isnan(x[:, :, 0])
    if not padded.any():
        return x, None
    return xp.where(padded[:, :, None], 0, x).astype(x.dtype, copy=False), ~padded


def build_layers(layers: Sequence[Layer], input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Build each layer for the previous one's per-sample output shape (shapes only); return the last output shape."""
    shape = tuple(int(d) for d in input_shape)
    for i, layer in enumerate(layers):
        layer.input_shape = shape
        try:
            shape = tuple(layer.build(shape))
        except ShapeError as exc:
            raise ConfigError(f"{layer.name}: {exc}", ("model", "layers", i)) from None
        layer.output_shape = shape
        layer.needs_input_grad = i > 0
    return shape


class Sequential:
    """A stack of layers built for a per-sample `input_shape`, parameters in one flat vector.

    `weight_decay` (wd) adds ½·wd·Σw² over every kernel (weights, not biases,
    batch-norm scales or PReLU slopes) to the objective: gradient wd·w, the
    convention of torch's `weight_decay`, i.e. an l2 kernel regulariser with
    l2 = wd/2 (Keras writes l2 as λ·Σw²). It adds to any kernel_regularizer.
    """

    def __init__(
        self, layers: Sequence[Layer], input_shape: Sequence[int], dtype=np.float32, weight_decay: float = 0.0,
        backend: Backend = CPU,
    ):
        self.layers = list(layers)
        self.backend = backend  # where θ, ∇θ, state and every layer's work arrays live
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.output_shape = build_layers(self.layers, self.input_shape)
        fuse(self.layers)  # exact: a conv2d's ReLU runs after the max-pool that follows

        # One flat vector for θ and one for ∇θ; layers get views (never rebinding them).
        self._slots: list[tuple[int, str, slice, tuple[int, ...]]] = []
        offset = 0
        for i, layer in enumerate(self.layers):
            for name, pshape in layer.all_param_shapes().items():
                size = int(np.prod(pshape))
                self._slots.append((i, name, slice(offset, offset + size), tuple(pshape)))
                offset += size
        xp = backend.xp
        for layer in self.layers:
            for _, sub in layer.walk():
                sub.backend = backend
        self.theta = xp.zeros(offset, self.dtype)
        self.grad = xp.zeros(offset, self.dtype)
        self._bind([{n: xp.zeros(shp, self.dtype) for n, shp in layer.all_state_shapes().items()} for layer in self.layers])

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
        # Whether training batches of sequences can hold padded steps: None looks at every batch (a host copy per
        # batch on a GPU); the Trainer sets it once from its training data.
        self.training_batches_padded: bool | None = None
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

    def _fresh_layers(self) -> list[Layer]:
        return [LAYERS.create(layer.spec) if hasattr(layer, "spec") else copy.deepcopy(layer) for layer in self.layers]

    def replica(self) -> Sequential:
        """The same layers rebuilt from their specs, sharing this model's θ (and state) but with their own ∇θ and buffers."""
        twin = Sequential(self._fresh_layers(), self.input_shape, self.dtype, backend=self.backend)
        twin.theta = self.theta
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
        """Draw initial weights (every layer from the same Generator, in order). The draws are the host's on
        every device, so a seed gives the same initial weights on a GPU: a host twin draws them, then they are
        uploaded."""
        if not self.backend.on_host:
            twin = Sequential(self._fresh_layers(), self.input_shape, self.dtype)
            twin.initialize(rng)
            self.theta[...] = self.backend.to_device(twin.theta)
            state = dict(twin.named_state())
            for key, array in self.named_state():
                array[...] = self.backend.to_device(state[key])
            return
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
        """x: (N, *input_shape) -> (N, *output_shape), in the calling thread; the result is a work buffer,
        valid until the next call. (How a batch is spread over threads or chunks is parallel.py's business.)"""
        for _, _, x in self.layer_outputs(x, training):
            pass
        return x

    def layer_outputs(self, x: np.ndarray, training: bool = False) -> Iterator[tuple[int, Layer, np.ndarray]]:
        """(index, layer, its output) of one forward pass, layer by layer.

        Sequences padded with NaN (variable lengths) become zeros plus a (N, T) mask of valid steps, which
        mask-aware layers (`takes_mask`) receive; the mask follows the time axis until a layer removes it.
        """
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        mask = None
        if len(self.input_shape) == 2 and not (training and self.training_batches_padded is False):
            x, mask = split_padding(x)
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, training, mask) if layer.takes_mask else layer.forward(x, training)
            mask = layer.output_mask(mask)
            if i in self._activity:
                self._outputs[i] = x
            yield i, layer, x

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        """Back-propagate dL/d(outputs) of the last training forward; fills `grad` (activity penalties included).

        Returns dL/dx when the first layer's `needs_input_grad` is set (gradcheck sets it), else None; like any
        layer output it is a work buffer, valid until the next call.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            if i in self._activity:  # d(penalty)/dy joins dL/dy of this layer's output (grad_out may be overwritten)
                y = self._outputs[i]
                self._activity[i].add_gradient(y, grad_out, 1.0 / len(y))
            grad_out = self.layers[i].backward(grad_out)
        return grad_out

    # -- regularisation -------------------------------------------------------
    @property
    def regularized(self) -> bool:
        """Does the objective have any penalty term?"""
        return bool(self._penalties or self._activity)

    @property
    def weight_penalized(self) -> bool:
        """Does any kernel carry a weight penalty (a regularizer or weight decay)?"""
        return bool(self._penalties)

    @property
    def activity_regularized(self) -> bool:
        """Does any layer have an activity penalty? It is read from the layer outputs of the last forward,
        so code that runs parts of a batch on other model copies must combine their activity_penalty()."""
        return bool(self._activity)

    def penalty(self) -> float:
        """Weight penalties at the current θ (kernel regularizers and weight decay); 0.0 when none."""
        return sum((reg.penalty(self.theta[s]) for s, reg in self._penalties), 0.0)  # on θ's device

    def add_penalty_gradient(self) -> None:
        """Add ∇ of `penalty()` to `grad` (after backward, which overwrites `grad`)."""
        for s, reg in self._penalties:
            reg.add_gradient(self.theta[s], self.grad[s])

    def activity_penalty(self) -> float:
        """Activity penalties on the outputs of the last forward, each a mean over its samples; 0.0 when none."""
        return sum((reg.penalty(self._outputs[i]) / len(self._outputs[i]) for i, reg in self._activity.items()), 0.0)

    # -- description ----------------------------------------------------------
    def summary_rows(self) -> list[PlanRow]:
        return layer_rows(self.layers)


def _all_state(layer: Layer) -> dict[str, np.ndarray]:
    """The state arrays of a layer and its children, named as in all_state_shapes()."""
    return {p + k: v for p, sub in layer.walk() for k, v in sub.state.items()}


def layer_rows(layers: Sequence[Layer]) -> list[PlanRow]:
    """Summary rows of built layers, with the elements per sample that training keeps for each.

    The activation count is an estimate: the layer's output, its gradient and a cache
    (3 × output), plus the work arrays the layer itself declares (`work_elements`:
    a convolution's im2col patches, a recurrent layer's gates and states).
    """
    rows = []
    for i, layer in enumerate(layers):
        out = layer.output_shape
        rows.append(PlanRow(i, layer.describe(), out, layer.count_params(), 3 * shape_size(out) + layer.work_elements()))
    return rows


@MODELS.register("sequential")
class LayerStack(ModelKind):
    """A stack of layers trained by backpropagation (the default model kind).

    Options:
    layers: the layer list, first to last
    input_shape: per-sample input shape; null reads it from the data headers
    """

    def __init__(self, layers: list[Annotated[object, LAYERS]], input_shape: tuple[PositiveInt, ...] | None = None):
        if not layers:
            raise ConfigError("the model needs at least one layer", ("model", "layers"))
        self.layers = list(layers)  # the instances validation built: shapes and descriptions only, never bound
        self.layer_specs = [layer.spec for layer in layers]
        self.input_shape = input_shape

    def plan(self, input_shape, num_classes, dtype) -> ModelPlan:
        output_shape = self._built(self.layers, input_shape)
        return ModelPlan(tuple(input_shape), output_shape, layer_rows(self.layers), np.dtype(dtype).itemsize)

    runs_on_gpu = True

    def build(self, input_shape, num_classes, dtype, settings, backend: Backend = CPU) -> Sequential:
        """A model of fresh layers (each model owns its layers' buffers and views), computing on `backend`."""
        layers = [LAYERS.create(spec, ("model", "layers", i)) for i, spec in enumerate(self.layer_specs)]
        self._built(layers, input_shape)
        return Sequential(layers, input_shape, dtype, settings.weight_decay, backend)

    @staticmethod
    def _built(layers, input_shape) -> tuple[int, ...]:
        """build_layers, refusing a sequence model whose output still has a time axis (targets are one per sequence)."""
        output_shape = build_layers(layers, input_shape)
        if len(input_shape) == 2 and len(output_shape) == 2:
            raise ConfigError(
                f"{layers[-1].describe()}: the model's output {output_shape} still has a time axis, but targets are one "
                "per sequence; set return_sequences: false on the last recurrent layer, or add global_avgpool1d or "
                "global_maxpool1d before the classifier",
                ("model", "layers", len(layers) - 1),
            )
        return output_shape

    def training_side_effect(self):
        for i, layer in enumerate(self.layers):
            effect = layer.training_side_effect()
            if effect is not None:
                return ("model", "layers", i), f"{layer.describe()} {effect}"
        return None

    def evaluate(self, model, loss, split, num_classes, batch_size=1000, keep_probabilities=False):
        return evaluate(model, loss, split, num_classes, batch_size, keep_probabilities)
