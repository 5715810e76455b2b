"""The training loop, one update at a time.

`Trainer.step()` performs one update: a mini-batch step of an `Optimizer`
(batch order, augmentation, forward/backward, clipping, finiteness check,
the update at the schedule's rate) or one full-batch iteration of a
`Minimizer`. `Trainer.fit()` is a loop over steps with the epoch bookkeeping
(validation, history rows, early stopping). `nncli train` and every run of
`nncli compare-optimizers` go through it; what a caller adds (files, progress
bars, compare's objective trace and stopping rule) are callbacks, which see
the small public surface of `Fit`. The loop knows nothing about files or
terminals. Everything needed to continue a run bit for bit is in
`TrainState` and `Trainer.snapshot()`, so a run can stop after any batch.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import numpy as np

from .backend import CPU, fetch, for_model, to_host
from .data import Dataset, Split
from .errors import CheckpointError, DivergedError
from .losses import Loss
from .metrics import evaluate
from .objective import Objective, full_batch_objective
from .optimizers import Minimizer, Optimizer
from .registry import NonNegativeFloat, PositiveFloat, PositiveInt
from .schedules import SCHEDULES, Schedule_, improved

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


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

    def observe(self, row: dict, state: TrainState) -> bool:
        """Watch one epoch's history row: True when it is the new best (its weights are to be kept);
        sets state.stop_reason once `patience` epochs have passed without improvement."""
        value = row[self.monitor]
        best = value is not None and (state.monitor_best is None or improved(value, state.monitor_best, self.direction, self.min_delta))
        if best:
            state.monitor_best, state.monitor_epoch, state.monitor_wait = value, row["epoch"], 0
        else:
            state.monitor_wait += 1
        if state.monitor_wait >= self.patience:
            state.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.patience} epochs; best epoch {state.monitor_epoch}"
            )
        return best


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
    device: where the model computes: cpu (NumPy), gpu (CuPy on an NVIDIA GPU) or auto (the GPU when one is usable)
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
    device: Literal["cpu", "gpu", "auto"] = "cpu"


@dataclass
class TrainState:
    """Counters and running sums; with the RNG states and arrays in a snapshot, enough to resume exactly."""

    epoch: int = 0  # completed epochs (iterations, for minimisers)
    batch: int = 0  # completed batches of the current epoch
    step: int = 0  # parameter updates so far
    loss_sum: float = 0.0  # Σ batch loss × batch size over the current epoch
    correct: int = 0  # correctly classified training samples this epoch
    seen: int = 0  # training samples this epoch
    epoch_seconds: float = 0.0  # wall time already spent on the current epoch (before an interruption)
    evaluations: int = 0  # objective evaluations (minimisers)
    best_val_loss: float | None = None
    best_epoch: int | None = None  # epoch of the best validation loss (best.npz)
    monitor_best: float | None = None  # early stopping: best monitored value so far
    monitor_epoch: int | None = None  # ... and its epoch (whose weights are kept)
    monitor_wait: int = 0  # ... epochs since it improved
    stop_reason: str | None = None  # why training ended before `epochs`, if it did
    history: list[dict] = field(default_factory=list)

    def to_meta(self) -> dict:
        """The fields as a dict for the checkpoint's JSON: shallow, since serialising it copies anyway
        (asdict's deep copy of the whole history made every save cost O(epochs))."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_meta(cls, meta: dict) -> TrainState:
        return cls(**meta)


class Callback:
    """Hooks for side effects. Each receives the `Fit` (a Trainer, or a one-shot fit) and reads only
    its public surface: state, epochs, batches_per_epoch, unit, samples, model, improved, last_step,
    gradient(), snapshot(), request_stop() and stop (the signal handler)."""

    def on_train_begin(self, fit: Fit) -> None: ...
    def on_batch_end(self, fit: Fit) -> None: ...
    def on_epoch_end(self, fit: Fit, row: dict) -> None: ...
    def on_train_end(self, fit: Fit) -> None: ...
    def on_load_progress(self, what: str, done: int, total: int) -> None:
        """Before training: a large data file is being read (`done` of `total` bytes or rows; done == total at its end)."""


@dataclass(frozen=True)
class StepLog:
    """What one update did: `Trainer.last_step`, for callbacks such as compare's objective trace."""

    loss: float  # the batch objective (mini-batch), or f at the new point (minimisers)
    seconds: float  # wall time of the update's own work (no callbacks, no evaluation)
    rows: int  # training rows behind its gradient evaluations
    function_evaluations: int  # objective calls whose loss the method used
    gradient_evaluations: int  # objective calls whose gradient it used
    learning_rate: float  # the rate of the update (nan for minimisers)
    step_size: float | None = None  # minimisers: the accepted step length (None or 0: no step taken)
    stop_reason: str | None = None  # minimisers: their own stopping rule, if it fired


class StopSignals:
    """While active, SIGINT/SIGTERM only *request* a stop, honoured at the next batch boundary.

    Further signals while the request is pending (e.g. a second Ctrl-C during
    the final save) are absorbed, so the save is never cut in half.
    `interrupt=True` also raises KeyboardInterrupt at the first signal, for a
    driver whose work in between does not watch `signum` (a serial engine's:
    the StopSignals of a run it trains takes over while that run lasts).
    """

    def __init__(self, interrupt: bool = False) -> None:
        self.signum: int | None = None
        self._interrupt = interrupt
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            if self._interrupt:
                raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


def divergence_error(model, where: str, value: float, lr: float, what: str | None, clipping: bool) -> DivergedError:
    """Why training diverged, in one line: where, what, the first layer (backward order) whose gradient is
    not finite, every layer's gradient norm, and what to try."""
    norms = []
    first_bad = None
    for i, span in reversed(model.layer_slices()):
        g = to_host(model.grad[span]).astype(np.float64)
        finite = bool(np.isfinite(g).all())
        norm = float(np.sqrt(np.sum(g * g))) if finite else float("nan")
        label = f"{i}.{model.layers[i].name}"
        norms.append(f"{label} {norm:.3g}" if finite else f"{label} non-finite")
        if not finite and first_bad is None:
            first_bad = label
    culprit = f"; first non-finite gradient (backward order) in layer {first_bad}" if first_bad else ""
    rate = f" (now {lr:g})" if math.isfinite(lr) else ""
    clip = "" if clipping else " or gradient clipping (training.clip_norm: 1.0)"
    return DivergedError(
        f"training diverged at {where}: {what or f'loss is {value}'}{culprit}; gradient norms: {', '.join(reversed(norms))}; "
        f"the update was not applied; try a smaller optimizer.learning_rate{rate}{clip}"
    )


@dataclass
class Snapshot:
    """Everything besides the model's own arrays that continuing a fit exactly depends on.

    Plain values only: checkpoint.py owns how they are laid out in a file.
    """

    state: TrainState
    optimizer: dict = field(default_factory=dict)  # state_dict(): slot arrays and counters
    schedule: dict = field(default_factory=dict)
    rng: dict = field(default_factory=dict)  # {"shuffle": state, "augment": state, "layers": [state, ...]}
    order: np.ndarray | None = None  # the current epoch's sample order (mid-epoch only)
    best: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # early stopping's best (θ, layer state)


class Fit:
    """A fit in progress, as callbacks see it; `Trainer` (gradient descent) and `OneShotFit` implement it."""

    state: TrainState
    model: object
    epochs: int  # epochs (iterations) this fit runs to
    batches_per_epoch: int
    unit: str = "epoch"  # "iteration" for full-batch methods, where one row is one iteration
    samples: int  # training samples per epoch
    minimizer: bool = False  # a full-batch Minimizer: one update per epoch (row)
    regression: bool = False  # the data's targets are values (data.task: regression): no accuracy
    last_step: StepLog | None = None
    stop: StopSignals | None = None

    @property
    def improved(self) -> bool:
        """Did the epoch just finished set a new best validation loss?"""
        return self.state.best_epoch is not None and self.state.best_epoch == self.state.epoch

    @property
    def stopped_by_signal(self) -> bool:
        return self.stop is not None and self.stop.signum is not None

    @property
    def finished(self) -> bool:
        return self.state.epoch >= self.epochs or self.state.stop_reason is not None or self.stopped_by_signal

    def request_stop(self, reason: str) -> None:
        """Stop after the current update (a callback's stopping rule); `reason` becomes state.stop_reason."""
        self.state.stop_reason = reason

    def gradient(self) -> np.ndarray:
        """The gradient of the latest update (for diagnostics)."""
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        return Snapshot(self.state)

    def _record_epoch(self, row: dict) -> None:
        """Validation-free bookkeeping every epoch shares: best epoch, history row, counters."""
        s = self.state
        if row["val_loss"] is not None and (s.best_val_loss is None or row["val_loss"] < s.best_val_loss):
            s.best_val_loss, s.best_epoch = float(row["val_loss"]), s.epoch + 1
        s.history.append(row)
        s.epoch += 1
        s.batch = 0
        s.loss_sum, s.correct, s.seen, s.epoch_seconds = 0.0, 0, 0, 0.0


class Trainer(Fit):
    """Fit `model` to `data.train` with `optimizer`, validating on `data.val` after every epoch."""

    def __init__(
        self,
        model,
        loss: Loss,
        optimizer: Optimizer | Minimizer,
        data: Dataset,
        settings: TrainingConfig,
        seeds: dict[str, np.random.SeedSequence],
        callbacks: Sequence[Callback] = (),
        stop: StopSignals | None = None,
    ):
        self.model, self.loss, self.optimizer, self.settings = model, loss, optimizer, settings
        self.callbacks = list(callbacks)
        self.stop = stop
        self.state = TrainState()
        self.epochs = settings.epochs
        self.order: np.ndarray | None = None  # this epoch's sample order
        self.shuffle_rng = np.random.default_rng(seeds["shuffle"])
        self.augment_rng = np.random.default_rng(seeds["augment"])
        model.seed_layers(seeds["layers"])
        self.schedule = SCHEDULES.create(settings.schedule.spec)  # a fresh copy: plateau keeps state
        self.early_stopping = settings.early_stopping
        self._best_weights: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # (θ, layer state)
        if data.train.x.dtype != model.dtype:  # e.g. float64 training: convert once, not per batch
            data = replace(data, train=Split(data.train.x.astype(model.dtype), data.train.y))
        self.data = data
        # On a GPU the data is uploaded once (the training inputs only when batches are gathered there: augmentation
        # runs on the host, per batch); random numbers and the epoch's order come from the host generators.
        self.backend = getattr(model, "backend", CPU)
        on_device = not self.backend.on_host
        self._gather_on_device = on_device and data.augment is None
        self._train = Split(self.backend.to_device(data.train.x), data.train.y) if self._gather_on_device else data.train
        self._train_y = self.backend.to_device(data.train.y)
        self._val = data.val
        if on_device and data.val is not None:
            self._val = Split(self.backend.to_device(data.val.x), data.val.y)
        self._order_device = None  # the epoch's order on the device (when batches are gathered there)
        if isinstance(data.train.x, np.ndarray) and data.train.x.ndim == 3 and hasattr(model, "training_batches_padded"):
            # sequences in memory: padded with NaN steps anywhere? (others are looked at batch by batch)
            model.training_batches_padded = bool(np.isnan(data.train.x[:, :, 0]).any())
        self.regression = data.train.regression
        n = self.samples = len(data.train)
        self.minimizer = isinstance(optimizer, Minimizer)
        self.batch_size = n if optimizer.full_batch else min(settings.batch_size, n)
        self.batches_per_epoch = 1 if self.minimizer else math.ceil(n / self.batch_size)
        self.unit = "iteration" if self.batches_per_epoch == 1 and optimizer.full_batch else "epoch"
        self._lr: float | None = None  # the current epoch's rate (set at its first update)
        self._x_buffers: dict[int, np.ndarray] = {}
        self._batch_objective = Objective(model, loss) if not self.minimizer else None
        self._objective = None
        self._current: tuple[float, np.ndarray] | None = None  # minimisers: (f, ∇f) at θ
        xp = self.backend.xp
        self._theta_before = xp.empty_like(model.theta)  # θ before the latest update, to undo a diverging one
        self._clipped = None  # the clipped gradient (clipping leaves model.grad as computed, for diagnostics)
        self._gradient = model.grad  # what the latest update used

    # -- the loop -------------------------------------------------------------
    def fit(self) -> TrainState:
        for cb in self.callbacks:
            cb.on_train_begin(self)
        # Overflow and NaN are detected explicitly (and reported as divergence), not warned about.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            while not self.finished:
                self.step()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.state

    def step(self) -> StepLog:
        """One update (a mini-batch step, or one minimiser iteration), its callbacks, and the epoch's end if it ends one."""
        started = time.perf_counter()
        log = self._iterate() if self.minimizer else self._update()
        self.last_step = log
        for cb in self.callbacks:
            cb.on_batch_end(self)
        s = self.state
        if self.minimizer:
            train = evaluate(self.model, self.loss, self._train, self.data.num_classes, self.settings.eval_batch_size)
            s.epoch_seconds += time.perf_counter() - started
            step_size = log.step_size if log.step_size is not None else float("nan")
            self._end_epoch(float(log.loss), train.accuracy, step_size, s.epoch_seconds)
        else:
            s.epoch_seconds += time.perf_counter() - started
            if s.batch == self.batches_per_epoch:
                self._end_epoch(s.loss_sum / s.seen, s.correct / s.seen, log.learning_rate, s.epoch_seconds)
        return log

    def learning_rate(self) -> float:
        """The learning rate for the current epoch: the optimizer's, shaped by the schedule."""
        return float(self.schedule(self.state.epoch, float(self.optimizer.learning_rate), self.epochs))

    def _batch(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch b of the epoch's order, on the model's device: gathered there from the uploaded data, or on the
        host (always on a CPU; with augmentation, whose random draws are the host's) and then uploaded."""
        window = slice(b * self.batch_size, (b + 1) * self.batch_size)
        if self._gather_on_device:
            if self._order_device is None:
                self._order_device = self.backend.to_device(self.order)
            idx = self._order_device[window]
            module = self.backend.xp
        else:
            idx, module = self.order[window], np
        x = self._train.x
        buf = self._x_buffers.get(len(idx))
        if buf is None:
            buf = self._x_buffers[len(idx)] = module.empty((len(idx), *x.shape[1:]), self.model.dtype)
        module.take(x, idx, axis=0, out=buf)
        if self.data.augment is not None:
            buf = self.data.augment(buf, self.augment_rng)
        return self.backend.to_device(buf), self._train_y[self.backend.to_device(idx)]

    def _update(self) -> StepLog:
        """One mini-batch update (full-batch `gd`: one batch of the whole set)."""
        s, model, opt = self.state, self.model, self.optimizer
        started = time.perf_counter()
        if self.order is None:  # the epoch's first batch (a resumed epoch has its order back)
            n = self.samples
            self.order = self.shuffle_rng.permutation(n) if self.settings.shuffle else np.arange(n)
            s.loss_sum, s.correct, s.seen, s.epoch_seconds = 0.0, 0, 0, 0.0
        if self._lr is None:
            self._lr = self.learning_rate()
        lr, b = self._lr, s.batch
        x, y = self._batch(b)
        theta, grad, xp = model.theta, model.grad, self.backend.xp
        value, correct = self._batch_objective(x, y)
        grad_finite = xp.isfinite(grad).all()
        self._gradient = self._clip(grad)
        xp.copyto(self._theta_before, theta)
        opt.step(theta, self._gradient, lr)
        # The step's one device->host copy (none on a CPU): loss, both finiteness checks, correct count. A bad
        # update is undone (θ as before it; the run stops, so the optimizer's slots do not matter).
        value, grad_finite, theta_finite, correct = fetch(value, grad_finite, xp.isfinite(theta).all(), correct)
        if not (math.isfinite(value) and grad_finite):
            xp.copyto(theta, self._theta_before)
            raise self._diverged(value, b, lr)
        if not theta_finite:  # a finite gradient times the rate overflowed
            xp.copyto(theta, self._theta_before)
            raise self._diverged(value, b, lr, "the update would make weights non-finite")
        correct = int(correct)
        s.step += 1
        s.batch = b + 1
        s.loss_sum += value * len(y)
        s.correct += correct
        s.seen += len(y)
        return StepLog(value, time.perf_counter() - started, len(y), 1, 1, lr)

    def gradient(self) -> np.ndarray:
        return self._current[1] if self._current is not None else self._gradient

    def _clip(self, grad: np.ndarray) -> np.ndarray:
        """The gradient clipped by value, then rescaled to the global norm (into a buffer of its own, on the device:
        no host copy), or grad itself without clipping."""
        value, most = self.settings.clip_value, self.settings.clip_norm
        if value is None and most is None:
            return grad
        xp = self.backend.xp
        if self._clipped is None:
            self._clipped = xp.empty_like(grad)
        out = self._clipped
        if value is not None:
            xp.clip(grad, -value, value, out=out)
        else:
            xp.copyto(out, grad)
        if most is not None:  # × min(1, clip_norm/‖g‖): 1 when within; a NaN norm leaves g for the divergence report
            norm = xp.sqrt(xp.dot(out, out).astype(np.float64))
            out *= xp.fmin(1.0, most / xp.maximum(norm, np.finfo(np.float64).tiny)).astype(out.dtype)
        return out

    def _iterate(self) -> StepLog:
        """One full-batch minimiser iteration (one history row)."""
        s, started = self.state, time.perf_counter()
        theta0 = np.array(to_host(self.model.theta))  # minimisers work on the host
        initial = 0
        if self._current is None:  # f and ∇f at the starting point (recomputed, identically, on resume)
            self._current = self.objective(theta0)
            initial = 1 if s.step == 0 else 0
            s.evaluations += initial
        value, grad = self._current
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            raise self._diverged(value, 0, float("nan"))
        result = self.optimizer.step(self.objective, theta0, value, grad)
        if not (math.isfinite(result.loss) and np.isfinite(result.theta).all()):
            raise self._diverged(result.loss, 0, float("nan"))
        self.model.theta[...] = for_model(self.model, result.theta)
        self._current = (result.loss, result.grad)
        s.step += 1
        s.batch = 0
        s.evaluations += result.evaluations
        if result.stop_reason:
            s.stop_reason = result.stop_reason
        return StepLog(
            float(result.loss), time.perf_counter() - started, self.samples * (result.gradient_evaluations + initial),
            result.function_evaluations + initial, result.gradient_evaluations + initial, float("nan"),
            result.step_size, result.stop_reason,
        )  # fmt: skip

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """f(θ) and ∇f(θ) on the whole training set, evaluation of the objective a minimiser sees."""
        if self._objective is None:
            self._objective = full_batch_objective(self.model, self.loss, self.data.train.x, self.data.train.y)
        return self._objective(theta)

    def _end_epoch(self, train_loss: float, train_accuracy: float, lr: float, seconds: float) -> None:
        row = {
            "epoch": self.state.epoch + 1,
            "train_loss": float(train_loss),
            "train_accuracy": None if self.regression else float(train_accuracy),  # a regression's cells stay empty
            "val_loss": None,
            "val_accuracy": None,
            "learning_rate": lr,
            "seconds": seconds,
        }
        if self.data.val is not None:
            val = evaluate(self.model, self.loss, self._val, self.data.num_classes, self.settings.eval_batch_size)
            if not math.isfinite(val.loss):
                raise self._diverged(val.loss, self.batches_per_epoch - 1, lr, "the validation loss is not finite")
            row["val_loss"], row["val_accuracy"] = float(val.loss), None if self.regression else float(val.accuracy)
        self._record_epoch(row)
        self.order = self._order_device = None
        self._lr = None
        self.schedule.observe(row)
        if self.early_stopping is not None:
            self._watch(row)
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)

    def _watch(self, row: dict) -> None:
        """Early stopping: keep the best epoch's weights; when training ends (by patience or by running
        out of epochs) put them back, so the final checkpoint holds them."""
        s = self.state
        if self.early_stopping.observe(row, s):
            self._best_weights = (self.model.theta.copy(), {k: v.copy() for k, v in self.model.named_state()})
        if (s.stop_reason is not None or s.epoch >= self.epochs) and self._best_weights is not None:
            theta, state = self._best_weights
            self.model.theta[...] = for_model(self.model, theta)
            for key, array in self.model.named_state():
                array[...] = for_model(self.model, state[key])

    def _diverged(self, value: float, batch: int, lr: float, what: str | None = None) -> DivergedError:
        where = f"epoch {self.state.epoch + 1}, batch {batch + 1}/{self.batches_per_epoch}"
        return divergence_error(self.model, where, value, lr, what, self.settings.clip_norm is not None)

    # -- resume ---------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(
            state=self.state,
            optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(),
            rng={
                "shuffle": self.shuffle_rng.bit_generator.state,
                "augment": self.augment_rng.bit_generator.state,
                "layers": [g.bit_generator.state for g in self.model.random_generators()],
            },
            order=self.order,
            best=None if self._best_weights is None else (
                to_host(self._best_weights[0]), {k: to_host(v) for k, v in self._best_weights[1].items()}
            ),
        )

    def restore(self, read_snapshot, source: str = "checkpoint") -> None:
        """Continue from `read_snapshot()` (weights already loaded into the model); refuse anything inconsistent."""
        try:
            self._restore(read_snapshot())
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CheckpointError(f"{source}: cannot resume from it: {detail}") from None

    def _restore(self, snap: Snapshot) -> None:
        P, n = self.model.num_params, self.samples
        state = snap.state
        counters = (state.epoch, state.batch, state.step, state.correct, state.seen, state.evaluations, state.monitor_wait)
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counters):
            raise ValueError("training counters must be non-negative integers")
        if not (isinstance(state.history, list) and len(state.history) == state.epoch):
            raise ValueError(f"history has {len(state.history) if isinstance(state.history, list) else '?'} rows for epoch {state.epoch}")
        if any(not isinstance(r, dict) or set(r) != set(HISTORY_COLUMNS) for r in state.history):
            raise ValueError("history rows do not have the history.csv columns")
        if not (0 <= state.batch < self.batches_per_epoch):
            raise ValueError(f"batch position {state.batch} does not fit {self.batches_per_epoch} batches per epoch")
        order = snap.order
        if state.batch > 0:
            if order is None or order.shape != (n,) or order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(n)):
                raise ValueError(f"the epoch's sample order is not a permutation of the {n} training samples")
        arrays = [(f"optim/{k}", v) for k, v in snap.optimizer.items() if isinstance(v, np.ndarray)]
        if snap.best is not None:
            arrays.append(("train/best/theta", snap.best[0]))
        for key, array in arrays:
            if array.dtype.kind != "f" or array.ndim == 0 or array.shape[-1] != P or not np.isfinite(array).all():
                raise ValueError(f"{key} must be finite floats with last dimension {P}")
        generators = self.model.random_generators()
        if len(snap.rng["layers"]) != len(generators):
            raise ValueError(f"{len(snap.rng['layers'])} layer generator states for {len(generators)} random layers")
        self.optimizer.load_state_dict(snap.optimizer)
        self.schedule.load_state_dict(snap.schedule)
        for rng, saved in ((self.shuffle_rng, snap.rng["shuffle"]), (self.augment_rng, snap.rng["augment"]),
                           *zip(generators, snap.rng["layers"])):
            if not isinstance(saved, dict) or saved.get("bit_generator") != rng.bit_generator.state["bit_generator"]:
                raise ValueError("random generator state is not a PCG64 state")
            rng.bit_generator.state = saved
        self.state = state
        self.order = order if state.batch > 0 else None
        self._order_device = None
        if snap.best is not None:
            theta, best_state = snap.best
            expected = {k: v.shape for k, v in self.model.named_state()}
            if {k: v.shape for k, v in best_state.items()} != expected:
                raise ValueError("the best weights' layer state does not match the model")
            self._best_weights = (theta.copy(), {k: v.copy() for k, v in best_state.items()})


class OneShotFit(Fit):
    """The fit of a model kind that is not trained by gradient descent: `kind.fit` once, one history row.

    It goes through the same callbacks as a Trainer (run folder, progress), so such a kind gets
    history.csv, checkpoints and the progress line without code of its own.
    """

    epochs = 1
    batches_per_epoch = 1
    unit = "fit"

    def __init__(self, kind, model, data: Dataset, settings: TrainingConfig, callbacks: Sequence[Callback] = (), stop=None):
        self.kind, self.model, self.data, self.settings = kind, model, data, settings
        self.callbacks, self.stop = list(callbacks), stop
        self.state = TrainState()
        self.samples = len(data.train)

    def fit(self) -> TrainState:
        for cb in self.callbacks:
            cb.on_train_begin(self)
        if not self.finished:
            started = time.perf_counter()
            self.kind.fit(self.model, self.data.train)
            train = self.kind.evaluate(self.model, None, self.data.train, self.data.num_classes, self.settings.eval_batch_size)
            val = None
            if self.data.val is not None:
                val = self.kind.evaluate(self.model, None, self.data.val, self.data.num_classes, self.settings.eval_batch_size)
            self.state.step = 1
            self.last_step = StepLog(train.loss, time.perf_counter() - started, self.samples, 0, 0, float("nan"))
            for cb in self.callbacks:
                cb.on_batch_end(self)

            def number(v):
                return None if v is None or not math.isfinite(v) else float(v)

            row = {
                "epoch": 1,
                "train_loss": number(train.loss),
                "train_accuracy": float(train.accuracy),
                "val_loss": number(val.loss) if val is not None else None,
                "val_accuracy": float(val.accuracy) if val is not None else None,
                "learning_rate": None,
                "seconds": time.perf_counter() - started,
            }
            self._record_epoch(row)
            for cb in self.callbacks:
                cb.on_epoch_end(self, row)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.state

    def gradient(self) -> np.ndarray:
        raise TypeError(f"{self.kind.spec['type']} is not trained by gradient descent")

    def restore(self, read_snapshot, source: str = "checkpoint") -> None:
        try:
            self.state = read_snapshot().state
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: cannot resume from it: {exc}") from None
