"""The two optimizer contracts and their shared registry.

`Optimizer` (first order, mini-batch): `step(theta, grad, lr)` updates the flat
parameter vector in place; the learning rate comes from the trainer (a
schedule), so the value written to history.csv is the one used.

`Minimizer` (full batch, second order or line-search based): `step(objective,
theta, loss, grad)` takes one outer iteration on f(θ) = objective(θ)[0] and
reports how many evaluations it used and whether it has converged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..registry import Registry

OPTIMIZERS = Registry("optimizer")

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]  # θ -> (loss, ∇loss), the gradient a fresh array


class Optimizer:
    """First-order update rule over the flat parameter vector."""

    registered_name = "optimizer"
    spec: dict
    full_batch = False  # True: every step sees the whole training set (plain gradient descent)

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate  # base rate; a schedule may vary it per step
        self.t = 0  # updates taken (Adam's bias correction uses it)

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        """Update theta in place from grad."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Slots (arrays) and counters needed to continue exactly where this left off."""
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])


@dataclass
class StepResult:
    """One outer iteration of a Minimizer."""

    theta: np.ndarray
    loss: float
    grad: np.ndarray
    evaluations: int  # objective calls (loss and gradient) spent in this iteration
    converged: str | None = None  # the stopping rule that fired, if one did
    step_size: float | None = None  # the line search's accepted step length, if any


class Minimizer:
    """Full-batch method over the flat parameter vector (Newton, quasi-Newton, CG)."""

    registered_name = "minimizer"
    spec: dict
    full_batch = True

    def step(self, objective: Objective, theta: np.ndarray, loss: float, grad: np.ndarray) -> StepResult:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
