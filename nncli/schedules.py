"""Learning-rate schedules (`training.schedule`), one value per epoch.

A schedule maps (epoch, base learning rate, total epochs) to the rate used for
every update of that epoch, which is the value history.csv records. Most are
pure functions of the epoch (nanoGPT's `get_lr`); `reduce_on_plateau` also
watches a metric and keeps a little state, saved in checkpoints so a resumed
run continues exactly. `warmup` wraps any other schedule.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from .registry import NonNegativeFloat, OpenUnit, PositiveFloat, PositiveInt, Registry, UnitFactor

SCHEDULES = Registry("schedule")

Schedule_ = Annotated[object, SCHEDULES]  # option type: a schedule name or mapping


class Schedule:
    """lr(epoch) for 0-based epochs; `observe` sees each finished epoch's history row."""

    registered_name = "schedule"
    spec: dict

    def __call__(self, epoch: int, base_lr: float, total_epochs: int) -> float:
        raise NotImplementedError

    def observe(self, row: dict) -> None:
        """Called after every epoch with its history row (only stateful schedules care)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@SCHEDULES.register("constant")
class Constant(Schedule):
    """The optimizer's learning_rate throughout."""

    def __call__(self, epoch, base_lr, total_epochs):
        return base_lr


@SCHEDULES.register("step")
class StepDecay(Schedule):
    """lr·gamma^⌊epoch/step_size⌋: drop by a factor every step_size epochs.

    Options:
    step_size: epochs between drops
    gamma: factor applied at each drop
    """

    def __init__(self, step_size: PositiveInt = 10, gamma: PositiveFloat = 0.1):
        self.step_size, self.gamma = step_size, gamma

    def __call__(self, epoch, base_lr, total_epochs):
        return base_lr * self.gamma ** (epoch // self.step_size)


@SCHEDULES.register("exponential")
class ExponentialDecay(Schedule):
    """lr·gamma^epoch: a smooth geometric decay.

    Options:
    gamma: factor per epoch
    """

    def __init__(self, gamma: UnitFactor = 0.95):
        self.gamma = gamma

    def __call__(self, epoch, base_lr, total_epochs):
        return base_lr * self.gamma**epoch


@SCHEDULES.register("cosine")
class CosineDecay(Schedule):
    """Cosine annealing (Loshchilov & Hutter 2017) from lr to min_lr over `epochs` (default: the whole run).

    Options:
    epochs: length of the decay; null means training.epochs (minus any warmup)
    min_lr: the final learning rate
    """

    def __init__(self, epochs: PositiveInt | None = None, min_lr: NonNegativeFloat = 0.0):
        self.epochs, self.min_lr = epochs, min_lr

    def __call__(self, epoch, base_lr, total_epochs):
        span = self.epochs or total_epochs
        progress = min(epoch, span) / span
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("warmup")
class Warmup(Schedule):
    """Linear warm-up from start_factor·lr to lr over `epochs`, then the `then` schedule (counted from the end of warm-up).

    Options:
    epochs: warm-up length
    start_factor: fraction of lr used in the first epoch
    then: the schedule that follows
    """

    def __init__(
        self,
        epochs: PositiveInt = 5,
        start_factor: UnitFactor = 0.1,
        then: Schedule_ = "constant",
    ):
        self.epochs, self.start_factor = epochs, start_factor
        self.then = SCHEDULES.create(then)
        if isinstance(self.then, Warmup):
            raise ValueError("warmup cannot wrap another warmup")

    def __call__(self, epoch, base_lr, total_epochs):
        if epoch < self.epochs:
            return base_lr * (self.start_factor + (1.0 - self.start_factor) * epoch / self.epochs)
        return self.then(epoch - self.epochs, base_lr, max(1, total_epochs - self.epochs))

    def observe(self, row):
        if row["epoch"] > self.epochs:
            self.then.observe(row)

    def state_dict(self):
        return self.then.state_dict()

    def load_state_dict(self, state):
        self.then.load_state_dict(state)


@SCHEDULES.register("reduce_on_plateau")
class ReduceOnPlateau(Schedule):
    """Multiply lr by `factor` when `monitor` has not improved by min_delta for `patience` epochs.

    Options:
    monitor: history column watched (val_loss needs validation data)
    mode: min (losses) or max (accuracies); auto picks from the column name
    factor: multiplier applied on a plateau
    patience: epochs without improvement before reducing
    min_delta: smallest change that counts as an improvement
    min_lr: the rate never goes below this
    """

    def __init__(
        self,
        monitor: Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"] = "val_loss",
        mode: Literal["auto", "min", "max"] = "auto",
        factor: OpenUnit = 0.1,
        patience: PositiveInt = 5,
        min_delta: NonNegativeFloat = 0.0,
        min_lr: NonNegativeFloat = 0.0,
    ):
        self.monitor, self.factor, self.patience, self.min_delta, self.min_lr = monitor, factor, patience, min_delta, min_lr
        self.mode = mode if mode != "auto" else ("max" if monitor.endswith("accuracy") else "min")
        self.scale, self.best, self.wait = 1.0, None, 0

    def __call__(self, epoch, base_lr, total_epochs):
        return max(base_lr * self.scale, min(self.min_lr, base_lr))

    def observe(self, row):
        value = row.get(self.monitor)
        if value is None:
            return
        if self.best is None or improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.scale *= self.factor
            self.wait = 0

    def state_dict(self):
        return {"scale": self.scale, "best": self.best, "wait": self.wait}

    def load_state_dict(self, state):
        self.scale, self.best, self.wait = state["scale"], state["best"], state["wait"]


def improved(value: float, best: float, mode: str, min_delta: float) -> bool:
    """Is `value` better than `best` by more than min_delta?"""
    return value < best - min_delta if mode == "min" else value > best + min_delta
