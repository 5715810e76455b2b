"""An experiment: a config document validated and resolved into components.

Validation follows the structure of the code: every section and component is
checked against its constructor's signature by the registry's checker, so
the options `nncli components` lists are exactly the ones accepted here.
`Experiment.resolved()` is the full config with every default written out;
it goes into the run folder and every checkpoint, and rebuilding from it
gives the same experiment (resolve(resolve(c)) == resolve(c)).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from .config import Document, apply_overrides, document_from_dict, load_document
from .data import DATA_SOURCES, DataInfo, DataSource
from .errors import ConfigError
from .layers import LAYERS
from .losses import LOSSES, Loss
from .model import Sequential
from .optimizers import OPTIMIZERS, Minimizer
from .registry import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, check_options, quoted, to_plain
from .schedules import Schedule_


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when a monitored metric stops improving; the best weights are restored and saved.

    Options:
    monitor: history column watched (val_* needs validation data)
    mode: min (losses) or max (accuracies); auto picks from the column name
    patience: epochs without improvement before stopping
    min_delta: smallest change that counts as an improvement
    """

    monitor: Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"] = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: PositiveInt = 10
    min_delta: NonNegativeFloat = 0.0

    @property
    def direction(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "max" if self.monitor.endswith("accuracy") else "min"


@dataclass(frozen=True)
class TrainingConfig:
    """How to train (the `training:` section).

    Options:
    epochs: passes over the training data (iterations, for full-batch minimisers)
    batch_size: samples per update (full-batch optimizers use the whole training set)
    shuffle: reshuffle the training data every epoch (seeded)
    weight_decay: adds ½·weight_decay·Σw² over every kernel (not biases) to the loss: gradient weight_decay·w, as torch
    eval_batch_size: samples per forward pass when evaluating; bounds memory only
    dtype: floating-point type of weights and activations
    schedule: learning-rate schedule, one rate per epoch (see `schedule` components)
    early_stopping: stop when a metric stops improving, restoring the best weights
    clip_norm: rescale each update's gradient to at most this global L2 norm
    clip_value: clip every gradient element to [-clip_value, clip_value]
    log_gradients: write per-layer gradient norms and activation statistics to gradients.csv
    """

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    shuffle: bool = True
    weight_decay: NonNegativeFloat = 0.0
    eval_batch_size: PositiveInt = 1000
    dtype: Literal["float32", "float64"] = "float32"
    schedule: Schedule_ = "constant"
    early_stopping: EarlyStopping | None = None
    clip_norm: PositiveFloat | None = None
    clip_value: PositiveFloat | None = None
    log_gradients: bool = False


@dataclass(frozen=True)
class CompareConfig:
    """Settings for `nncli compare-optimizers` (the `compare:` section).

    Every optimizer starts from the same initial weights and is judged on the
    same objective, the training loss over the whole training set. An
    iteration is one outer iteration of a full-batch method (gd and the
    minimisers) and one update, i.e. one mini-batch, of the others. After each
    iteration a run stops on the first of: a non-finite loss (diverged), the
    gradient rule max|∇f| <= tolerance_grad, the change rule |f_k - f_k+1| <=
    tolerance_change·max(1, |f_k|) (mini-batch methods: once per epoch, between
    the losses at epoch ends, as their update-to-update change is noise),
    max_iterations. A minimiser (newton, bfgs, dfp, lbfgs, cg) applies the
    rules itself with its own tolerance_grad and tolerance_change options: set
    in its spec they win, left out they take this section's values.

    Options:
    optimizers: optimizer specs, {type: NAME, ...options}, each optionally with a label (default: the type)
    max_iterations: budget per optimizer: outer iterations (full batch) or updates (mini-batch)
    tolerance_grad: stop when ‖∇f‖∞ over the training set <= this (a minimiser's own setting wins)
    tolerance_change: stop when the training loss changes by <= this, relative to max(1, loss) (a minimiser's own setting wins)
    batch_size: samples per update for mini-batch methods; null = training.batch_size
    """

    optimizers: list
    max_iterations: PositiveInt = 1000
    tolerance_grad: NonNegativeFloat = 1e-6
    tolerance_change: NonNegativeFloat = 1e-9
    batch_size: PositiveInt | None = None

    def runs(self) -> list[tuple[str, dict, tuple]]:
        """(label, optimizer spec, key path) per optimizer, in order."""
        out = []
        for i, spec in enumerate(self.optimizers):
            spec = dict(spec)
            label = spec.pop("label", None) or spec["type"]
            out.append((label, spec, ("compare", "optimizers", i)))
        return out


_SHARED_TOLERANCES = ("tolerance_grad", "tolerance_change")


def _compare_section(raw: dict) -> CompareConfig:
    """Validate the compare: section; every optimizer spec is built once by the registry (path compare.optimizers.i)."""
    options = check_options(CompareConfig, raw, ("compare",))
    if not options["optimizers"]:
        raise ConfigError("list at least one optimizer, e.g. [{type: gd}, {type: newton}]", ("compare", "optimizers"))
    specs, labels = [], []
    for i, spec in enumerate(options["optimizers"]):
        path = ("compare", "optimizers", i)
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict):
            raise ConfigError("expected an optimizer name or a mapping with 'type'", path)
        spec = dict(spec)
        label = spec.pop("label", None)
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ConfigError(f"expected a non-empty string, got {label!r}", (*path, "label"))
        if "type" in spec and isinstance(spec["type"], str) and spec["type"] in OPTIMIZERS:
            accepted = inspect.signature(OPTIMIZERS.get(spec["type"])).parameters
            for key in _SHARED_TOLERANCES:  # the section's stopping rule, unless the spec sets its own
                if key in accepted and key not in spec:
                    spec[key] = options[key]
        resolved = OPTIMIZERS.create(spec, path).spec
        specs.append(resolved)
        labels.append(label)
    # duplicates without labels get a number: adam, adam-2, ...
    taken: dict[str, int] = {}
    out = []
    for label, spec, i in zip(labels, specs, range(len(specs))):
        name = label or spec["type"]
        taken[name] = taken.get(name, 0) + 1
        if taken[name] > 1:
            if label is not None:
                raise ConfigError(f"label '{label}' is used twice; labels name the rows of the comparison", ("compare", "optimizers", i, "label"))
            name = f"{name}-{taken[name]}"
        out.append({**({"label": name} if name != spec["type"] else {}), **spec})
    return CompareConfig(**{**options, "optimizers": out})


def _model_section(layers: list[Annotated[object, LAYERS]], input_shape: tuple[PositiveInt, ...] | None = None):
    """The `model:` section.

    Options:
    layers: the layer list, first to last
    input_shape: per-sample input shape; null reads it from the data headers
    """


def _top_level(
    data: Annotated[object, DATA_SOURCES],
    model: dict,
    name: str | None = None,
    seed: NonNegativeInt = 0,
    loss: Annotated[object, LOSSES] = "cross_entropy",
    optimizer: Annotated[object, OPTIMIZERS] = "adam",
    training: dict | None = None,
    compare: dict | None = None,
):
    """The sections of a config file.

    Options:
    name: run name (default: the config file's name); the run folder is runs/<name>
    seed: seeds data splits, initial weights, shuffling and every random layer
    data: where the data comes from ({source: idx|csv, path: ...})
    model: {layers: [...]}
    loss: cross_entropy | binary_cross_entropy | mse
    optimizer: {type: adam, learning_rate: ...}
    training: epochs, batch size, ...
    compare: settings for `nncli compare-optimizers`: optimizers, max_iterations, tolerances, batch_size
    """


# The fixed parts of a config, for `nncli components section` and the README reference.
SECTIONS = {"(top level)": _top_level, "model": _model_section, "training": TrainingConfig, "compare": CompareConfig}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Experiment:
    name: str
    seed: int
    data: DataSource
    layer_specs: list  # resolved specs, one per layer
    input_shape: tuple[int, ...] | None  # as declared in model.input_shape
    loss: Loss
    optimizer_spec: dict
    training: TrainingConfig
    compare: CompareConfig | None
    doc: Document  # where values came from, for locating errors found later

    # -- building -------------------------------------------------------------
    def data_info(self) -> DataInfo:
        """Input shape and class count from the declared shape or the data headers (no data loaded)."""
        if self.input_shape is not None:
            return DataInfo(self.input_shape, None)
        with self.doc.errors_located():  # a missing data.path names its config line
            return self.data.inspect()

    def build_model(self, input_shape=None, num_classes: int | None = None, dtype=None) -> Sequential:
        """A fresh model; shape errors name the layer, a loss/output mismatch names `loss`."""
        if input_shape is None:
            info = self.data_info()
            input_shape, num_classes = info.input_shape, num_classes or info.num_classes
        with self.doc.errors_located():
            model = Sequential.from_specs(
                self.layer_specs, input_shape, dtype or self.training.dtype, self.training.weight_decay
            )
            try:
                self.loss.check(model.output_shape, num_classes)
            except ValueError as exc:
                raise ConfigError(str(exc), ("loss",)) from None
        return model

    def check_fits(self, dataset) -> None:
        """Settings that need what the data turned out to be (e.g. a validation split to monitor)."""
        watched = []  # (key path, monitored column)
        if self.training.early_stopping is not None:
            watched.append((("training", "early_stopping", "monitor"), self.training.early_stopping.monitor))
        path, schedule = ("training", "schedule"), self.training.schedule
        while schedule is not None:
            if hasattr(schedule, "monitor"):
                watched.append(((*path, "monitor"), schedule.monitor))
            path, schedule = (*path, "then"), getattr(schedule, "then", None)
        with self.doc.errors_located():
            for key_path, column in watched:
                if column.startswith("val_") and dataset.val is None:
                    raise ConfigError(f"{column} needs validation data; set data.validation_split above 0", key_path)

    def make_optimizer(self, spec: dict | None = None, path=("optimizer",)):
        with self.doc.errors_located():
            return OPTIMIZERS.create(spec if spec is not None else self.optimizer_spec, path)

    def check_optimizer_sizes(self, specs: list[tuple[dict, tuple]]) -> None:
        """Refuse optimizers whose dense P×P matrices would not fit this model, from shapes alone (no data loaded).

        `specs` holds (optimizer spec, key path) pairs; the error names the path and the memory needed.
        """
        with self.doc.errors_located():
            built = [(OPTIMIZERS.create(spec, path), path) for spec, path in specs]
        if not any(getattr(opt, "max_parameters", None) is not None for opt, _ in built):
            return  # nothing to check: skip reading the data headers
        model = self.build_model()
        with self.doc.errors_located():
            for opt, path in built:
                try:
                    if hasattr(opt, "check_size"):
                        opt.check_size(model.num_params)
                except ConfigError as exc:
                    raise exc.under(path) from None

    def seeds(self, purpose: str) -> np.random.SeedSequence:
        """Independent, reproducible seed streams per purpose (adding a purpose never shifts the others)."""
        key = {"data": 0, "init": 1, "shuffle": 2, "layers": 3, "augment": 4}[purpose]
        split_seed = getattr(self.data, "split_seed", None)
        seed = split_seed if purpose == "data" and split_seed is not None else self.seed
        return np.random.SeedSequence(seed, spawn_key=(key,))

    # -- resolution -----------------------------------------------------------
    def resolved(self) -> dict:
        """The full config, every default written out, under canonical component names."""
        out = {
            "name": self.name,
            "seed": self.seed,
            "data": to_plain(self.data.spec),
            "model": {
                "input_shape": list(self.input_shape) if self.input_shape is not None else None,
                "layers": to_plain(self.layer_specs),
            },
            "loss": to_plain(self.loss),
            "optimizer": to_plain(self.optimizer_spec),
            "training": to_plain(self.training),
        }
        if self.compare is not None:
            out["compare"] = to_plain(self.compare)
        return out


def refuse_training_side_effects(layers, who: str, hint: str) -> None:
    """`who` needs one fixed objective f(θ): refuse layers whose training pass is random or changes state."""
    for i, layer in enumerate(layers):
        effect = layer.training_side_effect()
        if effect is not None:
            raise ConfigError(
                f"{layer.describe()} {effect}, so the objective {who} evaluates would change from call to call; {hint}",
                ("model", "layers", i),
            )


def _refuse_mini_batch_settings(name: str, training: TrainingConfig, data) -> None:
    """Full-batch minimisers choose their own steps on the exact objective: settings that would be silently ignored are errors."""
    ignored = [
        (("training", "schedule"), training.schedule.spec["type"] != "constant", "a learning-rate schedule"),
        (("training", "clip_norm"), training.clip_norm is not None, "gradient clipping"),
        (("training", "clip_value"), training.clip_value is not None, "gradient clipping"),
        (("data", "augment"), getattr(data, "augment", None) is not None, "augmentation (the objective is the fixed training set)"),
    ]
    for path, present, what in ignored:
        if present:
            raise ConfigError(
                f"{name} is a full-batch minimiser that picks its steps by line search; it cannot use {what}", path
            )


def from_document(doc: Document, seed: int | None = None, name: str | None = None) -> Experiment:
    """Validate a config document into an Experiment; every ConfigError names file, line and key path."""
    with doc.errors_located():
        top = check_options(_top_level, doc.data)
        run_name = top["name"] or name or "experiment"
        if not _NAME.match(run_name):
            raise ConfigError(
                f"{quoted(run_name)} cannot name a run folder; use letters, digits, '.', '_' and '-'", ("name",)
            )
        model = check_options(_model_section, top["model"], ("model",))
        if not model["layers"]:
            raise ConfigError("the model needs at least one layer", ("model", "layers"))
        training = TrainingConfig(**check_options(TrainingConfig, top["training"] or {}, ("training",)))
        if isinstance(top["optimizer"], Minimizer):
            _refuse_mini_batch_settings(top["optimizer"].spec["type"], training, top["data"])
            refuse_training_side_effects(
                model["layers"], f"the full-batch minimiser {top['optimizer'].spec['type']}", "remove it or use a mini-batch optimizer"
            )
        compare = _compare_section(top["compare"]) if top["compare"] is not None else None
    return Experiment(
        name=run_name,
        seed=top["seed"] if seed is None else seed,
        data=top["data"],
        layer_specs=[layer.spec for layer in model["layers"]],
        input_shape=model["input_shape"],
        loss=top["loss"],
        optimizer_spec=top["optimizer"].spec,
        training=training,
        compare=compare,
        doc=doc,
    )


def load_experiment(
    config: str | Path | dict, overrides: list[str] | tuple[str, ...] = (), seed: int | None = None
) -> Experiment:
    """Read a config file (or a dict), apply `--set` overrides, validate and resolve it."""
    if isinstance(config, dict):
        doc, name = document_from_dict(config), None
    else:
        doc, name = load_document(config), Path(config).stem
    apply_overrides(doc, overrides)
    if seed is not None and seed < 0:
        raise ConfigError(f"must be a non-negative integer, got {seed}", location="--seed")
    return from_document(doc, seed=seed, name=name)
