"""The training loop.

`Trainer.fit()` runs epochs of mini-batches for an `Optimizer` (one batch of
the whole set for full-batch `gd`) and full-batch iterations for a
`Minimizer` (one history row per iteration). It knows nothing about files or
terminals: side effects are callbacks. Everything needed to continue a run
bit for bit (weights, optimizer slots and counters, every random generator,
the epoch's sample order and position, the running sums) is in
`TrainState` and `Trainer.snapshot()`, so a run can stop after any batch.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .data import Dataset, Split
from .errors import CheckpointError, DivergedError
from .experiment import TrainingConfig
from .losses import Loss
from .metrics import evaluate
from .model import Sequential
from .optimizers import Minimizer, Optimizer
from .schedules import SCHEDULES, improved

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


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
    """Hooks for side effects; the trainer is passed so callbacks can read its state."""

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_batch_end(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer, row: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


class StopSignals:
    """While active, SIGINT/SIGTERM only *request* a stop, honoured at the next batch boundary.

    Further signals while the request is pending (e.g. a second Ctrl-C during
    the final save) are absorbed, so the save is never cut in half.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""


def full_batch_objective(model: Sequential, loss: Loss, x: np.ndarray, y: np.ndarray):
    """θ -> (f(θ), ∇f(θ)): the training loss over all of (x, y) and its gradient (a fresh array).

    This is the objective full-batch minimisers and their line searches see:
    `model.loss_and_grad`, so anything the model adds to the loss is included.
    """
    x = x.astype(model.dtype, copy=False)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        model.theta[...] = theta
        value, grad = model.loss_and_grad(loss, x, y)
        return value, grad.copy()

    return objective


class Trainer:
    """Fit `model` to `data.train` with `optimizer`, validating on `data.val` after every epoch."""

    def __init__(
        self,
        model: Sequential,
        loss: Loss,
        optimizer: Optimizer | Minimizer,
        data: Dataset,
        config: TrainingConfig,
        seeds: dict[str, np.random.SeedSequence],
        callbacks: Sequence[Callback] = (),
        stop: StopSignals | None = None,
    ):
        self.model, self.loss, self.optimizer, self.data, self.config = model, loss, optimizer, data, config
        self.callbacks = list(callbacks)
        self.stop = stop
        self.state = TrainState()
        self.order: np.ndarray | None = None  # this epoch's sample order
        self.shuffle_rng = np.random.default_rng(seeds["shuffle"])
        self.augment_rng = np.random.default_rng(seeds["augment"])
        model.seed_layers(seeds["layers"])
        self.schedule = SCHEDULES.create(config.schedule.spec)  # a fresh copy: plateau keeps state
        self.early_stopping = config.early_stopping
        self._best_weights: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # (θ, layer state)
        if data.train.x.dtype != model.dtype:  # e.g. float64 training: convert once, not per batch
            data = replace(data, train=Split(data.train.x.astype(model.dtype), data.train.y))
            self.data = data
        n = len(data.train)
        full = optimizer.full_batch
        self.batch_size = n if full else min(config.batch_size, n)
        self.batches_per_epoch = 1 if isinstance(optimizer, Minimizer) else math.ceil(n / self.batch_size)
        self._x_buffers: dict[int, np.ndarray] = {}
        self._objective = None
        self._current: tuple[float, np.ndarray] | None = None  # minimisers: (f, ∇f) at θ
        self._theta_before = np.empty_like(model.theta)  # θ before the latest update, to undo a diverging one

    # -- the loop -------------------------------------------------------------
    def fit(self) -> TrainState:
        for cb in self.callbacks:
            cb.on_train_begin(self)
        # Overflow and NaN are detected explicitly (and reported as divergence), not warned about.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            while self.state.epoch < self.config.epochs and self.state.stop_reason is None:
                if isinstance(self.optimizer, Minimizer):
                    self._iterate()
                else:
                    self._epoch()
                if self.stopped_by_signal:
                    break
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.state

    @property
    def stopped_by_signal(self) -> bool:
        return self.stop is not None and self.stop.signum is not None

    def learning_rate(self) -> float:
        """The learning rate for the current epoch: the optimizer's, shaped by the schedule."""
        return float(self.schedule(self.state.epoch, float(self.optimizer.learning_rate), self.config.epochs))

    def _batch(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
        x = self.data.train.x
        buf = self._x_buffers.get(len(idx))
        if buf is None:
            buf = self._x_buffers[len(idx)] = np.empty((len(idx), *x.shape[1:]), self.model.dtype)
        np.take(x, idx, axis=0, out=buf)
        if self.data.augment is not None:
            buf = self.data.augment(buf, self.augment_rng)
        return buf, self.data.train.y[idx]

    def _epoch(self) -> None:
        s, model, loss, opt = self.state, self.model, self.loss, self.optimizer
        if s.batch == 0:
            n = len(self.data.train)
            self.order = self.shuffle_rng.permutation(n) if self.config.shuffle else np.arange(n)
            s.loss_sum, s.correct, s.seen, s.epoch_seconds = 0.0, 0, 0, 0.0
        started = time.perf_counter() - s.epoch_seconds
        lr = self.learning_rate()
        theta, grad = model.theta, model.grad
        for b in range(s.batch, self.batches_per_epoch):
            x, y = self._batch(b)
            value, correct = model.train_step(loss, x, y)
            if not (math.isfinite(value) and np.isfinite(grad).all()):
                raise self._diverged(value, b, lr)
            self._clip(grad)
            np.copyto(self._theta_before, theta)
            opt.step(theta, grad, lr)
            if not np.isfinite(theta).all():  # a finite gradient times the rate overflowed: undo, then stop
                np.copyto(theta, self._theta_before)
                raise self._diverged(value, b, lr, "the update would make weights non-finite")
            s.step += 1
            s.batch = b + 1
            s.loss_sum += value * len(y)
            s.correct += correct
            s.seen += len(y)
            s.epoch_seconds = time.perf_counter() - started
            for cb in self.callbacks:
                cb.on_batch_end(self)
            if self.stopped_by_signal and s.batch < self.batches_per_epoch:
                return  # a resumable mid-epoch state; the caller saves it
        self._end_epoch(s.loss_sum / s.seen, s.correct / s.seen, lr, time.perf_counter() - started)

    def gradient(self) -> np.ndarray:
        """The gradient of the latest update (for diagnostics)."""
        return self._current[1] if self._current is not None else self.model.grad

    def _clip(self, grad: np.ndarray) -> None:
        """Gradient clipping by value, then by global norm, in place."""
        if self.config.clip_value is not None:
            np.clip(grad, -self.config.clip_value, self.config.clip_value, out=grad)
        if self.config.clip_norm is not None:
            norm = math.sqrt(float(np.dot(grad, grad)))
            if norm > self.config.clip_norm:
                grad *= self.config.clip_norm / norm

    def _iterate(self) -> None:
        """One full-batch minimiser iteration = one history row."""
        s, started = self.state, time.perf_counter()
        theta0 = self.model.theta.copy()
        if self._current is None:  # f and ∇f at the starting point (recomputed, identically, on resume)
            self._current = self.objective(theta0)
            s.evaluations += 1 if s.step == 0 else 0
        value, grad = self._current
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            raise self._diverged(value, 0, float("nan"))
        result = self.optimizer.step(self.objective, theta0, value, grad)
        if not (math.isfinite(result.loss) and np.isfinite(result.theta).all()):
            raise self._diverged(result.loss, 0, float("nan"))
        self.model.theta[...] = result.theta
        self._current = (result.loss, result.grad)
        s.step += 1
        s.batch = 0
        s.evaluations += result.evaluations
        if result.stop_reason:
            s.stop_reason = result.stop_reason
        for cb in self.callbacks:
            cb.on_batch_end(self)
        train = evaluate(self.model, self.loss, self.data.train, self.data.num_classes, self.config.eval_batch_size)
        step_size = result.step_size if result.step_size is not None else float("nan")
        self._end_epoch(float(result.loss), train.accuracy, step_size, time.perf_counter() - started)

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """f(θ) and ∇f(θ) on the whole training set, evaluation of the objective a minimiser sees."""
        if self._objective is None:
            self._objective = full_batch_objective(self.model, self.loss, self.data.train.x, self.data.train.y)
        return self._objective(theta)

    def _end_epoch(self, train_loss: float, train_accuracy: float, lr: float, seconds: float) -> None:
        s = self.state
        row = {
            "epoch": s.epoch + 1,
            "train_loss": float(train_loss),
            "train_accuracy": float(train_accuracy),
            "val_loss": None,
            "val_accuracy": None,
            "learning_rate": lr,
            "seconds": seconds,
        }
        if self.data.val is not None:
            val = evaluate(self.model, self.loss, self.data.val, self.data.num_classes, self.config.eval_batch_size)
            if not math.isfinite(val.loss):
                raise self._diverged(val.loss, self.batches_per_epoch - 1, lr, "the validation loss is not finite")
            row["val_loss"], row["val_accuracy"] = float(val.loss), float(val.accuracy)
            if s.best_val_loss is None or val.loss < s.best_val_loss:
                s.best_val_loss, s.best_epoch = float(val.loss), s.epoch + 1
        s.history.append(row)
        s.epoch += 1
        s.batch = 0
        s.loss_sum, s.correct, s.seen, s.epoch_seconds = 0.0, 0, 0, 0.0
        self.order = None
        self.schedule.observe(row)
        if self.early_stopping is not None:
            self._watch(row)
        for cb in self.callbacks:
            cb.on_epoch_end(self, row)

    def _watch(self, row: dict) -> None:
        """Early stopping: remember the best weights; stop after `patience` epochs without improvement.

        When training ends (by patience or by running out of epochs) the best
        weights are put back, so the final checkpoint holds them.
        """
        rule, s = self.early_stopping, self.state
        value = row[rule.monitor]
        if value is not None and (s.monitor_best is None or improved(value, s.monitor_best, rule.direction, rule.min_delta)):
            s.monitor_best, s.monitor_epoch, s.monitor_wait = value, row["epoch"], 0
            self._best_weights = (self.model.theta.copy(), {k: v.copy() for k, v in self.model.named_state()})
        else:
            s.monitor_wait += 1
        if s.monitor_wait >= rule.patience:
            s.stop_reason = (
                f"early stopping: {rule.monitor} did not improve for {rule.patience} epochs; best epoch {s.monitor_epoch}"
            )
        if (s.stop_reason is not None or s.epoch >= self.config.epochs) and self._best_weights is not None:
            theta, state = self._best_weights
            self.model.theta[...] = theta
            for key, array in self.model.named_state():
                array[...] = state[key]

    @property
    def improved(self) -> bool:
        """Did the epoch just finished set a new best validation loss?"""
        return self.state.best_epoch is not None and self.state.best_epoch == self.state.epoch

    def _diverged(self, value: float, batch: int, lr: float, what: str | None = None) -> DivergedError:
        norms = []
        first_bad = None
        for i, span in reversed(self.model.layer_slices()):
            g = self.model.grad[span].astype(np.float64)
            finite = bool(np.isfinite(g).all())
            norm = float(np.sqrt(np.sum(g * g))) if finite else float("nan")
            label = f"{i}.{self.model.layers[i].name}"
            norms.append(f"{label} {norm:.3g}" if finite else f"{label} non-finite")
            if not finite and first_bad is None:
                first_bad = label
        where = f"epoch {self.state.epoch + 1}, batch {batch + 1}/{self.batches_per_epoch}"
        culprit = f"; first non-finite gradient (backward order) in layer {first_bad}" if first_bad else ""
        rate = f" (now {lr:g})" if math.isfinite(lr) else ""
        clip = "" if self.config.clip_norm else " or gradient clipping (training.clip_norm: 1.0)"
        return DivergedError(
            f"training diverged at {where}: {what or f'loss is {value}'}{culprit}; gradient norms: {', '.join(reversed(norms))}; "
            f"the update was not applied; try a smaller optimizer.learning_rate{rate}{clip}"
        )

    # -- resume ---------------------------------------------------------------
    def snapshot(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON meta, arrays) of everything that continuing this run exactly depends on."""
        optim = self.optimizer.state_dict()
        arrays = {f"optim/{k}": v for k, v in optim.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in optim.items() if not isinstance(v, np.ndarray)}
        if self.order is not None:
            arrays["train/order"] = self.order
        if self._best_weights is not None:
            theta, state = self._best_weights
            arrays["train/best/theta"] = theta
            arrays.update({f"train/best/state/{k}": v for k, v in state.items()})
        meta = {
            "train_state": self.state.to_meta(),
            "optimizer_state": scalars,
            "schedule_state": self.schedule.state_dict(),
            "rng": {
                "shuffle": self.shuffle_rng.bit_generator.state,
                "augment": self.augment_rng.bit_generator.state,
                "layers": [g.bit_generator.state for g in self.model.random_generators()],
            },
        }
        return meta, arrays

    def restore(self, meta: dict, arrays: dict[str, np.ndarray], source: str = "checkpoint") -> None:
        """Continue from a snapshot (weights already loaded into the model); refuse anything inconsistent."""
        try:
            self._restore(meta, arrays)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CheckpointError(f"{source}: cannot resume from it: {detail}") from None

    def _restore(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        P, n = self.model.num_params, len(self.data.train)
        state = TrainState.from_meta(meta["train_state"])
        counters = (state.epoch, state.batch, state.step, state.correct, state.seen, state.evaluations, state.monitor_wait)
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counters):
            raise ValueError("training counters must be non-negative integers")
        if not (isinstance(state.history, list) and len(state.history) == state.epoch):
            raise ValueError(f"history has {len(state.history) if isinstance(state.history, list) else '?'} rows for epoch {state.epoch}")
        if any(not isinstance(r, dict) or set(r) != set(HISTORY_COLUMNS) for r in state.history):
            raise ValueError("history rows do not have the history.csv columns")
        if not (0 <= state.batch < self.batches_per_epoch):
            raise ValueError(f"batch position {state.batch} does not fit {self.batches_per_epoch} batches per epoch")
        order = arrays.get("train/order")
        if state.batch > 0:
            if order is None or order.shape != (n,) or order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(n)):
                raise ValueError(f"the epoch's sample order is not a permutation of the {n} training samples")
        for key, array in arrays.items():
            if key.startswith(("optim/", "train/best/theta")):
                if array.dtype.kind != "f" or array.ndim == 0 or array.shape[-1] != P or not np.isfinite(array).all():
                    raise ValueError(f"{key} must be finite floats with last dimension {P}")
        generators = self.model.random_generators()
        if len(meta["rng"]["layers"]) != len(generators):
            raise ValueError(f"{len(meta['rng']['layers'])} layer generator states for {len(generators)} random layers")
        optim = {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        self.optimizer.load_state_dict({**meta["optimizer_state"], **optim})
        self.schedule.load_state_dict(meta["schedule_state"])
        for rng, saved in ((self.shuffle_rng, meta["rng"]["shuffle"]), (self.augment_rng, meta["rng"]["augment"]),
                           *zip(generators, meta["rng"]["layers"])):
            if not isinstance(saved, dict) or saved.get("bit_generator") != rng.bit_generator.state["bit_generator"]:
                raise ValueError("random generator state is not a PCG64 state")
            rng.bit_generator.state = saved
        self.state = state
        self.order = order if state.batch > 0 else None
        if "train/best/theta" in arrays:
            prefix = "train/best/state/"
            best_state = {k[len(prefix) :]: v.copy() for k, v in arrays.items() if k.startswith(prefix)}
            expected = {k: v.shape for k, v in self.model.named_state()}
            if {k: v.shape for k, v in best_state.items()} != expected:
                raise ValueError("the best weights' layer state does not match the model")
            self._best_weights = (arrays["train/best/theta"].copy(), best_state)
