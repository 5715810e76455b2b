"""The layer contract shared by every layer.

A layer declares the shapes of its trainable arrays in `build` (allocating
nothing, so `nncli summary` costs nothing), then the model allocates one flat
parameter vector θ and one gradient vector and hands each layer reshaped
views (`params`, `grads`). `forward` caches what `backward` needs; `backward`
*overwrites* `grads` (no accumulation, no zero_grad) and returns dL/dx.

Buffers: `forward`/`backward` write into work arrays owned by the layer and
reused across calls of the same batch shape (allocation churn costs more than
the arithmetic here). So a returned array is valid until the layer's next
call; `backward` may overwrite the `grad_out` it was given, and `forward`
never modifies its input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from ..backend import CPU, Backend
from ..registry import Registry
from ..regularizers import REGULARIZERS

LAYERS = Registry("layer")


class ShapeError(ValueError):
    """A layer cannot take the shape it is given (raised by build, reported with the layer's path)."""

Shape = tuple[int, ...]


class Layer:
    """Base class. Subclasses declare `param_shapes` in build() and fill `grads` in backward()."""

    registered_name = "layer"
    # Trainable arrays that are kernels (weights, not biases, scales or slopes): training.weight_decay
    # and kernel_regularizer apply to these. Names not in param_shapes are ignored.
    kernel_names: tuple[str, ...] = ("W",)
    kernel_regularizer = None  # a Regularizer on the kernels (set_regularizers)
    activity_regularizer = None  # a Regularizer on this layer's output, applied by the model
    spec: dict  # resolved options, set by the registry
    has_randomness = False  # draws random numbers in forward (dropout, rrelu): gets its own Generator
    updates_state = False  # a training forward changes its state arrays (batchnorm's running statistics)
    independent_samples = False  # each sample's output and gradient depend on that sample alone (so a batch may be split)
    compute_bound = False  # enough work per sample that two threads on half-batches beat one threaded BLAS call (conv)
    takes_mask = False  # forward(x, training, mask) receives the (N, T) mask of valid steps of padded sequences

    @property
    def compute_bound_in_evaluation(self) -> bool:
        """Two threads on half-batches beat one threaded BLAS call for evaluation batches (conv; recurrent layers,
        whose small training batches are as fast either way, set it on its own)."""
        return self.compute_bound

    @property
    def independent_in_evaluation(self) -> bool:
        """Each sample's evaluation-mode output depends on that sample alone, and forward changes nothing and draws
        nothing (so an evaluation batch may be split). Dropout, batchnorm and rrelu set it True."""
        return self.independent_samples and not self.has_randomness

    backend: Backend = CPU  # where the layer's arrays live and compute; the model sets it (`xp` is its array module)

    @property
    def xp(self):
        return self.backend.xp

    def __init__(self) -> None:
        self.input_shape: Shape = ()
        self.output_shape: Shape = ()
        self.param_shapes: dict[str, Shape] = {}  # trainable arrays, e.g. {"W": (in, out)}
        self.state_shapes: dict[str, Shape] = {}  # non-trainable saved arrays (running statistics)
        self.params: dict[str, np.ndarray] = {}  # views into the model's θ
        self.grads: dict[str, np.ndarray] = {}  # views into the model's ∇θ
        self.state: dict[str, np.ndarray] = {}
        self.children: dict[str, Layer] = {}  # sub-layers whose arrays are named "<child>.<name>"
        self.needs_input_grad = True  # False for the first layer: its dL/dx is never used
        self.rng: np.random.Generator | None = None
        self._buffers: dict[str, OrderedDict] = {}
        self._ones: tuple | None = None

    # -- contract -------------------------------------------------------------
    def build(self, input_shape: Shape) -> Shape:
        """Check the per-sample input shape, declare param_shapes; return the output shape."""
        raise NotImplementedError

    def initialize(self, rng: np.random.Generator) -> None:
        """Fill self.params in place (they are views into θ). Default: parameterless."""
        for child in self.children.values():
            child.initialize(rng)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x: (N, *input_shape) -> (N, *output_shape); caches what backward needs."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        """dL/d(output) -> dL/d(input) (None when not needs_input_grad); writes self.grads."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------
    def set_regularizers(self, kernel_regularizer=None, activity_regularizer=None) -> None:
        """For layers with a kernel: one call in the constructor, with the options of the same names.

        The model does the rest: it adds the kernel penalty (on every name in
        `kernel_names`) and the activity penalty (on the layer's output, a mean
        over the batch) to the objective and their gradients to ∇θ and dL/dy.
        """
        create = lambda spec: REGULARIZERS.create(spec) if spec is not None else None  # noqa: E731
        self.kernel_regularizer = create(kernel_regularizer)
        self.activity_regularizer = create(activity_regularizer)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """(prefix, layer) for this layer and its children, depth first: the prefix names the layer's arrays ('act.')."""
        yield prefix, self
        for name, child in self.children.items():
            yield from child.walk(f"{prefix}{name}.")

    def kernels(self) -> dict[str, object]:
        """{name: its kernel_regularizer or None} for own and children's kernels ('<child>.' prefixed)."""
        return {p + k: layer.kernel_regularizer for p, layer in self.walk() for k in layer.kernel_names if k in layer.param_shapes}

    @property
    def name(self) -> str:
        return self.registered_name

    def count_params(self) -> int:
        return sum(int(np.prod(s)) for s in self.all_param_shapes().values())

    def all_param_shapes(self) -> dict[str, Shape]:
        """Own and children's trainable shapes, children's names prefixed '<child>.'."""
        return {p + k: s for p, layer in self.walk() for k, s in layer.param_shapes.items()}

    def all_state_shapes(self) -> dict[str, Shape]:
        return {p + k: s for p, layer in self.walk() for k, s in layer.state_shapes.items()}

    def bind(self, params: dict, grads: dict, state: dict) -> None:
        """Receive views for every name of all_param_shapes()/all_state_shapes(); hand children theirs."""
        for p, layer in self.walk():
            layer.params = {k: params[p + k] for k in layer.param_shapes}
            layer.grads = {k: grads[p + k] for k in layer.param_shapes}
            layer.state = {k: state[p + k] for k in layer.state_shapes}

    def training_side_effect(self) -> str | None:
        """Why a training-mode forward of this layer (or a child) is not a pure function of θ and x, or None."""
        layers = [layer for _, layer in self.walk()]
        if any(layer.has_randomness for layer in layers):
            return "draws random numbers in every training pass"
        if any(layer.updates_state for layer in layers):
            return "updates its running statistics in every training pass"
        return None

    def random_layers(self) -> list[Layer]:
        """This layer and its children that draw random numbers in forward."""
        return [layer for _, layer in self.walk() if layer.has_randomness]

    def buffer(self, key: str, shape: Shape, dtype) -> np.ndarray:
        """A work array reused across calls with the same shape (a few shapes kept per key)."""
        xp = self.xp
        slots = self._buffers.setdefault(key, OrderedDict())
        tag = (shape, np.dtype(dtype))
        buf = slots.get(tag)
        if buf is None:
            buf = xp.empty(shape, dtype)
            slots[tag] = buf
            if len(slots) > 3:  # train batch, last partial batch, evaluation batch
                slots.popitem(last=False)
        else:
            slots.move_to_end(tag)
        return buf

    def uniform(self, key: str, shape: Shape, dtype) -> np.ndarray:
        """U[0, 1) draws from the layer's generator, on the layer's device. The generator is always the host's
        (so a seed draws the same numbers on every device, and its state is saved for exact resume): on a GPU
        the draws are uploaded."""
        if self.backend.on_host:
            buf = self.buffer(key, shape, dtype)
            self.rng.random(out=buf, dtype=buf.dtype)
            return buf
        return self.backend.to_device(self.rng.random(shape, dtype))

    def ones(self, n: int, dtype) -> np.ndarray:
        """A cached vector of n ones: bias gradients as ones @ dz beat dz.sum(axis=0) on tall arrays."""
        xp = self.xp
        key = (n, np.dtype(dtype))
        if self._ones is None or self._ones[0] != key:
            self._ones = (key, xp.ones(n, dtype))
        return self._ones[1]

    def output_mask(self, mask: np.ndarray | None) -> np.ndarray | None:
        """The (N, T) mask of valid steps of this layer's output, from its input's: kept while the output keeps
        the time axis, None once it is gone (pooled, flattened, a last state)."""
        if mask is None or len(self.output_shape) != 2 or self.output_shape[0] != mask.shape[1]:
            return None
        return mask

    def work_elements(self) -> int:
        """Elements per sample this layer keeps between forward and backward besides its output (memory estimate)."""
        return 0

    def describe(self) -> str:
        """One-line description for summaries, e.g. 'dense(16, sigmoid)'."""
        return self.name

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel: dense (in, out); conv (kh, kw, in, out)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive
