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
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from .backend import Backend, backend_for
from .config import Document, apply_overrides, document_from_dict, load_document
from .data import DATA_SOURCES, DataInfo, DataSource
from .errors import ConfigError
from .losses import LOSSES, Loss
from .models import DEFAULT_KIND, MODELS, ModelKind, ModelPlan
from .optimizers import OPTIMIZERS, Minimizer, Optimizer
from .optimizers.second_order import dense_matrix_message
from .registry import NonNegativeFloat, NonNegativeInt, PositiveInt, check_options, quoted, to_plain
from .schedules import SCHEDULES
from .training import TrainingConfig


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

    First-order runs train exactly as `nncli train` does (training.schedule,
    clip_norm, clip_value and data.augment apply; an epoch is one pass at
    batch_size, and a schedule spans the budget's epochs); an entry's own
    `schedule` overrides training.schedule for that run. Minimisers pick their
    steps by line search on the fixed training set: they take no schedule and
    no augmentation.

    Options:
    optimizers: optimizer specs, {type: NAME, ...options}, each optionally with a label (default: the type) and, for first-order methods, its own schedule
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

    def runs(self) -> list[CompareRun]:
        """One CompareRun per optimizer, in order."""
        out = []
        for i, spec in enumerate(self.optimizers):
            spec = dict(spec)
            label = spec.pop("label", None) or spec["type"]
            schedule = spec.pop("schedule", None)
            out.append(CompareRun(label, spec, ("compare", "optimizers", i), schedule))
        return out


@dataclass(frozen=True)
class CompareRun:
    """One entry of compare.optimizers: its row label, optimizer spec, key path and own schedule (None: training's)."""

    label: str
    spec: dict
    path: tuple
    schedule: dict | str | None = None


@dataclass(frozen=True)
class SweepConfig:
    """Settings for `nncli sweep` (the `sweep:` section); the command's flags override them.

    Every grid point (one value of each grid key) is trained with seeds seed,
    seed+1, ..., each trial an ordinary run folder. A trial's score is the
    best value of `metric` in its history.csv over its epochs, and a point's is
    the mean over its seeds. A --grid flag replaces that key's values here.

    Options:
    grid: {KEY.PATH: [values]}, any config value a --set could change, e.g. {optimizer.learning_rate: [0.001, 0.01]}
    seeds: trials per grid point, with seeds seed, seed+1, ...
    metric: history.csv column scoring a trial; null = val_loss, or train_loss without validation data
    mode: min or max of the metric; auto = max for accuracies, min otherwise
    engine: ray (the trials as Ray tasks) or serial (one after another in this process); null = ray where it is installed
    address: a running Ray cluster (HOST:PORT, or auto on one of its nodes); null = start Ray on this machine for the sweep
    workers: trials at once; null = this machine's CPUs (a cluster's) divided by cpus_per_trial
    cpus_per_trial: CPUs Ray reserves for each trial, and its BLAS threads (in both engines)
    gpus_per_trial: GPUs Ray reserves for each trial (with training.device gpu); a fraction shares a GPU
    max_failures: times a trial is started again after its worker process or node died (it resumes from its last checkpoint)
    """

    grid: dict | None = None
    seeds: PositiveInt = 1
    metric: Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"] | None = None
    mode: Literal["auto", "min", "max"] = "auto"
    engine: Literal["ray", "serial"] | None = None
    address: str | None = None
    workers: PositiveInt | None = None
    cpus_per_trial: PositiveInt = 1
    gpus_per_trial: NonNegativeFloat = 0.0
    max_failures: NonNegativeInt = 2


def _sweep_section(raw: dict) -> SweepConfig:
    options = check_options(SweepConfig, raw, ("sweep",))
    grid = options["grid"] or {}
    if not isinstance(grid, dict):
        raise ConfigError("expected a mapping of config keys to lists of values", ("sweep", "grid"))
    for key, values in grid.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"expected a config key such as optimizer.learning_rate, got {key!r}", ("sweep", "grid"))
        if not isinstance(values, list) or not values:
            raise ConfigError("expected a non-empty list of values", ("sweep", "grid", key))
    return SweepConfig(**options)


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
        schedule = spec.pop("schedule", None)
        if "type" in spec and isinstance(spec["type"], str) and spec["type"] in OPTIMIZERS:
            accepted = inspect.signature(OPTIMIZERS.get(spec["type"])).parameters
            for key in _SHARED_TOLERANCES:  # the section's stopping rule, unless the spec sets its own
                if key in accepted and key not in spec:
                    spec[key] = options[key]
        optimizer = OPTIMIZERS.create(spec, path)
        resolved = dict(optimizer.spec)
        if schedule is not None:
            if isinstance(optimizer, Minimizer):
                raise ConfigError(
                    f"{resolved['type']} is a full-batch minimiser that picks its steps by line search; it takes no schedule",
                    (*path, "schedule"),
                )
            resolved["schedule"] = to_plain(SCHEDULES.create(schedule, (*path, "schedule")))
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


def _top_level(
    data: Annotated[object, DATA_SOURCES],
    model: dict,
    name: str | None = None,
    seed: NonNegativeInt = 0,
    loss: Annotated[object, LOSSES] = "cross_entropy",
    optimizer: Annotated[object, OPTIMIZERS] = "adam",
    training: dict | None = None,
    compare: dict | None = None,
    sweep: dict | None = None,
    plugins: list[str] | None = None,
):
    """The sections of a config file.

    Options:
    name: run name (default: the config file's name); the run folder is runs/<name>
    seed: seeds data splits, initial weights, shuffling and every random layer
    plugins: Python files (relative to the config's folder) or module names imported before the rest is read; they register your own components (README: "Your own components"). A checkpoint never imports them
    data: where the data comes from ({source: idx|csv|ts, path: ...})
    model: the model kind (model.type, default sequential) and its options, e.g. {layers: [...]}
    loss: cross_entropy | binary_cross_entropy | mse (classes); mse | mae | huber (data.task: regression)
    optimizer: {type: adam, learning_rate: ...}
    training: epochs, batch size, ...
    compare: settings for `nncli compare-optimizers`: optimizers, max_iterations, tolerances, batch_size
    sweep: settings for `nncli sweep`: the grid, seeds, metric, engine and its resources
    """


# The fixed parts of a config, for `nncli components section` and the README reference.
SECTIONS = {"(top level)": _top_level, "training": TrainingConfig, "compare": CompareConfig, "sweep": SweepConfig}
TOP_LEVEL_KEYS = tuple(inspect.signature(_top_level).parameters)  # the one list of a config's sections

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Experiment:
    name: str
    seed: int
    data: DataSource
    model: ModelKind  # the model: section, resolved (model.type selects the kind)
    loss: Loss | None  # None for kinds not trained by gradient descent
    optimizer: Optimizer | Minimizer | None  # validated and built once: the one a `train` run uses
    training: TrainingConfig
    compare: CompareConfig | None
    doc: Document  # where values came from, for locating errors found later
    plugins: tuple[str, ...] = ()  # resolved: files as absolute paths, modules by name
    sweep: SweepConfig | None = None  # settings of `nncli sweep`; not part of what a run trains

    # -- building -------------------------------------------------------------
    @cached_property
    def backend(self) -> Backend:
        """Where models of this experiment compute (training.device), resolved once: a GPU that is not usable is
        a ConfigError with the reason; `auto` says on stderr which it took."""
        device = self.training.device
        if device != "cpu" and not self.model.runs_on_gpu:
            raise ConfigError(f"model.type {self.model.spec['type']} runs on the CPU only", ("training", "device"))
        with self.doc.errors_located():
            return backend_for(device, notice=lambda line: print(line, file=sys.stderr))

    def data_info(self) -> DataInfo:
        """Input shape and class count from the declared shape or the data headers (no data loaded)."""
        declared = getattr(self.model, "input_shape", None)
        if declared is not None:
            return DataInfo(declared, None)
        with self.doc.errors_located():  # a missing data.path names its config line
            return self.data.inspect()

    def plan(self, input_shape=None, num_classes: int | None = None) -> ModelPlan:
        """The model from shapes alone (nothing allocated): summary rows, parameter count, memory estimate."""
        if input_shape is None:
            info = self.data_info()
            input_shape, num_classes = info.input_shape, num_classes or info.num_classes
        with self.doc.errors_located():
            return self.model.plan(tuple(input_shape), num_classes, self.training.dtype)

    def build_model(self, input_shape=None, num_classes: int | None = None, dtype=None, targets: int | None = None):
        """A fresh model of the configured kind; shape errors name the layer, a loss/output mismatch names `loss`.
        `targets`: a regression's number of target columns (None: classification)."""
        if input_shape is None:
            info = self.data_info()
            input_shape, num_classes, targets = info.input_shape, num_classes or info.num_classes, targets or info.num_targets
        with self.doc.errors_located():
            dtype = dtype or self.training.dtype
            backend = self.backend
            if backend.on_host:  # the four-argument contract of every kind (plugins' too)
                model = self.model.build(tuple(input_shape), num_classes, dtype, self.training)
            else:
                model = self.model.build(tuple(input_shape), num_classes, dtype, self.training, backend=backend)
            self.check_loss(model.output_shape, num_classes, targets)
        return model

    def check_loss(self, output_shape, num_classes, targets: int | None = None) -> None:
        """Refuse a loss that does not fit the model's output and the data's classes, or a regression's
        `targets` target columns (names `loss`)."""
        if self.loss is not None:
            with self.doc.errors_located():
                try:
                    if targets is None:  # a classification: the two-argument check a plugin loss may have
                        self.loss.check(output_shape, num_classes)
                    else:
                        self.loss.check(output_shape, num_classes, targets)
                except ValueError as exc:
                    raise ConfigError(str(exc), ("loss",)) from None
                except TypeError:
                    raise ConfigError(f"{self.loss.spec['type']} does not take a regression's targets (data.task: regression)", ("loss",)) from None

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
                if column.endswith("accuracy") and getattr(dataset, "regression", False):
                    raise ConfigError(f"a regression has no {column} (data.task: regression); monitor {column[:-len('accuracy')]}loss", key_path)
            self.model.check_fits(dataset)

    @property
    def optimizer_spec(self) -> dict | None:
        return self.optimizer.spec if self.optimizer is not None else None

    def make_optimizer(self, spec: dict | None = None, path=("optimizer",)):
        """A fresh optimizer (compare-optimizers: one per run) from `spec`, by default the config's."""
        with self.doc.errors_located():
            return OPTIMIZERS.create(spec if spec is not None else self.optimizer_spec, path)

    def check_optimizer_sizes(self, specs: list[tuple[dict, tuple]]) -> None:
        """Refuse optimizers whose dense P×P matrices would not fit this model, from shapes alone (no data loaded).

        `specs` holds (resolved optimizer spec, key path) pairs; a method with a dense matrix
        has `max_parameters` in its spec. The error names the path and the memory needed.
        """
        limited = [(spec, path) for spec, path in specs if spec.get("max_parameters") is not None]
        if not limited:
            return  # nothing to check: skip reading the data headers
        num_params = self.plan().num_params
        with self.doc.errors_located():
            for spec, path in limited:
                if num_params > spec["max_parameters"]:
                    raise ConfigError(dense_matrix_message(spec["type"], num_params, spec["max_parameters"]), path)

    def seeds(self, purpose: str) -> np.random.SeedSequence:
        """Independent, reproducible seed streams per purpose (adding a purpose never shifts the others)."""
        key = {"data": 0, "init": 1, "shuffle": 2, "layers": 3, "augment": 4, "probes": 5, "gradcheck": 6, "landscape": 7}[purpose]
        split_seed = getattr(self.data, "split_seed", None)
        seed = split_seed if purpose == "data" and split_seed is not None else self.seed
        return np.random.SeedSequence(seed, spawn_key=(key,))

    # -- resolution -----------------------------------------------------------
    def resolved(self) -> dict:
        """The full config, every default written out, under canonical component names."""
        out = {
            "name": self.name,
            "seed": self.seed,
            **({"plugins": list(self.plugins)} if self.plugins else {}),
            "data": to_plain(self.data.spec),
            "model": to_plain(self.model),
        }
        if self.model.gradient_trained:
            out["loss"] = to_plain(self.loss)
            out["optimizer"] = to_plain(self.optimizer_spec)
            out["training"] = to_plain(self.training)
        else:
            out["training"] = {k: v for k, v in to_plain(self.training).items() if k in self.model.one_shot_training}
        if self.compare is not None:
            out["compare"] = to_plain(self.compare)
        return out


def refuse_training_side_effects(model: ModelKind, who: str, hint: str) -> None:
    """`who` needs one fixed objective f(θ): refuse a model whose training pass is random or changes state."""
    effect = model.training_side_effect()
    if effect is not None:
        path, what = effect
        raise ConfigError(f"{what}, so the objective {who} evaluates would change from call to call; {hint}", path)


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


def _refuse_gradient_settings(model: ModelKind, document: dict, training: dict) -> None:
    """A kind fitted in one shot has no loss, optimizer or comparison, and reads only a few training settings."""
    kind = model.spec["type"]
    for key in ("loss", "optimizer", "compare"):
        if key in document:
            raise ConfigError(f"model.type {kind} is not trained by gradient descent, so it takes no {key}; remove it", (key,))
    if isinstance(training, dict):
        for key in training:
            if key not in model.one_shot_training:
                allowed = f"it reads only {', '.join(model.one_shot_training)}" if model.one_shot_training else "it reads none"
                raise ConfigError(
                    f"model.type {kind} is fitted in one shot; training.{key} does not apply ({allowed})",
                    ("training", key),
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
        section = top["model"]
        model = MODELS.create({"type": DEFAULT_KIND, **section} if "type" not in section else section, ("model",))
        training_raw = top["training"] or {}
        if not model.gradient_trained:
            _refuse_gradient_settings(model, doc.data, training_raw)
        training = TrainingConfig(**check_options(TrainingConfig, training_raw, ("training",)))
        if model.gradient_trained and isinstance(top["optimizer"], Minimizer):
            _refuse_mini_batch_settings(top["optimizer"].spec["type"], training, top["data"])
            refuse_training_side_effects(
                model, f"the full-batch minimiser {top['optimizer'].spec['type']}", "remove it or use a mini-batch optimizer"
            )
        compare = _compare_section(top["compare"]) if top["compare"] is not None else None
        sweep = _sweep_section(top["sweep"]) if top["sweep"] is not None else None
    return Experiment(
        name=run_name,
        seed=top["seed"] if seed is None else seed,
        data=top["data"],
        model=model,
        loss=top["loss"] if model.gradient_trained else None,
        optimizer=top["optimizer"] if model.gradient_trained else None,
        training=training,
        compare=compare,
        sweep=sweep,
        doc=doc,
        plugins=tuple(dict.fromkeys([*(top["plugins"] or ()), *_command_line_plugins()])),
    )


def load_experiment(
    config: str | Path | dict, overrides: list[str] | tuple[str, ...] = (), seed: int | None = None, grid: Sequence[str] = (),
    device: str | None = None,
) -> Experiment:
    """Read a config file (or a dict), apply `--set` overrides (then a sweep's grid values, then `--device` as
    training.device), validate and resolve it."""
    if isinstance(config, dict):
        doc, name = document_from_dict(config), None
    else:
        doc, name = load_document(config), Path(config).stem
    apply_overrides(doc, overrides, TOP_LEVEL_KEYS)
    apply_overrides(doc, grid, TOP_LEVEL_KEYS, flag="--grid")
    if device is not None:
        apply_overrides(doc, [f"training.device={device}"], TOP_LEVEL_KEYS)
        doc.marks[("training", "device")] = f"--device {device}"  # errors name the flag that was given
    if seed is not None and seed < 0:
        raise ConfigError(f"must be a non-negative integer, got {seed}", location="--seed")
    load_config_plugins(doc, None if isinstance(config, dict) else Path(config).parent)
    return from_document(doc, seed=seed, name=name)


def _command_line_plugins() -> list[str]:
    from . import plugins

    return plugins.command_line()


def load_config_plugins(doc: Document, base: Path | None) -> None:
    """Import the plugins a config file names (before the rest is validated), and record them resolved.

    Only a config the user runs gets here: a checkpoint's embedded config goes
    straight to from_document, which checks `plugins:` but imports nothing.
    """
    from . import plugins

    plugins.load_entry_points()
    named = doc.data.get("plugins")
    if named is None:
        return
    with doc.errors_located():
        if not isinstance(named, list) or not all(isinstance(p, str) for p in named):
            raise ConfigError("expected a list of plugin files (.py) or module names", ("plugins",))
        for i, spec in enumerate(named):
            location = doc.locate(("plugins", i))
            named[i] = plugins.load(spec, base, location, ("plugins", i))
