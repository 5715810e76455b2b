"""compare-optimizers: every optimizer of a config's `compare:` section, from the same initial weights.

What is measured, per optimizer (the semantics CompareConfig documents):

- The objective is the training loss over the whole training set,
  f(θ) = model.loss_and_grad on data.train: what the minimisers minimise
  and what every curve shows, so curves of mini-batch and full-batch
  methods are comparable point for point.
- An iteration is one outer iteration of a full-batch method (gd, newton,
  bfgs, dfp, lbfgs, cg) and one update of a mini-batch method (one batch of
  `batch_size` rows; the batch order is the same for every mini-batch method).
  Iteration 0 is the common starting point.
- `seconds` is the wall time of the method's own work: its gradients (full
  or mini-batch), directions and line searches. For mini-batch methods the
  full-objective evaluation after each update is bookkeeping for the curve
  and the stopping rule: it is neither timed nor counted.
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
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import Dataset
from .experiment import CompareConfig, Experiment
from .metrics import evaluate
from .model import Sequential
from .optimizers import Minimizer, Optimizer
from .optimizers.base import CONVERGED, DIVERGED, GRADIENT_TOLERANCE, MAX_ITERATIONS, convergence, gradient_converged
from .training import full_batch_objective

# summary.csv: the contract's columns first, in order, then the extra ones.
SUMMARY_COLUMNS = (
    "optimizer", "final_loss", "train_accuracy", "test_accuracy", "iterations", "seconds", "converged",
    "type", "function_evaluations", "gradient_evaluations", "epochs", "stop_reason",
    "seeds", "final_loss_sd", "train_accuracy_sd", "test_accuracy_sd", "iterations_sd", "seconds_sd",
)  # fmt: skip
RUN_COLUMNS = (
    "optimizer", "seed", "final_loss", "train_accuracy", "test_accuracy", "iterations", "seconds", "converged",
    "type", "function_evaluations", "gradient_evaluations", "epochs", "stop_reason",
)  # fmt: skip
CURVE_COLUMNS = ("optimizer", "iteration", "loss", "seconds", "seed")


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
    train_accuracy: float
    test_accuracy: float | None
    theta: np.ndarray = field(repr=False)

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
    train_accuracy: float
    test_accuracy: float | None
    iterations: float
    seconds: float
    converged: bool  # on every seed
    type: str
    function_evaluations: float
    gradient_evaluations: float
    epochs: float
    stop_reason: str  # e.g. "gradient_tolerance", or "gradient_tolerance ×4, max_iterations ×1"
    seeds: int
    final_loss_sd: float | None = None
    train_accuracy_sd: float | None = None
    test_accuracy_sd: float | None = None
    iterations_sd: float | None = None
    seconds_sd: float | None = None
    second_order: bool = False

    def row(self) -> dict:
        return {c: getattr(self, c) for c in SUMMARY_COLUMNS}


@dataclass
class Baseline:
    """Always predicting the training split's most frequent class."""

    label: object  # the class value
    train_accuracy: float
    test_accuracy: float | None


@dataclass
class SeedSetup:
    seed: int
    data: Dataset
    model: Sequential
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
        seeds=len(runs),
        final_loss_sd=_sd(col("final_loss")),
        train_accuracy_sd=_sd(col("train_accuracy")),
        test_accuracy_sd=_sd(col("test_accuracy")),
        iterations_sd=_sd(col("iterations")),
        seconds_sd=_sd(col("seconds")),
        second_order=first.second_order,
    )


def majority_baseline(data: Dataset) -> Baseline:
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
    model = experiment.build_model(data.input_shape, data.num_classes)
    model.initialize(np.random.default_rng(experiment.seeds("init")))
    return SeedSetup(experiment.seed, data, model, model.theta.copy(), majority_baseline(data))


def run_optimizer(
    label: str,
    optimizer: Optimizer | Minimizer,
    setup: SeedSetup,
    experiment: Experiment,
    settings: CompareConfig,
) -> RunResult:
    """Run one optimizer from setup.theta0 until a stopping rule fires; evaluate the final weights."""
    model, data, loss = setup.model, setup.data, experiment.loss
    model.theta[...] = setup.theta0
    objective = full_batch_objective(model, loss, data.train.x, data.train.y)
    gc.collect()
    gc.disable()  # NOTE: a collection inside a millisecond-long run would dominate its timing
    try:  # overflow and NaN are detected explicitly (a 'diverged' run), not warned about, as in Trainer.fit
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            if isinstance(optimizer, Minimizer):
                trace = _minimize(optimizer, objective, model, len(data.train), settings)
            else:
                batch_size = settings.batch_size or experiment.training.batch_size
                shuffle = np.random.default_rng(experiment.seeds("shuffle")) if experiment.training.shuffle else None
                trace = _first_order(optimizer, objective, model, loss, data, batch_size, shuffle, settings)
    finally:
        gc.enable()
    model.theta[...] = trace.theta
    n_classes, eval_batch = data.num_classes, experiment.training.eval_batch_size
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):  # a diverged run's weights
        train = evaluate(model, loss, data.train, n_classes, eval_batch)
        test = evaluate(model, loss, data.test, n_classes, eval_batch) if data.test is not None and len(data.test) else None
    return RunResult(
        optimizer=label,
        type=optimizer.spec["type"],
        seed=setup.seed,
        second_order=isinstance(optimizer, Minimizer),
        losses=trace.losses,
        times=trace.times,
        function_evaluations=trace.function_evaluations,
        gradient_evaluations=trace.gradient_evaluations,
        epochs=trace.rows / len(data.train),
        stop_reason=trace.stop_reason,
        train_accuracy=train.accuracy,
        test_accuracy=test.accuracy if test is not None else None,
        theta=np.array(trace.theta),  # the one copy: a first-order trace's θ is the model's own array
    )


@dataclass
class _Trace:
    theta: np.ndarray
    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    function_evaluations: int = 0
    gradient_evaluations: int = 0
    rows: int = 0  # training rows processed by gradient evaluations
    stop_reason: str = MAX_ITERATIONS


def _finite(value: float, *arrays: np.ndarray) -> bool:
    return math.isfinite(value) and all(np.isfinite(a).all() for a in arrays)


def _minimize(opt: Minimizer, objective, model: Sequential, rows: int, settings: CompareConfig) -> _Trace:
    """`rows`: training rows behind one objective call."""
    clock = time.perf_counter()
    f, g = objective(model.theta)
    elapsed = time.perf_counter() - clock
    theta = model.theta.copy()  # the minimiser's start (line searches move model.theta)
    trace = _Trace(theta, [float(f)], [elapsed], 1, 1, rows)
    if not _finite(f, g):
        trace.stop_reason = DIVERGED
        return trace
    for _ in range(settings.max_iterations):
        clock = time.perf_counter()
        result = opt.step(objective, theta, f, g)
        elapsed += time.perf_counter() - clock
        trace.function_evaluations += result.function_evaluations
        trace.gradient_evaluations += result.gradient_evaluations
        trace.rows += rows * result.gradient_evaluations
        if not result.step_size and result.stop_reason:  # no step taken (converged at the start, or a failed
            trace.times[-1] = elapsed  # line search): not an iteration; its time still counts, at the last point
            trace.stop_reason = result.stop_reason
            return trace
        theta = np.asarray(result.theta, model.dtype)  # as the model holds it (minimisers compute in float64)
        f, g = result.loss, result.grad
        trace.theta = theta
        trace.losses.append(float(f))
        trace.times.append(elapsed)
        if not _finite(f, g, theta):
            trace.stop_reason = DIVERGED
            return trace
        if result.stop_reason:
            trace.stop_reason = result.stop_reason
            return trace
    return trace


def _first_order(opt, objective, model, loss, data, batch_size, shuffle, settings) -> _Trace:
    n = len(data.train)
    full = opt.full_batch
    batch_size = n if full else min(batch_size, n)
    x_train, y_train = data.train.x.astype(model.dtype, copy=False), data.train.y
    theta = model.theta  # updated in place, as in training
    lr = float(opt.learning_rate)
    elapsed = 0.0
    clock = time.perf_counter()
    f, g = objective(theta)
    if full:  # gd needs this gradient: its cost is the method's
        elapsed = time.perf_counter() - clock
    trace = _Trace(theta, [float(f)], [elapsed], int(full), int(full), n if full else 0)
    if not _finite(f, g):
        trace.stop_reason = DIVERGED
        return trace
    if gradient_converged(g, settings.tolerance_grad):
        trace.stop_reason = GRADIENT_TOLERANCE
        return trace
    order, position = None, n
    for _ in range(settings.max_iterations):
        clock = time.perf_counter()
        if full:
            opt.step(theta, g, lr)
            f_new, g = objective(theta)
            rows = n
        else:
            if position >= n:
                order = shuffle.permutation(n) if shuffle is not None else np.arange(n)
                position = 0
            index = order[position : position + batch_size]
            position += len(index)
            model.train_step(loss, x_train[index], y_train[index])
            if not np.isfinite(model.grad).all():
                trace.stop_reason = DIVERGED
                return trace
            opt.step(theta, model.grad, lr)
            rows = len(index)
        elapsed += time.perf_counter() - clock
        if not full:  # bookkeeping, untimed: the full objective at the new point
            f_new, g = objective(theta)
        trace.function_evaluations += 1
        trace.gradient_evaluations += 1
        trace.rows += rows
        trace.losses.append(float(f_new))
        trace.times.append(elapsed)
        if not _finite(f_new, g, theta):
            trace.stop_reason = DIVERGED
            break
        # NOTE: between two mini-batch updates the loss change is noise and can be tiny by chance, so
        # mini-batch methods apply the change rule once per epoch, to the losses at epoch ends
        epoch_end = full or position >= n
        reason = convergence(f if epoch_end else None, f_new, g, settings.tolerance_grad, settings.tolerance_change)
        if epoch_end:
            f = f_new
        if reason:
            trace.stop_reason = reason
            break
    return trace


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
        for label, spec, path in plan:
            optimizer = seeded.make_optimizer(spec, path)  # fresh state for every run
            run = run_optimizer(label, optimizer, setup, seeded, settings)
            runs.append(run)
            if on_run_end is not None:
                on_run_end(run)
    rows = [summarize([r for r in runs if r.optimizer == label]) for label, _, _ in plan]
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
