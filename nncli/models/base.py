"""Model kinds (`model.type`): the contract every kind of model fulfils, and their registry.

A kind is a registered class whose constructor signature is the schema of the
`model:` section, as for every component: `nncli components model` lists its
options and a misspelt one is a one-line error. `train`, `eval`, `summary`,
`compare-optimizers` and checkpoints work through this contract alone, so a
new kind is one class (and its test), registered with `@MODELS.register`:

- `gradient_trained`: True for kinds fitted by the Trainer, with a `loss`, an
  `optimizer` and every `training:` setting; False for kinds fitted in one
  shot by `fit`: naming `loss` or `optimizer` is then an error, and of the
  `training:` section only `one_shot_training` options apply.
- `plan(input_shape, num_classes, dtype)`: the summary rows and parameter
  count from shapes alone (nothing allocated), and `memory(plan, ...)`, the
  bytes training needs, so a model that cannot fit is refused up front.
- `build(input_shape, num_classes, dtype, settings)`: the model itself (kinds
  with `runs_on_gpu` also take `backend=`, backend.py, for training.device), which
  holds its arrays and offers `num_params`, `dtype`, `input_shape`,
  `named_params()` and `named_state()` (the checkpoint's param/ and state/
  arrays, restored in place), `initialize(rng)`, and for the Trainer
  `theta`/`grad`, `forward`/`backward`, penalties, `layer_slices`, `seed_layers`
  (what objective.py and the Trainer use).
- `fit(model, split)` (one-shot kinds) and `evaluate(model, loss, split,
  num_classes, batch_size, keep_probabilities)` -> metrics.Evaluation.
- `check_fits(dataset)`: refuse data the kind cannot fit, before any run
  folder exists; `fit_summary(model)`: what a one-shot fit stored (printed
  after `train`, kept as the run folder's storage.json); `no_epochs`: why
  `--resume`, `--weights` and `--seeds` do not apply, for kinds without epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..memory import available_memory, human_bytes  # noqa: F401  (re-exported: nncli.models)
from ..registry import Registry

MODELS = Registry("model")
DEFAULT_KIND = "sequential"


@dataclass(frozen=True)
class PlanRow:
    """One row of `nncli summary`: a layer (or part) of the model, from shapes alone."""

    index: int
    layer: str  # e.g. "dense(16, sigmoid)"
    output_shape: tuple[int, ...]  # per sample
    params: int
    activations: int = 0  # elements per sample that training keeps for this row (outputs, caches, work arrays)


@dataclass(frozen=True)
class ModelPlan:
    """A model described from shapes alone: what `summary` prints and the memory estimate reads."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: list[PlanRow]
    itemsize: int  # bytes per value (float32: 4)

    @property
    def num_params(self) -> int:
        return sum(r.params for r in self.rows)


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a fit needs, by part, and the row that needs the most (named in a refusal)."""

    parts: dict[str, int] = field(default_factory=dict)  # e.g. {"parameters": ..., "activations (batch 32)": ...}
    largest: str = ""  # the layer that contributes most, e.g. "model.layers.0 dense(1000000000, relu)"

    @property
    def total(self) -> int:
        return sum(self.parts.values())


class ModelKind:
    """Base class of model kinds; see the module docstring for the contract."""

    registered_name = "model"
    spec: dict
    input_shape: tuple[int, ...] | None = None  # declared in the config (else read from the data headers)
    gradient_trained: ClassVar[bool] = True
    one_shot_training: ClassVar[tuple[str, ...]] = ("eval_batch_size", "dtype")  # settings a one-shot fit reads
    no_epochs: ClassVar[str | None] = None  # why --resume, --weights and --seeds do not apply, when they do not
    runs_on_gpu: ClassVar[bool] = False  # build() takes backend= (training.device: gpu); others run on the CPU only

    def plan(self, input_shape: tuple[int, ...], num_classes: int | None, dtype) -> ModelPlan:
        raise NotImplementedError

    def memory(self, plan: ModelPlan, batch_size: int, parameter_copies: int) -> MemoryNeed:
        """Parameters × `parameter_copies` (θ, ∇θ, optimizer slots, ...) plus a batch's activations, in bytes."""
        per_sample = sum(r.activations for r in plan.rows)
        largest = max(plan.rows, key=lambda r: r.params * parameter_copies + r.activations * batch_size, default=None)
        return MemoryNeed(
            {
                f"parameters ×{parameter_copies}": plan.num_params * parameter_copies * plan.itemsize,
                f"activations (batch {batch_size})": per_sample * batch_size * plan.itemsize,
            },
            f"model.layers.{largest.index} {largest.layer}" if largest is not None else "",
        )

    def build(self, input_shape: tuple[int, ...], num_classes: int | None, dtype, settings):
        raise NotImplementedError

    def training_side_effect(self) -> tuple[tuple, str] | None:
        """(key path, why) when a training pass is random or changes state, so f(θ) is not one fixed
        function (full-batch minimisers and compare-optimizers need one); None when it is."""
        return None

    def check_fits(self, dataset) -> None:
        """Refuse (ConfigError or DataError naming the key) data this kind cannot fit; called before any run folder exists."""

    def fit(self, model, split) -> None:
        """One-shot kinds: fit `model` to a training split (gradient-trained kinds use the Trainer)."""
        raise NotImplementedError

    def fit_summary(self, model) -> dict:
        """One-shot kinds: what the fit stored, as JSON (printed after `train`, written to storage.json)."""
        return {}

    def evaluate(self, model, loss, split, num_classes: int, batch_size: int = 1000, keep_probabilities: bool = False):
        raise NotImplementedError


def shape_size(shape) -> int:
    return math.prod(int(d) for d in shape)
