"""The Python API: one function per command, taking plain values and returning dataclasses.

The CLI is a thin layer over these; they are equally usable from Python:

    import nncli
    result = nncli.train("configs/pima_logistic.yaml", overrides=["training.epochs=5"])
    report = nncli.evaluate([result.final_checkpoint])
    comparison = nncli.compare_optimizers("configs/pima.yaml", seeds=5)
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import backend
from .checkpoint import Checkpoint, read_checkpoint
from .compare import CURVE_COLUMNS, RUN_COLUMNS, SUMMARY_COLUMNS, Comparison, OptimizerSummary, curve_rows, json_rows
from .compare import merge as merge_comparisons
from .config import dump_yaml, load_document
from .data import DATA_SOURCES, SPLITS, Dataset, load_progress
from .diagnostics import GradientLog
from .errors import CheckpointError, ConfigError, DataError, DivergedError, TrainingInterrupted, dotted
from .engines import RAY_INSTALL_HINT, Job, SerialEngine, make_engine, raise_for, ray_installed
from .export import FORMATS as EXPORT_FORMATS
from .export import export_onnx
from .experiment import SECTIONS, Experiment, SweepConfig, load_experiment, refuse_training_side_effects
from .files import atomic_write_text, csv_text, new_run_folder, unique_path
from .initializers import INITIALIZERS
from .layers import ACTIVATIONS, LAYERS
from .losses import LOSSES
from .metrics import Evaluation, ensemble, ensemble_regression, regression_report
from .metrics import predict as predict_outputs
from .models import MODELS, MemoryNeed, PlanRow, available_memory, human_bytes
from .models.hopfield import MASKS, RULES, UPDATES, MemoryEvaluation, capacity_curve, outcomes, overlaps, theoretical_capacity, trace_recall
from .optimizers import OPTIMIZERS
from . import plugins as plugin_registry
from . import sweeps as sweep_runs
from .registry import ComponentInfo, Registry, describe_options, did_you_mean, quoted, to_plain
from .regularizers import REGULARIZERS
from .runfolder import RunFolder
from .schedules import SCHEDULES
from .training import Callback, OneShotFit, StopSignals, Trainer, TrainState

# Component kinds listed by `nncli components`, in display order.
KINDS: dict[str, Registry] = {
    "model": MODELS,
    "layer": LAYERS,
    "activation": ACTIVATIONS,
    "regularizer": REGULARIZERS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "initializer": INITIALIZERS,
    "schedule": SCHEDULES,
    "data": DATA_SOURCES,
}


# -- train ---------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    final_checkpoint: Path
    best_checkpoint: Path | None
    state: TrainState
    num_params: int
    experiment: Experiment
    epochs: int  # the epochs (iterations) the run was set to reach
    storage: dict = field(default_factory=dict)  # what a one-shot fit stored (model kinds' fit_summary)
    r2: dict = field(default_factory=dict)  # a regression's final R² by split name (train, val), for the summary
    load_seconds: float | None = None  # wall time of reading and preparing the data

    @property
    def history(self) -> list[dict]:
        return self.state.history


def _load_data(experiment: Experiment, preprocessing: dict | None = None, callbacks: Sequence[Callback] = ()) -> Dataset:
    """The experiment's data; `callbacks` hear `on_load_progress` while a large file is read."""
    def report(what: str, done: int, total: int) -> None:
        for cb in callbacks:
            hear = getattr(cb, "on_load_progress", None)  # callbacks need not derive from Callback
            if hear is not None:
                hear(what, done, total)

    with experiment.doc.errors_located(), load_progress(report if callbacks else None):  # a missing data.path names its config line
        return experiment.data.load(experiment.seeds("data"), preprocessing)


_ABSENT = object()


def _first_difference(mine, theirs, path: tuple = ()) -> tuple[tuple, object, object] | None:
    """(key path, my value, their value) of the first difference between two resolved configs, in config order."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in [*mine, *(k for k in theirs if k not in mine)]:
            if (*path, key) in (("name",), ("training", "epochs"), ("training", "device")):
                continue  # the run's name, the epochs a resume may extend to, and where it computes
            found = _first_difference(mine.get(key, _ABSENT), theirs.get(key, _ABSENT), (*path, key))
            if found is not None:
                return found
        return None
    if isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            found = _first_difference(a, b, (*path, i))
            if found is not None:
                return found
        return None
    return None if mine == theirs else (path, mine, theirs)


def _show(value) -> str:
    if value is _ABSENT:
        return "not set"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def with_device(overrides: Sequence[str], device: str | None) -> list[str]:
    """`--device X` is the override training.device=X (so the run folder's config records it, and jobs on other
    processes get it with the other overrides)."""
    return [*overrides, f"training.device={device}"] if device is not None else list(overrides)


def _check_resumable(experiment: Experiment, checkpoint: Checkpoint) -> None:
    """Exact resume needs the training state and the same config; only training.epochs may grow."""
    checkpoint.require_resumable()
    found = _first_difference(experiment.resolved(), checkpoint.experiment().resolved())
    if found is not None:
        path, mine, theirs = found
        raise ConfigError(
            f"differs from the config in {checkpoint.path}: {dotted(path)} is {_show(mine)} here, {_show(theirs)} in the checkpoint; "
            "--resume continues the same experiment (only training.epochs may change); "
            "use --weights to start a new run from its weights",
            path[:1],
            experiment.doc.locate(path),
        )


def _own_run_folder(checkpoint: Path) -> Path | None:
    """The run folder `checkpoint` is the latest checkpoint of (<run>/checkpoints/last.npz), or None.

    Only then does --resume continue in place: a checkpoint anywhere else (a
    copy, best.npz, a file next to the user's own config.yaml) starts a new
    run folder, so nothing already there is overwritten.
    """
    folder = checkpoint.parent
    if folder.name != "checkpoints":
        folder = checkpoint.absolute().parent  # e.g. `--resume last.npz` from inside checkpoints/
    run = folder.parent
    if checkpoint.name != "last.npz" or folder.name != "checkpoints":
        return None
    return run if (run / "config.yaml").is_file() and (run / "history.csv").is_file() else None


def memory_needed(experiment: Experiment, plan, rows: int | None = None) -> MemoryNeed:
    """What training this experiment's model needs, from shapes alone: parameters and their copies, and the
    largest batch's work (a training or an evaluation batch, the whole training set for full-batch methods;
    never more than the data's `rows`, when known)."""
    training = experiment.training
    if not experiment.model.gradient_trained:
        return experiment.model.memory(plan, min(training.eval_batch_size, rows or training.eval_batch_size), 1)
    optimizer = experiment.optimizer
    copies = 3 + len(getattr(optimizer, "slots", ())) + (1 if training.early_stopping is not None else 0)  # θ, ∇θ, undo copy
    batch = max(training.batch_size, training.eval_batch_size)
    if optimizer.full_batch and rows is not None:
        batch = rows
    return experiment.model.memory(plan, min(batch, rows or batch), copies)


def check_memory(experiment: Experiment, input_shape, num_classes: int | None, rows: int | None) -> None:
    """Refuse, in one line naming the largest layer, a model whose training cannot fit in the memory available
    (from shapes alone, before anything of the model is allocated)."""
    need = memory_needed(experiment, experiment.plan(input_shape, num_classes), rows)
    available = available_memory()
    if available is not None and need.total > available:
        parts = ", ".join(f"{name} {human_bytes(size)}" for name, size in need.parts.items())
        raise ConfigError(
            f"training needs about {human_bytes(need.total)} ({parts}; largest: {need.largest}) "
            f"but {human_bytes(available)} of memory is available; use a smaller model or batch",
            ("model",),
            experiment.doc.locate(("model",)),
        )


def train(
    config: str | Path | dict,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | None = None,
) -> TrainResult:
    """Train from a config; return where the run and its checkpoints are.

    Everything is validated (config, data, checkpoints, the device) before the run
    folder is created, so a failed start leaves no trace and never touches earlier runs.
    `device` (cpu, gpu, auto) overrides training.device.
    """
    if resume is not None and weights is not None:
        raise ConfigError("use --resume (continue a run) or --weights (new run from its weights), not both", location="train")
    experiment = load_experiment(config, overrides, seed, device=device)
    if experiment.model.gradient_trained:
        experiment.backend  # noqa: B018 - a GPU asked for and not usable is refused before any data is read
    for flag, given in (("--resume", resume), ("--weights", weights)):
        if given is not None and experiment.model.no_epochs is not None:
            raise ConfigError(experiment.model.no_epochs, location=flag)
    if experiment.model.gradient_trained:
        experiment.check_optimizer_sizes([(experiment.optimizer_spec, ("optimizer",))])  # before any data is read
    resumed = read_checkpoint(resume) if resume is not None else None
    if resumed is not None:
        _check_resumable(experiment, resumed)
    start = read_checkpoint(weights) if weights is not None else None

    started = time.perf_counter()
    dataset = _load_data(experiment, resumed.meta["preprocessing"] if resumed else None, callbacks)
    load_seconds = time.perf_counter() - started
    experiment.check_fits(dataset)
    num_classes = dataset.num_classes or None  # a regression has none
    check_memory(experiment, dataset.input_shape, num_classes, len(dataset.train))  # before the model exists
    model = experiment.build_model(dataset.input_shape, num_classes, targets=dataset.num_targets)
    model.initialize(np.random.default_rng(experiment.seeds("init")))
    for ckpt in (start, resumed):
        if ckpt is not None:
            ckpt.require_input_shape(dataset.input_shape)
            ckpt.load_into(model)
    if experiment.model.gradient_trained:
        seeds = {k: experiment.seeds(k) for k in ("shuffle", "layers", "augment")}
        trainer = Trainer(model, experiment.loss, experiment.optimizer, dataset, experiment.training, seeds)
    else:
        trainer = OneShotFit(experiment.model, model, dataset, experiment.training)
    if resumed is not None:
        trainer.restore(resumed.snapshot, str(resumed.path))

    own = _own_run_folder(resumed.path) if resumed is not None and out is None else None
    if own is not None:
        run_dir = own  # continue in the run's own folder
    else:
        run_dir = new_run_folder(out if out is not None else Path("runs") / experiment.name)
    data_meta = {"input_shape": list(dataset.input_shape), "preprocessing": dataset.preprocessing}
    run = RunFolder(run_dir, experiment.resolved(), data_meta)
    views = [GradientLog(run_dir, dataset.train.x)] if experiment.training.log_gradients else []
    trainer.callbacks = [*views, run, *callbacks]

    with StopSignals() as stop:
        trainer.stop = stop
        try:
            state = trainer.fit()
        except DivergedError as exc:
            kept = f"the last good checkpoint is {run.last}" if run.last.exists() else "no checkpoint had been written yet"
            raise DivergedError(f"{exc}; {kept}") from None
        storage = {} if experiment.model.gradient_trained else experiment.model.fit_summary(model)
        r2 = _final_r2(experiment, model, dataset) if dataset.regression and stop.signum is None else {}
        if storage:
            atomic_write_text(run_dir / "storage.json", json.dumps(storage, indent=2) + "\n")
        if stop.signum is not None:
            saved = run.save(trainer, run.last)
            where = f"epoch {state.epoch + 1}, batch {state.batch}" if state.batch else f"after epoch {state.epoch}"
            again = ["nncli", "train", "CONFIG" if isinstance(config, dict) else str(config)]
            again += [arg for override in overrides for arg in ("--set", override)]
            again += ["--seed", str(seed)] if seed is not None else []
            again += ["--device", device] if device is not None else []
            raise TrainingInterrupted(
                f"interrupted by {stop.name} ({where}); saved {saved}; continue with: {shlex.join([*again, '--resume', str(saved)])}",
                stop.exit_code,
                str(saved),
            )
    return TrainResult(
        run_dir=run_dir,
        final_checkpoint=run.last,
        best_checkpoint=run.best if run.has_best else None,
        state=state,
        num_params=model.num_params,
        experiment=experiment,
        epochs=trainer.epochs,
        storage=storage,
        r2=r2,
        load_seconds=load_seconds,
    )


def _final_r2(experiment: Experiment, model, dataset: Dataset) -> dict:
    """A regression's R² on the training and validation parts with the final weights (for the train summary)."""
    out = {}
    for name in ("train", "val"):
        part = getattr(dataset, name)
        if part is not None and len(part):
            result = experiment.model.evaluate(model, experiment.loss, part, 0, experiment.training.eval_batch_size)
            out[name] = regression_report(dataset, part, result.outputs).r2
    return out


def train_seeds(
    config: str | Path | dict,
    seeds: int,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    weights: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    engine: str | None = None,
    address: str | None = None,
    device: str | None = None,
) -> list[TrainResult]:
    """Train `seeds` copies with seeds s, s+1, ... into <out>/seed-<s>, e.g. for an ensemble.

    `engine` (serial, the default, or ray; `address` a Ray cluster) says where: on Ray each seed
    is a task, retried from its own checkpoint if its worker dies. `callbacks` see the runs that
    train in this process (the serial engine's).
    """
    if seeds < 1:
        raise ConfigError(f"must be at least 1, got {seeds}", location="--seeds")
    if resume is not None:
        raise ConfigError("trains new runs; it cannot be combined with --resume", location="--seeds")
    experiment = load_experiment(config, overrides, seed, device=device)  # fail fast, before any folder exists
    if experiment.model.gradient_trained and address is None:
        experiment.backend  # noqa: B018 - runs on this machine: a GPU asked for and not usable is refused now
    overrides = with_device(overrides, device)  # what each run's job applies
    if seeds > 1 and experiment.model.no_epochs is not None:
        raise ConfigError(f"{experiment.model.no_epochs}; train it once", location="--seeds")
    runner = make_engine(engine, address)
    parent = new_run_folder(out if out is not None else Path("runs") / experiment.name)
    in_process = isinstance(runner, SerialEngine)
    jobs = [
        Job(f"seed-{s}", train_run, ({
            "config": config, "overrides": list(overrides), "seed": s, "folder": str((parent / f"seed-{s}").absolute()),
            "weights": None if weights is None else str(Path(weights).absolute()), **_driver_context(),
            "callbacks": list(callbacks) if in_process else [],
        },))
        for s in range(experiment.seed, experiment.seed + seeds)
    ]
    outcomes = runner.run(jobs)
    for outcome in outcomes:
        raise_for(outcome)
    return [outcome.value for outcome in outcomes]


# -- jobs: the work an engine runs -------------------------------------------------
# Module-level functions of plain, picklable values, so they run the same in this
# process or in a Ray worker on another machine. A job first makes its process
# look like the driver's: the same working folder (relative data paths), the same
# command-line plugins. Paths in a job are absolute: on a cluster they must name
# shared storage that every node sees at the same place.
def _driver_context() -> dict:
    """What a job needs to look like the driver: its working folder and its command-line plugins."""
    return {"cwd": os.getcwd(), "plugins": plugin_registry.command_line()}


def _like_the_driver(spec: dict) -> None:
    os.chdir(spec["cwd"])
    for plugin in spec.get("plugins") or ():
        plugin_registry.load_command_line(plugin)


def _record_attempt(spec: dict, attempt: int) -> None:
    """attempts/<trial>-<n>.json: where this attempt runs, written as it starts (a sweep's record of its retries)."""
    folder = spec.get("attempts")
    if folder is None:
        return
    where = {"trial": spec["name"], "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "parent": os.getppid(),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}  # Ray's GPU placement (--gpus-per-trial)
    try:
        import ray

        if ray.is_initialized():
            where["node"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no Ray, or not in a Ray worker: nothing more to record
        pass
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(folder) / f"{spec['name']}-{attempt}.json", json.dumps(where) + "\n")


def train_run(spec: dict, attempt: int = 1):
    """Train one run into spec["folder"]; an earlier attempt's checkpoint there is resumed, bit for bit.

    spec: config (a path or a dict), overrides, seed, folder, cwd, plugins, and optionally weights,
    callbacks (in-process engines only) and attempts (a folder to record each attempt in).
    A folder whose run died before its first checkpoint holds nothing to keep: it starts afresh.
    """
    _like_the_driver(spec)
    _record_attempt(spec, attempt)
    folder = Path(spec["folder"])
    last = folder / "checkpoints" / "last.npz"
    callbacks = spec.get("callbacks") or ()
    if last.exists():
        return train(spec["config"], spec["overrides"], seed=spec["seed"], resume=last, callbacks=callbacks)
    if folder.exists():
        shutil.rmtree(folder)
    return train(spec["config"], spec["overrides"], out=folder, seed=spec["seed"], weights=spec.get("weights"), callbacks=callbacks)


def compare_seed(spec: dict, attempt: int = 1):
    """Every optimizer of the config's compare: section on one seed (a comparison has nothing to resume)."""
    from .compare import compare

    _like_the_driver(spec)
    experiment = load_experiment(spec["config"], spec["overrides"])
    return compare(experiment, [spec["seed"]], spec.get("on_run_end"))


def sweep_trial(spec: dict, attempt: int = 1) -> dict:
    """One trial of a sweep: train (or resume) it into its folder; return its runs.csv figures."""
    result = train_run(spec, attempt)
    return sweep_runs.figures(result.history, spec["metric"], spec["mode"])


# -- sweep -----------------------------------------------------------------------
def sweep(
    config: str | Path | dict | None = None,
    grid: Sequence[str] = (),
    overrides: Sequence[str] = (),
    seeds: int | None = None,
    out: str | Path | None = None,
    engine: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_trial: int | None = None,
    max_failures: int | None = None,
    metric: str | None = None,
    mode: str | None = None,
    resume: str | Path | None = None,
    progress: sweep_runs.Progress | None = None,
    device: str | None = None,
    gpus_per_trial: float | None = None,
) -> sweep_runs.SweepResult:
    """Train every grid point × seed (the config's sweep: section, `grid` flags KEY=V1,V2 overriding it) and rank the points.

    Every trial is validated before anything starts or any folder exists. The
    trials run on `engine`: ray (default where installed: a Ray started here,
    or the cluster at `address`) or serial (this process). The results go to
    runs/<name>-sweep (module nncli.sweeps lists the files). After SIGINT or
    SIGTERM, TrainingInterrupted says how to continue: `resume` = the sweep
    folder runs only the trials that had not finished, from their checkpoints.
    """
    if resume is not None:
        given = [flag for flag, value in (("CONFIG", config), ("--grid", grid), ("--set", overrides), ("--seeds", seeds),
                                          ("--out", out), ("--metric", metric), ("--mode", mode), ("--cpus-per-trial", cpus_per_trial),
                                          ("--device", device)) if value]
        if given:
            raise ConfigError(f"continues the sweep as it was planned; it takes no {', '.join(given)}", location="--resume")
        return _resume_sweep(Path(resume), engine, address, workers, max_failures, progress, gpus_per_trial)
    if config is None:
        raise ConfigError("give a config file to sweep, or --resume SWEEP_DIR", location="sweep")
    base = load_experiment(config, overrides, device=device)
    overrides = with_device(overrides, device)  # what each trial applies
    settings = base.sweep or SweepConfig()
    chosen = lambda flag, name: flag if flag is not None else getattr(settings, name)  # noqa: E731 - flags win
    seeds, metric, mode = chosen(seeds, "seeds"), chosen(metric, "metric"), chosen(mode, "mode")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"must be a positive integer, got {seeds!r}", location="--seeds")
    _check_choice("--metric", metric, sweep_runs.METRICS, allow_none=True)
    _check_choice("--mode", mode, ("auto", "min", "max"))
    cpus = chosen(cpus_per_trial, "cpus_per_trial")
    runner = _sweep_engine(settings, engine, address, workers, cpus, max_failures, gpus_per_trial)
    if address is None and settings.address is None and base.model.gradient_trained:
        base.backend  # noqa: B018 - trials on this machine: a GPU asked for and not usable is refused now
    plan = sweep_runs.make_plan(config, overrides, sweep_runs.grid_of(grid, base.sweep), seeds, metric, mode, base, cpus)
    sweep_runs.validate(plan, _point_checker())
    folder = sweep_runs.new_folder(plan, base.name, out, base)
    return sweep_runs.run(plan, folder, runner, sweep_trial, progress)


def _check_choice(flag: str, value, choices, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value not in choices:
        raise ConfigError(f"{quoted(value)} is not one of {', '.join(choices)}.{did_you_mean(str(value), list(choices))}", location=flag)


def _sweep_engine(settings: SweepConfig, engine, address, workers, cpus_per_trial, max_failures, gpus_per_trial=None):
    """The sweep's engine from the flags, else the sweep: section; without a choice, Ray where it is installed,
    else this process (said in its description)."""
    engine = engine if engine is not None else settings.engine
    address = address if address is not None else settings.address
    workers = workers if workers is not None else settings.workers
    max_failures = max_failures if max_failures is not None else settings.max_failures
    gpus = gpus_per_trial if gpus_per_trial is not None else settings.gpus_per_trial
    if engine is None and address is None and not ray_installed():
        runner = make_engine("serial", cpus_per_job=cpus_per_trial, max_failures=max_failures, threads_in_serial=True)
        runner.description = f"serial: ray is not installed ({RAY_INSTALL_HINT}), so the trials run one at a time here"
        return runner
    return make_engine(engine or "ray", address, workers, cpus_per_trial, max_failures, threads_in_serial=True, gpus_per_job=gpus)


def _point_checker():
    """What a grid point needs besides a valid config: optimizer sizes, the data's headers, the model's shapes, memory."""
    infos: dict[str, object] = {}

    def check(experiment: Experiment) -> None:
        if experiment.model.gradient_trained:
            experiment.check_optimizer_sizes([(experiment.optimizer_spec, ("optimizer",))])
        key = json.dumps(to_plain(experiment.data.spec), sort_keys=True, default=str)
        if key not in infos:
            infos[key] = experiment.data_info()
        info = infos[key]
        check_memory(experiment, info.input_shape, info.num_classes, info.rows)

    return check


def _resume_sweep(folder: Path, engine, address, workers, max_failures, progress, gpus_per_trial=None) -> sweep_runs.SweepResult:
    """Run a sweep folder's unfinished trials, from the folder where the sweep started (relative data paths)."""
    plan = sweep_runs.Plan.read(folder)
    folder = folder.absolute()
    here = Path.cwd()
    try:
        os.chdir(plan.cwd)
    except OSError as exc:
        raise DataError(f"{folder / sweep_runs.PLAN_FILE}: the sweep ran in {plan.cwd}, which cannot be entered ({exc.strerror})") from None
    try:
        base = load_experiment(plan.config, plan.overrides)
        found = _first_difference(base.resolved(), load_document(folder / "config.yaml").data)
        if found is not None:
            path, mine, theirs = found
            raise ConfigError(
                f"the config changed since the sweep started: {dotted(path)} is {_show(mine)} now, {_show(theirs)} in "
                f"{folder / 'config.yaml'}; a resumed sweep continues the same experiment (start a new sweep instead)",
                location="--resume",
            )
        sweep_runs.validate(plan, _point_checker())
        runner = _sweep_engine(base.sweep or SweepConfig(), engine, address, workers, plan.cpus_per_trial, max_failures, gpus_per_trial)
        rows = sweep_runs.read_rows(folder, plan)
        finished = {name: row for name, row in rows.items() if row["status"] in sweep_runs.FINISHED}
        return sweep_runs.run(plan, folder, runner, sweep_trial, progress, finished)
    finally:
        os.chdir(here)


def history_of(run: str | Path) -> list[dict]:
    """The rows of a run folder's history.csv (numbers as floats, empty cells as None)."""
    import csv

    if not Path(run).exists():
        raise DataError(f"{run}: no such run folder or history.csv")
    path = Path(run) / "history.csv" if Path(run).is_dir() else Path(run)
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "train_loss" not in reader.fieldnames:
                raise DataError(f"{path}: not an nncli history.csv")
            for row in reader:
                if None in row:
                    raise DataError(f"{path}:{reader.line_num}: more cells than the header's {len(reader.fieldnames)} columns")
                rows.append({k: _history_value(path, reader.line_num, k, v) for k, v in row.items()})
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not readable as CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: not an nncli history.csv")
    return rows


def _history_value(path: Path, line: int, column: str, value: str | None) -> float | None:
    if value in ("", None):
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{path}:{line}: column '{column}': '{value}' is not a number") from None


def plot_runs(runs: Sequence[str | Path], out: str | Path = "plot.png") -> Path:
    """Overlay the loss and accuracy curves of several runs in one figure; never overwrites a file."""
    from .plots import plot_history

    if not runs:
        raise ConfigError("give at least one run folder", location="plot")
    histories = [history_of(r) for r in runs]
    target = unique_path(out)  # reserved (empty) until the figure replaces it
    try:
        plot_history(histories, [Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in runs], target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


# -- visualize -------------------------------------------------------------------
@dataclass
class VisualizeResult:
    """`nncli visualize`: where the pictures went, and a line per view saying what it shows."""

    out_dir: Path
    views: list[str]
    files: list[Path]  # every file written (PNGs, and the CSV/JSON of their numbers)
    notes: dict[str, str]

    @property
    def images(self) -> list[Path]:
        """The figures (not the per-unit pictures under units/)."""
        return [p for p in self.files if p.suffix == ".png" and p.parent.name != "units"]


def _visual_subject(checkpoint: str | Path, start: str | Path | None = None, data_path: str | Path | None = None):
    from .visuals import Subject

    ckpt = read_checkpoint(checkpoint)
    experiment = ckpt.experiment()
    dataset = _checkpoint_data(ckpt, experiment, data_path)
    model = ckpt.build_model(experiment)
    initial = ckpt.path.parent / "initial.npz"
    other = None
    if start is not None:
        other_ckpt = read_checkpoint(start)
        other = experiment.build_model(dataset.input_shape, dataset.num_classes or None, targets=dataset.num_targets)
        other_ckpt.load_into(other)  # the same architecture, or one line naming the array that differs
    has_initial = ckpt.path.parent.name == "checkpoints" and initial.is_file() and initial != ckpt.path
    return Subject(ckpt.path, experiment, model, dataset, initial if has_initial else None, other)


def visualize(
    checkpoint: str | Path,
    what: Sequence[str] | None = None,
    out: str | Path | None = None,
    index: int = 0,
    samples: int = 1000,
    start: str | Path | None = None,
    data_path: str | Path | None = None,
) -> VisualizeResult:
    """Draw what a checkpoint's model computes (views: nncli.visuals.VIEWS; default every one that applies)
    into `out` (default ./<name>-visualize, never an earlier folder): PNGs, and CSV/JSON of their numbers.
    `index` picks the test input (activations, states) or stored pattern (patterns); `samples` the training
    samples the landscape is measured on; `start` a checkpoint to start the landscape's line from instead of
    the run's initial weights; `data_path` reads the data from there instead of the config's data.path.
    Nothing is written into the run folder unless `out` names it."""
    from . import visuals as views

    if samples < 1:
        raise ConfigError(f"must be at least 1, got {samples}", location="--samples")
    subject = _visual_subject(checkpoint, start, data_path)
    chosen = [w.strip() for item in what for w in item.split(",") if w.strip()] if what else views.applicable(subject)
    for view in chosen:
        if view not in views.VIEWS:
            raise ConfigError(f"unknown view '{view}' (known: {', '.join(views.VIEWS)}).{did_you_mean(view, list(views.VIEWS))}", location="--what")
    if start is not None and "landscape" not in chosen:
        raise ConfigError("starts the landscape's line; add --what landscape", location="--from")
    views.check(chosen, subject, index)
    out_dir = new_run_folder(out if out is not None else Path(f"{subject.name}-visualize"))
    written = views.render(list(dict.fromkeys(chosen)), subject, out_dir, index=index, samples=samples)
    return VisualizeResult(out_dir, chosen, written.files, written.notes)


# -- report ----------------------------------------------------------------------
@dataclass
class ReportResult:
    """`nncli report`: the page written, and what each folder given was read as."""

    out: Path
    folders: list[tuple[Path, str]]  # (folder, kind): run, seeds, compare-optimizers or sweep
    seconds: float = 0.0


def _folder_kind(folder: Path) -> str:
    """run, seeds (a `train --seeds` parent), compare-optimizers or sweep; a DataError for anything else."""
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    if not folder.is_dir():
        try:
            folder.open("rb").close()
        except OSError as exc:  # say why it cannot be read, as every reader of a file does
            raise DataError(f"{folder}: cannot read ({exc.strerror})") from None
        raise DataError(f"{folder}: not a folder; give run, compare-optimizers or sweep folders")
    if (folder / sweep_runs.PLAN_FILE).is_file():
        return "sweep"
    if (folder / "history.csv").is_file() and (folder / "checkpoints" / "last.npz").is_file():
        return "run"
    if (folder / "summary.csv").is_file() and (folder / "curves.csv").is_file():
        return "compare-optimizers"
    if _seed_runs(folder):
        return "seeds"
    raise DataError(f"{folder}: not a run folder (history.csv, checkpoints/last.npz), nor a compare-optimizers or sweep folder")


def _seed_runs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("seed-*") if (p / "history.csv").is_file() and (p / "checkpoints" / "last.npz").is_file()),
                  key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0)


def _csv_table(path: Path, caption: str = "", limit: int | None = None):
    """A CSV file as a report table: numbers as numbers, columns that are empty throughout left out."""
    import csv

    from .reports import Table

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty")
    header, body = rows[0], rows[1:]
    keep = [k for k in range(len(header)) if any(k < len(r) and r[k] != "" for r in body)]

    def value(text: str):
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return text or None

    shown = body if limit is None else body[:limit]
    more = f" (the first {limit} of {len(body)} rows)" if limit is not None and len(body) > limit else ""
    return Table([header[k] for k in keep], [[value(r[k]) if k < len(r) else None for k in keep] for r in shown], caption + more)


def _png(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\x89PNG") else None


def _evaluation_blocks(checkpoint: Path) -> tuple[list, dict]:
    """Tables of a checkpoint's final evaluation (test split, else validation), and its headline figures."""
    from .reports import Table, Text

    for split in ("test", "val", "train"):
        try:
            report = evaluate([checkpoint], split=None if split == "test" else split)
            break
        except DataError:
            continue
        except ConfigError:  # a Hopfield network: probed on its stored patterns
            report = evaluate([checkpoint])
            break
    else:
        return [Text("no split to evaluate on")], {}
    model = report.models[0]
    if isinstance(model, MemoryReport):
        e = model.evaluation
        rows = [["exact recall", e.accuracy], ["mean overlap", e.overlap], ["bit error rate", e.bit_error_rate], ["mean sweeps", e.sweeps]]
        rows += [[f"ended: {k}", v] for k, v in e.outcomes.items()]
        return [Table(["probes of the stored patterns", "value"], rows, f"{e.n} probes")], {"recall": e.accuracy}
    e = model.evaluation
    if e.regression is not None:
        m = e.regression
        figures = {"loss": e.loss, "mse": m.mse, "rmse": m.rmse, "mae": m.mae, "r2": m.r2, "baseline_r2": m.baseline_r2}
        blocks = [Table(["metric", "value"], [[k, v] for k, v in figures.items()], f"{model.split} split, {e.n} rows, in the target's units")]
        return blocks, {f"{model.split}_loss": e.loss, f"{model.split}_r2": m.r2}
    classes = [str(c) for c in model.classes]
    blocks = [
        Table(["metric", "value"], [["loss", e.loss], ["accuracy", e.accuracy], ["majority-class baseline", model.baseline], ["inputs", e.n]],
              f"{model.split} split"),
        Table(["class", "precision", "recall", "support"],
              [[c, float(p), float(r), int(n)] for c, p, r, n in zip(classes, e.precision, e.recall, e.confusion.sum(axis=1))],
              "per class"),
        Table(["true \\ predicted", *classes], [[c, *[int(v) for v in row]] for c, row in zip(classes, e.confusion)],
              "confusion matrix (rows: true class)"),
    ]
    return blocks, {f"{model.split}_loss": e.loss, f"{model.split}_accuracy": e.accuracy}


def _history_blocks(rows: list[dict], label: str, scratch: Path) -> list:
    from .plots import plot_history
    from .reports import Image, Table

    picture = scratch / f"history-{len(list(scratch.iterdir()))}.png"
    plot_history([rows], [label], picture)
    columns = [c for c in rows[0] if any(r.get(c) is not None for r in rows)]
    shown = rows if len(rows) <= 12 else [*rows[:5], *rows[-6:]]
    caption = f"{len(rows)} epochs" + ("; the first 5 and the last 6" if len(rows) > 12 else "")
    table = Table(columns, [[int(r[c]) if c == "epoch" else r.get(c) for c in columns] for r in shown], caption)
    blocks = [table]
    png = _png(picture)
    if png is not None:
        blocks.insert(0, Image(png, "loss and accuracy (train solid, validation dashed)"))
    return blocks


def _run_section(folder: Path, anchor: str, scratch: Path, level: int = 2) -> tuple:
    """A run folder's section: config, history, final evaluation, visualisations; and its row of the side-by-side table."""
    from .reports import Code, Image, Section, Text

    checkpoint = folder / "checkpoints" / "last.npz"
    history = history_of(folder)
    blocks = [Text(f"{folder}: {len(history)} epochs; final checkpoint {checkpoint}")]
    config_file = folder / "config.yaml"
    if config_file.is_file():
        blocks.append(Section("Resolved config", [Code(config_file.read_text(encoding="utf-8"), str(config_file))], level + 1))
    blocks.append(Section("History", _history_blocks(history, folder.name, scratch), level + 1))
    evaluation, figures = _evaluation_blocks(checkpoint)
    blocks.append(Section("Final evaluation", evaluation, level + 1))
    drawn = visualize(checkpoint, out=scratch / f"{anchor}-visualize")
    pictures = [Image(png, f"nncli visualize: {path.name}") for path in drawn.images if (png := _png(path)) is not None]
    blocks.append(Section("What the network computes", [*[Text(f"{k}: {v}") for k, v in drawn.notes.items()], *pictures], level + 1))
    last = history[-1]
    row = {"run": str(folder), "epochs": len(history), "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
           "val_accuracy": last.get("val_accuracy"), **figures, "seconds": sum(r.get("seconds") or 0.0 for r in history)}
    return Section(folder.name, blocks, level, anchor), row, history


def _side_by_side(rows: list[dict], histories: list[list[dict]], labels: list[str], scratch: Path, title: str, anchor: str):
    from .plots import plot_history
    from .reports import Image, Section, Table

    columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = [c for c in columns if any(r.get(c) is not None for r in rows)]
    picture = scratch / f"overlay-{anchor}.png"
    plot_history(histories, labels, picture)
    blocks = [Table(columns, [[r.get(c) for c in columns] for r in rows], "the last epoch of each run, and its final evaluation")]
    png = _png(picture)
    if png is not None:
        blocks.append(Image(png, "every run's loss and accuracy, overlaid (train solid, validation dashed)"))
    return Section(title, blocks, 2, anchor)


def _compare_section(folder: Path, anchor: str):
    from .reports import Code, Image, Section, Text

    blocks = [Text(f"{folder}: nncli compare-optimizers, every optimizer from the same initial weights")]
    blocks.append(_csv_table(folder / "summary.csv", "summary.csv: one row per optimizer"))
    png = _png(folder / "curves.png")
    if png is not None:
        blocks.append(Image(png, "curves.png: loss, and the gap to the best loss, against iterations and seconds"))
    if (folder / "config.yaml").is_file():
        blocks.append(Section("Resolved config", [Code((folder / "config.yaml").read_text(encoding="utf-8"))], 3))
    return Section(f"{folder.name} (compare-optimizers)", blocks, 2, anchor)


def _sweep_section(folder: Path, anchor: str, scratch: Path):
    from .plots import plot_history
    from .reports import Code, Image, Section, Text

    blocks = [Text(f"{folder}: nncli sweep, grid points ranked by their mean score over seeds")]
    if (folder / "summary.csv").is_file():
        blocks.append(_csv_table(folder / "summary.csv", "summary.csv: one row per grid point, best first"))
    png = _png(folder / "scores.png")
    if png is not None:
        blocks.append(Image(png, "scores.png: each trial's score against each grid key"))
    trials = sorted(p.parent for p in (folder / "trials").glob("t*/history.csv")) if (folder / "trials").is_dir() else []
    if trials:
        picture = scratch / f"{anchor}-trials.png"
        plot_history([history_of(t) for t in trials], [t.name for t in trials], picture)
        png = _png(picture)
        if png is not None:
            blocks.append(Image(png, "every trial's loss and accuracy, overlaid (train solid, validation dashed)"))
    if (folder / "runs.csv").is_file():
        blocks.append(Section("Trials", [_csv_table(folder / "runs.csv", "runs.csv: one row per trial", limit=200)], 3))
    if (folder / "best.yaml").is_file():
        blocks.append(Section("best.yaml", [Code((folder / "best.yaml").read_text(encoding="utf-8"))], 3))
    return Section(f"{folder.name} (sweep)", blocks, 2, anchor)


def report(runs: Sequence[str | Path], out: str | Path = "report.html") -> ReportResult:
    """One self-contained HTML page (nncli.reports) of run folders (config, history, final evaluation, visualisations;
    several: an overlay and a side-by-side table), `train --seeds` folders, compare-optimizers and sweep folders.
    Never overwrites a file (a suffix is added) and writes nothing into the folders it reads."""
    import tempfile

    from .reports import Section, render

    if not runs:
        raise ConfigError("give at least one run, compare-optimizers or sweep folder", location="report")
    started = time.perf_counter()
    folders = [(Path(r), _folder_kind(Path(r))) for r in runs]  # all checked before any work
    target = unique_path(out)  # reserved (empty) until the page replaces it
    try:
        with tempfile.TemporaryDirectory(prefix="nncli-report-") as tmp:
            scratch = Path(tmp)
            sections, rows, histories, labels = [], [], [], []
            for n, (folder, kind) in enumerate(folders):
                anchor = f"part-{n + 1}"
                if kind == "run":
                    section, row, history = _run_section(folder, anchor, scratch)
                    sections.append(section)
                    rows.append(row)
                    histories.append(history)
                    labels.append(folder.name)
                elif kind == "seeds":
                    seed_runs = _seed_runs(folder)
                    parts = [_run_section(run, f"{anchor}-{run.name}", scratch, level=3) for run in seed_runs]
                    overview = _side_by_side([p[1] for p in parts], [p[2] for p in parts], [r.name for r in seed_runs],
                                             scratch, "", anchor + "-overview")
                    sections.append(Section(f"{folder.name} (train --seeds)", [*overview.blocks, *[p[0] for p in parts]], 2, anchor))
                    for (section, row, history), run in zip(parts, seed_runs):
                        rows.append(row)
                        histories.append(history)
                        labels.append(f"{folder.name}/{run.name}")
                elif kind == "compare-optimizers":
                    sections.append(_compare_section(folder, anchor))
                else:
                    sections.append(_sweep_section(folder, anchor, scratch))
            if len(rows) > 1 and not (len(folders) == 1 and folders[0][1] == "seeds"):  # a seeds folder has its own
                sections.insert(0, _side_by_side(rows, histories, labels, scratch, "All runs side by side", "overview"))
            title = "nncli report: " + ", ".join(folder.name for folder, _ in folders)
            subtitle = f"{len(folders)} folder{'s' if len(folders) > 1 else ''}: " + "; ".join(f"{f} ({k})" for f, k in folders)
            atomic_write_text(target, render(title, subtitle, sections))
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return ReportResult(target, folders, time.perf_counter() - started)


# -- export --------------------------------------------------------------------
def export_checkpoint(checkpoint: str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Write a layer-stack checkpoint's model in another format (onnx: see nncli.export); never overwrites a file.
    Returns the path written (default: the checkpoint's with the format's suffix)."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format {quoted(format)} (known: {', '.join(EXPORT_FORMATS)}).{did_you_mean(format, EXPORT_FORMATS)}",
            location="--format",
        )
    return export_onnx(checkpoint, out)  # imports onnx only now: an optional dependency


# -- compare-optimizers ----------------------------------------------------------
@dataclass
class ComparisonResult:
    out_dir: Path
    comparison: Comparison
    experiment: Experiment

    @property
    def rows(self) -> list[OptimizerSummary]:
        return self.comparison.rows

    def to_json(self) -> list[dict]:
        """summary.csv's rows, one JSON object per optimizer (the `--json` output)."""
        return json_rows(self.comparison.rows)


def compare_optimizers(
    config: str | Path | dict,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    seeds: int = 1,
    on_run_end=None,
    engine: str | None = None,
    address: str | None = None,
    device: str | None = None,
) -> ComparisonResult:
    """Run every optimizer in the config's compare: section from the same initial weights; write the results.

    With seeds = N, everything is repeated for seeds seed, seed+1, ..., seed+N-1
    (each a new data split and initialisation) and the summary holds means and
    standard deviations. Files in the out folder (default runs/<name>-compare,
    never an earlier one): summary.csv, runs.csv (one row per optimizer and
    seed), curves.csv, curves.png and config.yaml (the resolved config).
    `on_run_end(run)` is called after each optimizer run (on Ray, as each seed's runs come back).
    `engine` (serial, the default, or ray; `address` a Ray cluster) runs each seed as a job.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"must be a positive integer, got {seeds!r}", location="--seeds")
    experiment = load_experiment(config, overrides, device=device)
    if address is None:
        experiment.backend  # noqa: B018 - a GPU asked for and not usable is refused before anything runs
    overrides = with_device(overrides, device)  # what each seed's job applies
    if not experiment.model.gradient_trained:
        raise ConfigError(f"{experiment.model.spec['type']} is not trained by gradient descent: there are no optimizers to compare", ("model", "type"))
    if experiment.compare is None:
        raise ConfigError(
            "missing: add a compare: section listing the optimizers, e.g. compare: {optimizers: [{type: gd}, {type: newton}]}",
            ("compare",),
            experiment.doc.locate(("compare",)),
        )
    with experiment.doc.errors_located():  # every optimizer must see the same fixed objective
        refuse_training_side_effects(experiment.model, "compare-optimizers", "remove it to compare optimizers on this model")
    plan = experiment.compare.runs()
    experiment.check_optimizer_sizes([(run.spec, run.path) for run in plan])  # before any data is read
    info = experiment.data_info()
    check_memory(experiment, info.input_shape, info.num_classes, info.rows)
    runner = make_engine(engine, address)
    # Reserve the out folder before the (possibly long) runs: a bad --out fails now, not after them.
    out_dir = new_run_folder(out if out is not None else Path("runs") / f"{experiment.name}-compare")
    config_file = out_dir / "config.yaml"
    atomic_write_text(config_file, dump_yaml(experiment.resolved()))  # no longer empty: nobody else takes it
    try:
        comparison = _compare_on(runner, config, overrides, [experiment.seed + i for i in range(seeds)], on_run_end)
    except BaseException:  # bad data, divergence handling gone wrong, Ctrl-C: leave no trace
        config_file.unlink(missing_ok=True)
        try:
            out_dir.rmdir()
        except OSError:
            pass  # something else was put there meanwhile: keep it
        raise

    atomic_write_text(out_dir / "summary.csv", csv_text(SUMMARY_COLUMNS, [r.row() for r in comparison.rows]))
    atomic_write_text(out_dir / "runs.csv", csv_text(RUN_COLUMNS, [r.row() for r in comparison.runs]))
    atomic_write_text(out_dir / "curves.csv", csv_text(CURVE_COLUMNS, curve_rows(comparison.runs)))
    from .plots import plot_curves

    title = f"{experiment.name}: {comparison.num_params} parameters, {comparison.n_train} training rows"
    plot_curves(comparison.runs, out_dir / "curves.png", title)
    return ComparisonResult(out_dir, comparison, experiment)


def _compare_on(runner, config, overrides, seeds: list[int], on_run_end) -> Comparison:
    """Every seed of a comparison as one job of `runner`; their runs merged in seed order."""
    in_process = isinstance(runner, SerialEngine)
    spec = {"config": config, "overrides": list(overrides), **_driver_context()}
    jobs = [Job(f"seed-{s}", compare_seed, ({**spec, "seed": s, "on_run_end": on_run_end if in_process else None},)) for s in seeds]

    def ended(outcome) -> None:
        if not in_process and outcome.status == "ok" and on_run_end is not None:
            for run in outcome.value.runs:
                on_run_end(run)

    outcomes = runner.run(jobs, on_end=ended)
    for outcome in outcomes:
        raise_for(outcome)
    return merge_comparisons([outcome.value for outcome in outcomes])


# -- eval ----------------------------------------------------------------------
@dataclass
class ModelReport:
    name: str  # the checkpoint path, or "ensemble (mean)" / "ensemble (vote)"
    split: str
    classes: list
    evaluation: Evaluation
    baseline: float  # accuracy of always predicting the training data's majority class

    targets: list = field(default_factory=list)  # a regression's target columns (its metrics: evaluation.regression)

    def to_json(self) -> dict:
        e = self.evaluation
        if e.regression is not None:
            return self._regression_json()
        return {
            "checkpoint": self.name,
            "split": self.split,
            "n": e.n,
            "loss": None if np.isnan(e.loss) else e.loss,
            "accuracy": e.accuracy,
            "confusion_matrix": e.confusion.tolist(),
            "classes": self.classes,
            "majority_baseline": self.baseline,
            "precision": [None if np.isnan(v) else float(v) for v in e.precision],
            "recall": [None if np.isnan(v) else float(v) for v in e.recall],
        }

    def _regression_json(self) -> dict:
        e, m = self.evaluation, self.evaluation.regression

        def number(v):
            return None if not math.isfinite(v) else float(v)

        keys = ("mse", "rmse", "mae", "r2", "baseline_mse", "baseline_r2")
        return {
            "checkpoint": self.name,
            "split": self.split,
            "n": e.n,
            "loss": number(e.loss),
            "accuracy": None,  # the contract's keys, empty for a regression (as history.csv's accuracy cells)
            "confusion_matrix": None,
            **{k: number(getattr(m, k)) for k in keys},
            "targets": self.targets,
            "per_target": {t: {k: number(m.per_target[k][i]) for k in keys} for i, t in enumerate(self.targets)},
        }


@dataclass
class MemoryReport:
    """A Hopfield checkpoint's probes (`nncli eval`): exact recall (`accuracy`), overlap, bit errors, outcomes."""

    name: str
    split: str
    evaluation: MemoryEvaluation

    def to_json(self) -> dict:
        e = self.evaluation
        return {
            "checkpoint": self.name, "split": self.split, "n": e.n, "accuracy": e.accuracy, "overlap": e.overlap,
            "bit_error_rate": e.bit_error_rate, "outcomes": e.outcomes, "mean_sweeps": e.sweeps, "noise": e.noise, "mask": e.mask,
        }


@dataclass
class EvalReport:
    models: list[ModelReport] | list[MemoryReport]
    ensemble: ModelReport | None = None  # mean of predicted probabilities (several checkpoints)
    vote: ModelReport | None = None  # majority vote of predicted classes
    note: str | None = None  # why there is no ensemble, when there are several models

    @property
    def regression(self) -> bool:
        return getattr(self.models[0].evaluation, "regression", None) is not None

    @property
    def accuracy_spread(self) -> tuple[float, float]:
        """Mean and sample standard deviation of the models' accuracies (regressions: R²) (sd 0 for one model)."""
        values = [m.evaluation.regression.r2 if self.regression else m.evaluation.accuracy for m in self.models]
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def to_json(self) -> list[dict]:
        """One object per checkpoint, then one for the ensemble (with the vote's figures inside).

        When there is no ensemble because the checkpoints' splits differ, every
        checkpoint's object carries the reason as `note`.
        """
        rows = [m.to_json() for m in self.models]
        if self.note is not None:
            for row in rows:
                row["note"] = self.note
        if self.ensemble is not None:
            row = self.ensemble.to_json()
            row["checkpoint"] = "ensemble"
            row["members"] = [m.name for m in self.models]
            if self.vote is not None:  # a regression's ensemble is the mean prediction only
                row["vote_accuracy"] = self.vote.evaluation.accuracy
                row["vote_confusion_matrix"] = self.vote.evaluation.confusion.tolist()
            rows.append(row)
        return rows


def evaluate(
    checkpoints: Sequence[str | Path],
    split: str | None = None,
    data_path: str | Path | None = None,
    noise: float | None = None,
    mask: str | None = None,
    probes: int | None = None,
    device: str | None = None,
) -> EvalReport:
    """Evaluate each checkpoint on a split (rebuilt from the checkpoint alone) and, for several, their ensemble.

    Hopfield checkpoints are probed with their stored patterns instead (`noise`, `mask`, `probes`; see
    models/hopfield.py): exact recall, overlap, bit errors and how the probes ended.
    """
    if split is not None and split not in SPLITS:
        choices = SPLITS[::-1]  # test, val, train: the default first
        raise ConfigError(
            f"expected {', '.join(choices[:-1])} or {choices[-1]}, got '{split}'.{did_you_mean(split, list(choices))}", location="--split"
        )
    if not checkpoints:
        raise ConfigError("give at least one checkpoint", location="eval")
    loaded = [read_checkpoint(p) for p in checkpoints]  # check all before any work
    experiments = [ckpt.experiment(device) for ckpt in loaded]  # on the CPU unless `device` says otherwise
    memories = [hasattr(e.model, "probe") for e in experiments]
    if any(memories):
        if not all(memories):
            raise ConfigError("Hopfield checkpoints are probed, not classified: evaluate them apart from the others", location="eval")
        if split not in (None, "train"):
            raise ConfigError("a Hopfield network is probed with the patterns it stored: the train split", location="--split")
        return _probe_memories(loaded, experiments, data_path, *_probe_options(noise, mask, probes))
    for flag, given in (("--noise", noise), ("--mask", mask), ("--probes", probes)):
        if given is not None:
            raise ConfigError("probes a Hopfield network (model.type: hopfield); these checkpoints classify", location=flag)
    split = split or "test"
    reports, labels, datasets = [], [], []
    cache: dict[str, Dataset] = {}
    for ckpt, experiment in zip(loaded, experiments):
        dataset = _checkpoint_data(ckpt, experiment, data_path, cache)
        model = ckpt.build_model(experiment)
        part = dataset.split(split)
        result = experiment.model.evaluate(
            model, experiment.loss, part, dataset.num_classes, experiment.training.eval_batch_size, keep_probabilities=len(loaded) > 1
        )
        if dataset.regression:
            result.regression = regression_report(dataset, part, result.outputs)
            baseline = result.regression.baseline_r2
        else:
            majority = np.bincount(dataset.train.y, minlength=dataset.num_classes).argmax()
            baseline = float(np.mean(part.y == majority)) if len(part) else float("nan")
        reports.append(ModelReport(str(ckpt.path), split, dataset.classes, result, baseline, list(dataset.targets)))
        labels.append(dataset.in_target_units(part.y) if dataset.regression else part.y)
        datasets.append(dataset)
    report = EvalReport(reports)
    if len(loaded) > 1:
        first = labels[0]
        if any(r.classes != reports[0].classes or r.targets != reports[0].targets for r in reports):
            what = "target columns" if reports[0].targets or any(r.targets for r in reports) else "classes"
            raise CheckpointError(f"these checkpoints were trained on data with different {what}; they cannot be compared or combined")
        def same(y, reference):  # a regression's targets in their units differ by float32 round trips (~1e-6)
            if not datasets[0].regression:
                return np.array_equal(y, reference)
            return np.allclose(y, reference, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(reference), initial=1.0)))

        if any(len(y) != len(first) or not same(y, first) for y in labels[1:]):
            # e.g. `train --seeds` on CSV data: every seed draws its own test split
            report.note = (
                f"each checkpoint has its own {split} split (split by its seed; data.split_seed fixes one): "
                "no ensemble, only the mean of the models"
            )
            return report
        if datasets[0].regression:  # the mean prediction, no vote
            # each member's outputs in the target's units (each standardised with its own training rows), back in the
            # first's for the loss
            outputs = [d.in_target_units(r.evaluation.outputs) for d, r in zip(datasets, reports)]
            scale = datasets[0].target_scale
            mean_units = np.mean(outputs, axis=0)
            standardised = mean_units if scale is None else (mean_units - scale[0]) / scale[1]
            mean = ensemble_regression([standardised], datasets[0].split(split).y, experiments[0].loss)
            mean.regression = regression_report(datasets[0], datasets[0].split(split), mean.outputs)
            report.ensemble = ModelReport("ensemble (mean)", split, [], mean, mean.regression.baseline_r2, reports[0].targets)
            return report
        mean, vote = ensemble([r.evaluation.probabilities for r in reports], first, len(reports[0].classes))
        baseline = reports[0].baseline
        report.ensemble = ModelReport("ensemble (mean)", split, reports[0].classes, mean, baseline)
        report.vote = ModelReport("ensemble (vote)", split, reports[0].classes, vote, baseline)
    return report


def _checkpoint_data(ckpt: Checkpoint, experiment: Experiment, data_path, cache: dict | None = None) -> Dataset:
    """The checkpoint's data, preprocessed as when it was trained (read once per source and preprocessing)."""
    if data_path is not None:
        experiment.data = experiment.data.with_path(str(data_path))
        experiment.doc.marks[("data", "path")] = "--data-path"
    key = json.dumps([experiment.data.spec, experiment.seeds("data").entropy, ckpt.meta["preprocessing"]], sort_keys=True, default=str)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = _load_data(experiment, ckpt.meta["preprocessing"])
    ckpt.require_input_shape(cache[key].input_shape)
    return cache[key]


def _probe_options(noise: float | None, mask: str | None, probes: int | None) -> tuple[float, str | None, int | None]:
    """Checked --noise, --mask and --probes."""
    if noise is not None and mask is not None:
        raise ConfigError("a probe is either noisy or masked: give --noise or --mask, not both", location="--mask")
    if noise is not None and not 0.0 <= noise <= 1.0:
        raise ConfigError(f"the fraction of bits to flip must be in [0, 1], got {noise}", location="--noise")
    if mask is not None and mask not in MASKS:
        raise ConfigError(f"expected {' or '.join(MASKS)}, got '{mask}'.{did_you_mean(mask, list(MASKS))}", location="--mask")
    if probes is not None and probes < 1:
        raise ConfigError(f"must be at least 1, got {probes}", location="--probes")
    return noise or 0.0, mask, probes


def _probe_memories(loaded, experiments, data_path, noise, mask, probes) -> EvalReport:
    reports = []
    for ckpt, experiment in zip(loaded, experiments):
        dataset = _checkpoint_data(ckpt, experiment, data_path)
        model = ckpt.build_model(experiment)
        rng = np.random.default_rng(experiment.seeds("probes"))
        result = experiment.model.probe(model, dataset.train, rng, noise, mask, probes)
        reports.append(MemoryReport(str(ckpt.path), "train", result))
    return EvalReport(reports)


@dataclass
class RecallResult:
    """One probe followed sweep by sweep (`nncli recall`)."""

    out_dir: Path
    index: int
    outcome: str
    sweeps: int
    energy: list[float]  # before any update, then after each sweep
    overlap: float  # final overlap with the probe's pattern
    files: list[Path]


def recall(
    checkpoint: str | Path,
    index: int = 0,
    noise: float | None = None,
    mask: str | None = None,
    update: str | None = None,
    out: str | Path | None = None,
) -> RecallResult:
    """Follow one probe of stored pattern `index` through a Hopfield network: states.png (the state after every
    sweep, as a picture), energy.csv, overlaps.csv (with every stored pattern, per sweep), and how it ended."""
    ckpt = read_checkpoint(checkpoint)
    experiment = ckpt.experiment()
    if not hasattr(experiment.model, "probe"):
        raise ConfigError(f"follows a Hopfield network's recall; {ckpt.path} holds a {experiment.model.spec['type']} model", location="recall")
    if update is not None and update not in UPDATES:
        raise ConfigError(f"expected {' or '.join(UPDATES)}, got '{update}'.{did_you_mean(update, list(UPDATES))}", location="--update")
    if update is not None and experiment.model.rule == "modern":
        raise ConfigError("the modern rule updates every coordinate at once (one softmax); it has no async or sync", location="--update")
    noise, mask, _ = _probe_options(noise, mask, None)
    dataset = _checkpoint_data(ckpt, experiment, None)
    model = ckpt.build_model(experiment)
    if update is not None:
        model.update = update
    patterns = dataset.train.x.reshape(len(dataset.train), -1).astype(np.float64)
    if not 0 <= index < len(patterns):
        raise ConfigError(f"must be in 0 … {len(patterns) - 1} (the network stores {len(patterns)} patterns), got {index}", location="--index")
    trace = trace_recall(model, patterns, index, np.random.default_rng(experiment.seeds("probes")), noise, mask)
    states, energy, overlap_rows, sweeps, ended = trace.states, trace.energy, trace.overlaps, trace.sweeps, trace.ended
    out_dir = new_run_folder(out if out is not None else Path("runs") / f"{experiment.name}-recall-{index}")
    files = [out_dir / "energy.csv", out_dir / "overlaps.csv", out_dir / "states.png"]
    atomic_write_text(files[0], csv_text(("sweep", "energy"), [{"sweep": s, "energy": e} for s, e in enumerate(energy)]))
    atomic_write_text(
        files[1],
        csv_text(("sweep", "pattern", "overlap"), [
            {"sweep": s, "pattern": p, "overlap": float(m)} for s, row in enumerate(overlap_rows) for p, m in enumerate(row)
        ]),
    )
    from .plots import plot_recall

    label = dataset.classes[int(dataset.train.y[index])]
    title = f"{experiment.name}: pattern {index}" + (f" (a {label})" if label != index else "")
    plot_recall(states, patterns[index], dataset.input_shape, energy, overlap_rows[:, index], f"{title}: {ended}", files[2])
    return RecallResult(out_dir, index, ended, sweeps, energy, float(overlap_rows[-1, index]), files)


@dataclass
class CapacityResult:
    """`nncli capacity`: recall against the number of stored random patterns."""

    out_dir: Path
    neurons: int
    rows: list[dict]  # CAPACITY_COLUMNS
    theory: dict[str, dict[str, float]]  # rule -> named capacities (patterns)
    noise: float

    def to_json(self) -> dict:
        return {"neurons": self.neurons, "noise": self.noise, "rows": self.rows, "theory": self.theory}


CAPACITY_COLUMNS = ("rule", "patterns", "load", "trials", "fixed_point_fraction", "exact_recall", "mean_overlap")


def capacity(
    config: str | Path | dict,
    overrides: Sequence[str] = (),
    patterns: str = "5:60:5",
    trials: int = 10,
    noise: float = 0.0,
    rules: str | None = None,
    out: str | Path | None = None,
) -> CapacityResult:
    """Store P = each of `patterns` (START:STOP:STEP or a comma list) random ±1 patterns of the config's N neurons,
    `trials` times per P and rule: fixed-point fraction, exact recall from `noise` flipped bits, mean overlap;
    capacity.csv and capacity.png (against P/N, with the theory lines) in the out folder."""
    experiment = load_experiment(config, overrides)
    kind = experiment.model
    if not hasattr(kind, "probe"):
        raise ConfigError(f"measures a Hopfield network's capacity; this config's model is {kind.spec['type']}", ("model", "type"))
    counts = _pattern_counts(patterns)
    chosen = [kind.rule] if rules is None else [r.strip() for r in rules.split(",") if r.strip()]
    for rule in chosen:
        if rule not in RULES:
            raise ConfigError(f"unknown rule '{rule}' (expected {', '.join(RULES)}).{did_you_mean(rule, list(RULES))}", location="--rules")
    if not chosen:
        raise ConfigError("name at least one rule", location="--rules")
    if trials < 1:
        raise ConfigError(f"must be at least 1, got {trials}", location="--trials")
    noise, _, _ = _probe_options(noise, None, None)
    neurons = math.prod(experiment.data_info().input_shape)
    if neurons < 2:
        raise ConfigError(f"a Hopfield network needs at least 2 neurons; this data gives {neurons}", ("data",), experiment.doc.locate(("data",)))
    out_dir = new_run_folder(out if out is not None else Path("runs") / f"{experiment.name}-capacity")
    atomic_write_text(out_dir / "config.yaml", dump_yaml(experiment.resolved()))
    rows = capacity_curve(
        neurons, counts, trials, chosen, np.random.default_rng(experiment.seeds("probes")), noise,
        kind.zero_diagonal, kind.update, kind.max_sweeps, kind.beta,
    )
    rows = [{k: row[k] for k in CAPACITY_COLUMNS} for row in rows]
    theory = {rule: theoretical_capacity(rule, neurons) for rule in chosen}
    atomic_write_text(out_dir / "capacity.csv", csv_text(CAPACITY_COLUMNS, rows))
    from .plots import plot_capacity

    plot_capacity(rows, theory, neurons, noise, out_dir / "capacity.png")
    return CapacityResult(out_dir, neurons, rows, theory, noise)


def _pattern_counts(text: str) -> list[int]:
    """'5:60:5' -> 5, 10, …, 60 (stop included); '10,20,40' -> those."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = (*parts, 1) if len(parts) == 2 else parts
            counts = list(range(start, stop + 1, step)) if step > 0 else []
        else:
            counts = [int(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(f"expected START:STOP[:STEP] or a comma list of pattern counts, got '{text}'", location="--patterns") from None
    if not counts or min(counts) < 1:
        raise ConfigError(f"expected positive pattern counts, got '{text}'", location="--patterns")
    return counts


@dataclass
class PredictResult:
    """`nncli predict`: one row per input (`columns` of predictions.csv), and where they were written."""

    out: Path
    columns: list[str]
    rows: list[dict]
    classes: list  # the labels of the probability columns ([] for a regression or a Hopfield network)
    top: int | None = None
    targets: list[str] | None = None  # a regression's target columns

    def to_json(self, limit: int | None = None) -> list[dict]:
        """One object per input (the first `limit`): its label and probabilities (the top `top` only, when
        asked), a regression's values, or a Hopfield recall."""
        objects = []
        for row in self.rows[:limit]:
            if self.targets is not None:  # a regression
                objects.append({"input": row["input"], "prediction": {t: row[t] for t in self.targets}})
                continue
            if not self.classes:  # a Hopfield recall
                objects.append({k: row[k] for k in ("input", "nearest", "overlap", "outcome", "sweeps")} | {"state": row["state"]})
                continue
            probabilities = {str(c): row[f"p_{c}"] for c in self.classes}
            ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])[: self.top or len(probabilities)]
            objects.append({"input": row["input"], "label": row["label"], "probabilities": dict(ranked)})
        return objects


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    top: int | None = None,
    resize: bool = True,
    invert: bool = False,
    device: str | None = None,
) -> PredictResult:
    """Predict new inputs with a checkpoint: CSV rows, IDX or picture files, .ts cases, prepared with the
    checkpoint's preprocessing (by its data source), in batches; write predictions.csv (never overwritten).
    A Hopfield checkpoint recalls each input and writes the states it settles in."""
    if not inputs:
        raise ConfigError("give at least one input file", location="predict")
    if top is not None and top < 1:
        raise ConfigError(f"must be at least 1, got {top}", location="--top")
    ckpt = read_checkpoint(checkpoint)
    experiment = ckpt.experiment(device)
    preprocessing, input_shape = ckpt.meta["preprocessing"], tuple(ckpt.meta["input_shape"])
    prepared = []
    for path in inputs:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file")
        names, x = experiment.data.read_inputs(Path(path), preprocessing, input_shape, resize=resize, invert=invert)
        if tuple(x.shape[1:]) != input_shape:
            raise DataError(f"{path}: gives inputs of shape {tuple(x.shape[1:])}; the model takes {input_shape}")
        prepared.append((names, x))
    names = [n for part, _ in prepared for n in part]
    x = np.concatenate([x for _, x in prepared])
    model = ckpt.build_model(experiment)
    target = unique_path(out if out is not None else "predictions.csv")
    try:
        if hasattr(experiment.model, "probe"):
            result = _recall_inputs(experiment, model, names, x, target)
        elif preprocessing.get("task") == "regression":
            result = _regress_inputs(experiment, model, names, x, target, preprocessing)
        else:
            result = _classify_inputs(experiment, model, names, x, target, preprocessing.get("classes") or [], top)
        atomic_write_text(target, csv_text(result.columns, result.rows))
    except BaseException:
        target.unlink(missing_ok=True)  # the reservation, not a result
        raise
    return result


def _classify_inputs(experiment, model, names, x, target, classes, top) -> PredictResult:
    probabilities = predict_outputs(model, x, experiment.training.eval_batch_size, transform=experiment.loss.probabilities)
    predicted = np.argmax(probabilities, axis=1)
    columns = ["input", "label", *[f"p_{c}" for c in classes]]
    rows = [
        {"input": name, "label": classes[k], **{f"p_{c}": float(p) for c, p in zip(classes, row)}}
        for name, k, row in zip(names, predicted, probabilities)
    ]
    return PredictResult(target, columns, rows, list(classes), top)


def _regress_inputs(experiment, model, names, x, target, preprocessing) -> PredictResult:
    """A regression's predicted values, one column per target, in the target's own units."""
    outputs = predict_outputs(model, x, experiment.training.eval_batch_size).astype(np.float64)
    if "target_mean" in preprocessing:
        outputs = outputs * np.asarray(preprocessing["target_std"]) + np.asarray(preprocessing["target_mean"])
    targets = [str(t) for t in preprocessing.get("targets") or [f"y{j}" for j in range(outputs.shape[1])]]
    rows = [{"input": name, **{t: float(v) for t, v in zip(targets, row)}} for name, row in zip(names, outputs)]
    return PredictResult(target, ["input", *targets], rows, [], targets=targets)


def _recall_inputs(experiment, model, names, x, target) -> PredictResult:
    """A Hopfield network's recall of each input: the state it settles in, the stored pattern nearest to it."""
    stored = _load_data(experiment).train.x  # the stored patterns (the weights alone do not give them back)
    patterns = stored.reshape(len(stored), -1).astype(np.float64)
    probes = np.where(np.isnan(x), 0.0, x).reshape(len(x), -1).astype(np.float64)
    result = model.run(probes, np.random.default_rng(experiment.seeds("probes")))
    m = overlaps(result.states, patterns)
    nearest = np.argmax(np.abs(m), axis=1)
    ended = outcomes(result, patterns, nearest)
    rows = [
        {"input": name, "nearest": int(k), "overlap": float(m[i, k]), "outcome": str(ended[i]), "sweeps": int(result.sweeps[i]),
         "state": " ".join(f"{v:g}" for v in result.states[i])}
        for i, (name, k) in enumerate(zip(names, nearest))
    ]
    return PredictResult(target, ["input", "nearest", "overlap", "outcome", "sweeps", "state"], rows, [])


# -- summary and components ----------------------------------------------------
def config_sections() -> list[ComponentInfo]:
    """The fixed parts of a config file (top level, model, training), described like components."""
    return [
        ComponentInfo("section", name, (target.__doc__ or "").strip().splitlines()[0], describe_options(target), [])
        for name, target in SECTIONS.items()
    ]

@dataclass
class ModelSummary:
    name: str
    kind: str  # model.type
    input_shape: tuple[int, ...]
    rows: list[PlanRow]
    total_params: int
    loss: str | None  # None for kinds not trained by gradient descent
    optimizer: str | None
    memory: MemoryNeed  # what training would need
    available: int | None  # memory available now (bytes), when known


def summarize(config: str | Path | dict, overrides: Sequence[str] = ()) -> ModelSummary:
    """Layers, output shapes, parameter counts and training memory from shapes alone (only data headers are read)."""
    experiment = load_experiment(config, overrides)
    info = experiment.data_info()
    plan = experiment.plan(info.input_shape, info.num_classes)
    experiment.check_loss(plan.output_shape, info.num_classes, info.num_targets)
    return ModelSummary(
        name=experiment.name,
        kind=experiment.model.spec["type"],
        input_shape=plan.input_shape,
        rows=plan.rows,
        total_params=plan.num_params,
        loss=experiment.loss.spec["type"] if experiment.loss is not None else None,
        optimizer=experiment.optimizer_spec["type"] if experiment.optimizer_spec is not None else None,
        memory=memory_needed(experiment, plan, info.rows),
        available=available_memory(),
    )


def devices() -> list[dict]:
    """The devices training can use: [{device, usable, description}] for the CPU and a CUDA GPU (CuPy), or why not."""
    return backend.devices()


def components(kind: str | None = None) -> list[ComponentInfo]:
    """Config sections and every registered component (of one kind), with options, defaults and descriptions."""
    from . import plugins

    plugins.load_entry_points()
    known = ["section", *KINDS]
    if kind is None:
        kinds = known
    else:
        lowered = kind.lower()  # plurals too: layers, losses, data sources ('data' itself)
        key = next((k for k in (lowered, lowered.removesuffix("s"), lowered.removesuffix("es")) if k in known), lowered)
        if key not in known:
            raise ConfigError(f"unknown component kind '{kind}'.{did_you_mean(key, known)} Kinds: {', '.join(known)}", location="components")
        kinds = [key]
    infos = []
    for k in kinds:
        if k == "section":
            infos += config_sections()
        else:
            infos += [replace(KINDS[k].describe(name), kind=k) for name in KINDS[k].names()]
    return infos
