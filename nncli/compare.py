"""compare-optimizers: every optimizer of a config's `compare:` section, from the same initial weights.

What is measured, per optimizer (the semantics CompareConfig documents):

- The objective is the training loss over the whole training set,
  f(θ) = objective.full_batch_objective on data.train: what the minimisers minimise
  and what every curve shows, so curves of mini-batch and full-batch
  methods are comparable point for point.
- An iteration is one outer iteration of a full-batch method (gd, newton,
  bfgs, dfp, lbfgs, cg) and one update of a mini-batch method (one batch of
  `batch_size` rows; the batch order is the same for every mini-batch method).
  Iteration 0 is the common starting point.
- Every run goes through the training loop (`Trainer.step`), so a first-order
  run takes the same updates as `nncli train` (schedule, clipping,
  augmentation included); what a comparison adds is the callback
  `ObjectiveTrace`: the curve and the stopping rule.
- `seconds` is the wall time of the method's own work (`StepLog.seconds`):
  its gradients (full or mini-batch), directions and line searches. The
  full-objective evaluation after each first-order update is bookkeeping for
  the curve and the stopping rule: it is neither timed nor counted.
- `function_evaluations` / `gradient_evaluations` count objective calls
  whose loss / gradient the method used (Newton's Hessian columns use only
  gradients); for mini-batch methods, mini-batch evaluations. `epochs` is
  the data they touched: rows processed by gradient evaluations / training rows.
- Stopping, checked after every iteration in this order: non-finite loss
  (diverged), the minimiser's own stop reason (minimisers), the shared
  rule `optimizers.base.convergence` with the section's tolerances (first-
  order methods), the iteration budget. Mini-batch methods apply the
  loss-change part once per epoch, between the losses at epoch ends: from
  one update to the next the change is noise and can be tiny by chance.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import Dataset
from .errors import DivergedError
from .metrics import regression_report
from .experiment import CompareConfig, CompareRun, Experiment
from .optimizers import Minimizer, Optimizer
from .optimizers.base import CONVERGED, DIVERGED, GRADIENT_TOLERANCE, MAX_ITERATIONS, convergence, gradient_converged
from .schedules import SCHEDULES
from .objective import full_batch_objective
from .training import Callback, Fit, Trainer

# summary.csv: the contract's columns first, in order, then the extra ones.
SUMMARY_COLUMNS = (
    "optimizer", "final_loss", "train_accuracy", "test_accuracy", "iterations", "seconds", "converged",
    "type", "function_evaluations", "gradient_evaluations", "epochs", "stop_reason", "schedule",
    "seeds", "final_loss_sd", "train_accuracy_sd", "test_accuracy_sd", "iterations_sd", "seconds_sd",
    "train_r2", "test_r2", "train_r2_sd", "test_r2_sd",
)  # fmt: skip  (a regression: the accuracy cells empty, R² in train_r2 / test_r2; a classification: the reverse)
RUN_COLUMNS = (
    "optimizer", "seed", "final_loss", "train_accuracy", "test_accuracy", "iterations", "seconds", "converged",
    "type", "function_evaluations", "gradient_evaluations", "epochs", "stop_reason", "schedule", "train_r2", "test_r2",
)  # fmt: skip
CURVE_COLUMNS = ("optimizer", "iteration", "loss", "seconds", "seed")
LINE_SEARCH = "line search"  # the schedule column of a minimiser, which has no learning rate


@dataclass
class RunResult:
    """One optimizer on one seed."""

    optimizer: str  # the row label
    type: str  # registered optimizer name
    seed: int
    second_order: bool  # a Minimizer (newton, bfgs, dfp, lbfgs, cg)
    losses: list[float]  # f(θ_k), k = 0..iterations
    times: list[float]  # cumulative timed seconds at each θ_k
    function_evaluations: int
    gradient_evaluations: int
    epochs: float
    stop_reason: str
    train_accuracy: float | None  # None for a regression
    test_accuracy: float | None
    theta: np.ndarray = field(repr=False)
    schedule: str = LINE_SEARCH  # the learning-rate schedule the run used, e.g. "cosine"
    train_r2: float | None = None  # a regression's R² on the training and test splits
    test_r2: float | None = None

    @property
    def iterations(self) -> int:
        return len(self.losses) - 1

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    @property
    def seconds(self) -> float:
        return self.times[-1]

    @property
    def converged(self) -> bool:
        return self.stop_reason in CONVERGED

    def row(self) -> dict:
        return {c: getattr(self, c) for c in RUN_COLUMNS}


@dataclass
class OptimizerSummary:
    """One row of summary.csv: an optimizer over all seeds (means; *_sd are sample standard deviations)."""

    optimizer: str
    final_loss: float
    train_accuracy: float | None
    test_accuracy: float | None
    iterations: float
    seconds: float
    converged: bool  # on every seed
    type: str
    function_evaluations: float
    gradient_evaluations: float
    epochs: float
    stop_reason: str  # e.g. "gradient_tolerance", or "gradient_tolerance ×4, max_iterations ×1"
    schedule: str
    seeds: int
    final_loss_sd: float | None = None
    train_accuracy_sd: float | None = None
    test_accuracy_sd: float | None = None
    iterations_sd: float | None = None
    seconds_sd: float | None = None
    second_order: bool = False
    train_r2: float | None = None
    test_r2: float | None = None
    train_r2_sd: float | None = None
    test_r2_sd: float | None = None

    def row(self) -> dict:
        return {c: getattr(self, c) for c in SUMMARY_COLUMNS}


@dataclass
class Baseline:
    """Always predicting the training split's most frequent class (a regression: the training targets' mean)."""

    label: object  # the class value (a regression: "the training mean")
    train_accuracy: float | None
    test_accuracy: float | None
    train_r2: float | None = None  # a regression: the baseline's R² (0 on the training split)
    test_r2: float | None = None


@dataclass
class SeedSetup:
    seed: int
    data: Dataset
    model: object
    theta0: np.ndarray
    baseline: Baseline


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values present; one value as it is (a count from one seed stays an int in summary.csv)."""
    values = [v for v in values if v is not None]
    if len(values) == 1:
        return values[0]
    return float(np.mean(values)) if values else None


def _sd(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.stdev(values)) if len(values) > 1 else None


def _reasons(reasons: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    if len(counts) == 1:
        return reasons[0]
    return ", ".join(f"{r} ×{n}" for r, n in counts.items())


def summarize(runs: Sequence[RunResult]) -> OptimizerSummary:
    """Mean (and sd over seeds) of one optimizer's runs."""
    first = runs[0]

    def col(name):
        return [getattr(r, name) for r in runs]

    return OptimizerSummary(
        optimizer=first.optimizer,
        final_loss=_mean(col("final_loss")),
        train_accuracy=_mean(col("train_accuracy")),
        test_accuracy=_mean(col("test_accuracy")),
        iterations=_mean(col("iterations")),
        seconds=_mean(col("seconds")),
        converged=all(col("converged")),
        type=first.type,
        function_evaluations=_mean(col("function_evaluations")),
        gradient_evaluations=_mean(col("gradient_evaluations")),
        epochs=_mean(col("epochs")),
        stop_reason=_reasons(col("stop_reason")),
        schedule=first.schedule,
        seeds=len(runs),
        final_loss_sd=_sd(col("final_loss")),
        train_accuracy_sd=_sd(col("train_accuracy")),
        test_accuracy_sd=_sd(col("test_accuracy")),
        iterations_sd=_sd(col("iterations")),
        seconds_sd=_sd(col("seconds")),
        second_order=first.second_order,
        train_r2=_mean(col("train_r2")),
        test_r2=_mean(col("test_r2")),
        train_r2_sd=_sd(col("train_r2")),
        test_r2_sd=_sd(col("test_r2")),
    )


def majority_baseline(data: Dataset) -> Baseline:
    if data.regression:
        test = data.test if data.test is not None and len(data.test) else None
        train_r2 = regression_report(data, data.train, data.train.y).baseline_r2
        test_r2 = regression_report(data, test, test.y).baseline_r2 if test is not None else None
        return Baseline("the training mean", None, None, train_r2, test_r2)
    counts = np.bincount(data.train.y, minlength=data.num_classes)
    k = int(np.argmax(counts))
    test = data.test if data.test is not None and len(data.test) else None
    return Baseline(
        label=data.classes[k],
        train_accuracy=float(np.mean(data.train.y == k)),
        test_accuracy=float(np.mean(test.y == k)) if test is not None else None,
    )


def prepare_seed(experiment: Experiment) -> SeedSetup:
    """Data (split and preprocessed with this seed), a model, and the initial weights every optimizer starts from."""
    data = experiment.data.load(experiment.seeds("data"))
    model = experiment.build_model(data.input_shape, data.num_classes or None, targets=data.num_targets)
    model.initialize(np.random.default_rng(experiment.seeds("init")))
    return SeedSetup(experiment.seed, data, model, model.theta.copy(), majority_baseline(data))


def schedule_name(spec) -> str:
    """A schedule's compact label for the table, its options that differ from the defaults in brackets:
    'cosine', 'warmup(2) > cosine', 'step(10, 0.5)'."""
    spec = {"type": spec} if isinstance(spec, str) else spec
    name, then = spec["type"], spec.get("then")
    defaults = inspect.signature(SCHEDULES.get(name)).parameters
    options = [str(v) for k, v in spec.items() if k not in ("type", "then") and k in defaults and v != defaults[k].default]
    label = f"{name}({', '.join(options)})" if options else name
    return f"{label} > {schedule_name(then)}" if then is not None else label


def run_optimizer(
    run: CompareRun, optimizer: Optimizer | Minimizer, setup: SeedSetup, experiment: Experiment, settings: CompareConfig
) -> RunResult:
    """Run one optimizer from setup.theta0 through the training loop until a stopping rule fires; evaluate the final weights."""
    model, data, loss = setup.model, setup.data, experiment.loss
    model.theta[...] = setup.theta0
    minimizer = isinstance(optimizer, Minimizer)
    schedule = SCHEDULES.create(run.schedule if run.schedule is not None else experiment.training.schedule.spec)
    batch_size = settings.batch_size or experiment.training.batch_size
    n = len(data.train)
    per_epoch = 1 if minimizer else math.ceil(n / (n if optimizer.full_batch else min(batch_size, n)))
    loop = dataclasses.replace(
        experiment.training,
        epochs=math.ceil(settings.max_iterations / per_epoch),  # the budget, in the loop's epochs
        batch_size=batch_size,
        schedule=schedule,
        early_stopping=None,  # the comparison's own stopping rule decides
        log_gradients=False,
    )
    seeds = {k: experiment.seeds(k) for k in ("shuffle", "layers", "augment")}
    trace = ObjectiveTrace(full_batch_objective(model, loss, data.train.x, data.train.y), settings)
    trainer = Trainer(model, loss, optimizer, dataclasses.replace(data, val=None), loop, seeds, [trace])
    gc.collect()
    gc.disable()  # NOTE: a collection inside a millisecond-long run would dominate its timing
    try:
        trainer.fit()
    except DivergedError:  # the loop refused a non-finite loss, gradient or update: θ is the last good point
        trace.stop_reason = DIVERGED
    finally:
        gc.enable()
    n_classes, eval_batch = data.num_classes, experiment.training.eval_batch_size
    kind = experiment.model
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):  # a diverged run's weights
        train = kind.evaluate(model, loss, data.train, n_classes, eval_batch)
        test = kind.evaluate(model, loss, data.test, n_classes, eval_batch) if data.test is not None and len(data.test) else None
        r2 = {}
        if data.regression:
            r2["train_r2"] = _finite(regression_report(data, data.train, train.outputs).r2)
            r2["test_r2"] = _finite(regression_report(data, data.test, test.outputs).r2) if test is not None else None
    return RunResult(
        optimizer=run.label,
        type=optimizer.spec["type"],
        seed=setup.seed,
        second_order=minimizer,
        losses=trace.losses,
        times=trace.times,
        function_evaluations=trace.function_evaluations,
        gradient_evaluations=trace.gradient_evaluations,
        epochs=trace.rows / n,
        stop_reason=trace.stop_reason,
        train_accuracy=None if data.regression else train.accuracy,
        test_accuracy=test.accuracy if test is not None and not data.regression else None,
        theta=model.theta.copy(),
        schedule=LINE_SEARCH if minimizer else schedule_name(schedule.spec),
        **r2,
    )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class ObjectiveTrace(Callback):
    """compare-optimizers' view of a run: f(θ_k) on the whole training set after every update, and the stopping rule.

    For a minimiser f(θ_k) is its own (the loop's `StepLog.loss`); a first-order
    update is followed by an untimed, uncounted evaluation of the full objective.
    Stopping, after every update, in this order: non-finite loss (diverged), the
    minimiser's own stop reason, the shared `convergence` rule (first-order
    methods; the change part once per epoch, between the losses at epoch ends),
    the iteration budget.
    """

    def __init__(self, objective, settings: CompareConfig):
        self.objective, self.settings = objective, settings
        self.losses: list[float] = []
        self.times: list[float] = []
        self.function_evaluations = self.gradient_evaluations = self.rows = 0
        self.elapsed = 0.0
        self.stop_reason = MAX_ITERATIONS
        self._epoch_loss: float | None = None  # f at the last epoch end (first-order change rule)

    def _stop(self, fit: Fit, reason: str) -> None:
        self.stop_reason = reason
        fit.request_stop(reason)

    def on_train_begin(self, fit: Fit) -> None:
        f, g = self.objective(fit.model.theta)  # the common starting point, iteration 0
        self.losses.append(float(f))
        self.times.append(0.0)
        self._epoch_loss = f
        if not (math.isfinite(f) and np.isfinite(g).all()):
            self._stop(fit, DIVERGED)
        elif not fit.minimizer and gradient_converged(g, self.settings.tolerance_grad):
            self._stop(fit, GRADIENT_TOLERANCE)

    def on_batch_end(self, fit: Fit) -> None:
        step = fit.last_step
        self.elapsed += step.seconds
        self.function_evaluations += step.function_evaluations
        self.gradient_evaluations += step.gradient_evaluations
        self.rows += step.rows
        if fit.minimizer:
            if not step.step_size and step.stop_reason:  # no step taken (converged at the start, or a failed
                self.times[-1] = self.elapsed  # line search): not an iteration; its time still counts, at the last point
                self._stop(fit, step.stop_reason)
                return
            self._append(step.loss)
            if step.stop_reason:
                self._stop(fit, step.stop_reason)
        else:
            f, g = self.objective(fit.model.theta)  # bookkeeping, untimed
            self._append(f)
            if not (math.isfinite(f) and np.isfinite(g).all()):
                self._stop(fit, DIVERGED)
                return
            # NOTE: between two mini-batch updates the loss change is noise and can be tiny by chance, so
            # mini-batch methods apply the change rule once per epoch, to the losses at epoch ends
            epoch_end = fit.state.batch == fit.batches_per_epoch
            reason = convergence(self._epoch_loss if epoch_end else None, f, g, self.settings.tolerance_grad, self.settings.tolerance_change)
            if epoch_end:
                self._epoch_loss = f
            if reason:
                self._stop(fit, reason)
        if fit.state.stop_reason is None and len(self.losses) - 1 >= self.settings.max_iterations:
            self._stop(fit, MAX_ITERATIONS)

    def _append(self, loss: float) -> None:
        self.losses.append(float(loss))
        self.times.append(self.elapsed)


@dataclass
class Comparison:
    """All runs of a comparison, and the per-optimizer summary rows (means over seeds)."""

    name: str
    rows: list[OptimizerSummary]
    runs: list[RunResult]
    baselines: list[Baseline]
    seeds: list[int]
    num_params: int
    n_train: int
    n_test: int
    settings: CompareConfig

    @property
    def second_order_spread(self) -> float | None:
        """Largest, over seeds, of max - min final loss among the second-order methods (their agreement)."""
        spreads = []
        for seed in self.seeds:
            losses = [r.final_loss for r in self.runs if r.seed == seed and r.second_order]
            if len(losses) > 1:
                spreads.append(max(losses) - min(losses))
        return max(spreads) if spreads else None

    def best_loss(self, seed: int) -> float:
        return min(r.final_loss for r in self.runs if r.seed == seed and math.isfinite(r.final_loss))

    def gap(self, label: str) -> float:
        """Mean over seeds of final loss minus the lowest final loss any optimizer reached on that seed."""
        return float(np.mean([r.final_loss - self.best_loss(r.seed) for r in self.runs if r.optimizer == label]))


def compare(
    experiment: Experiment,
    seeds: Sequence[int],
    on_run_end: Callable[[RunResult], None] | None = None,
) -> Comparison:
    """Run every optimizer of experiment.compare on each seed (one data split and one initialisation per seed)."""
    settings = experiment.compare
    plan = settings.runs()
    runs: list[RunResult] = []
    baselines = []
    setup = None
    for seed in seeds:
        seeded = dataclasses.replace(experiment, seed=seed)
        setup = prepare_seed(seeded)
        baselines.append(setup.baseline)
        for entry in plan:
            optimizer = seeded.make_optimizer(entry.spec, entry.path)  # fresh state for every run
            run = run_optimizer(entry, optimizer, setup, seeded, settings)
            runs.append(run)
            if on_run_end is not None:
                on_run_end(run)
    rows = [summarize([r for r in runs if r.optimizer == entry.label]) for entry in plan]
    data = setup.data
    return Comparison(
        name=experiment.name,
        rows=rows,
        runs=runs,
        baselines=baselines,
        seeds=list(seeds),
        num_params=setup.model.num_params,
        n_train=len(data.train),
        n_test=len(data.test) if data.test is not None else 0,
        settings=settings,
    )


def merge(parts: Sequence[Comparison]) -> Comparison:
    """One comparison from per-seed ones, in seed order (an engine runs each seed as a job of its own)."""
    runs = [run for part in parts for run in part.runs]
    labels = [row.optimizer for row in parts[0].rows]
    return dataclasses.replace(
        parts[-1],
        rows=[summarize([r for r in runs if r.optimizer == label]) for label in labels],
        runs=runs,
        baselines=[b for part in parts for b in part.baselines],
        seeds=[s for part in parts for s in part.seeds],
    )


# -- output files ----------------------------------------------------------------
def curve_rows(runs: Sequence[RunResult]) -> list[dict]:
    return [
        {"optimizer": r.optimizer, "iteration": k, "loss": loss, "seconds": t, "seed": r.seed}
        for r in runs
        for k, (loss, t) in enumerate(zip(r.losses, r.times))
    ]


def json_rows(rows: Sequence[OptimizerSummary]) -> list[dict]:
    """summary.csv's rows as JSON-ready dicts (non-finite numbers become null)."""

    def plain(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return [{k: plain(v) for k, v in row.row().items()} for row in rows]
