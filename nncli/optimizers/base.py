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
        """Update theta in place from grad: count the update, then apply the rule."""
        self.t += 1
        self._apply(theta, grad, lr)

    def _apply(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        """The update rule itself (self.t already counts this update)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Slots (arrays) and counters needed to continue exactly where this left off."""
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])


# Why a full-batch run stopped (StepResult.stop_reason, TrainState.stop_reason, compare's stop column).
GRADIENT_TOLERANCE = "gradient_tolerance"  # ‖∇f‖∞ <= tolerance_grad: converged
CHANGE_TOLERANCE = "change_tolerance"  # |f_k - f_k+1| <= tolerance_change·max(1, |f_k|): converged
LINE_SEARCH_FAILED = "line_search_failed"  # no step lowered f, even along -∇f (the status follows in brackets)
MAX_ITERATIONS = "max_iterations"  # the iteration budget ran out (set by the caller, not the method)
DIVERGED = "diverged"  # a non-finite loss or gradient (set by the caller)
CONVERGED = (GRADIENT_TOLERANCE, CHANGE_TOLERANCE)


def gradient_converged(grad: np.ndarray, tolerance_grad: float) -> bool:
    """max|∇f| <= tolerance_grad: the gradient rule, shared by every stopping check (an empty gradient passes)."""
    return float(np.max(np.abs(grad), initial=0.0)) <= tolerance_grad


def convergence(f_old: float | None, f_new: float, grad: np.ndarray, tolerance_grad: float, tolerance_change: float) -> str | None:
    """The stopping rule every full-batch method (and compare-optimizers) applies after an iteration.

    Gradient: max|∇f(θ_new)| <= tolerance_grad (the ∞-norm, as scipy's BFGS
    `gtol` and torch's L-BFGS `tolerance_grad`). Change: the loss moved by at
    most tolerance_change relative to max(1, |f_old|) (scipy's L-BFGS-B
    `ftol` form). Returns the rule that fired, gradient first, or None.
    """
    if gradient_converged(grad, tolerance_grad):
        return GRADIENT_TOLERANCE
    if f_old is not None and abs(f_old - f_new) <= tolerance_change * max(1.0, abs(f_old)):
        return CHANGE_TOLERANCE
    return None


@dataclass
class StepResult:
    """One outer iteration of a Minimizer.

    Every objective call computes the loss and the gradient together; the two
    counts say which of them the method used. Line-search trials use both;
    Newton's finite-difference Hessian columns use only the gradient.
    """

    theta: np.ndarray
    loss: float
    grad: np.ndarray
    function_evaluations: int  # objective calls whose loss the method used (line-search trials)
    gradient_evaluations: int  # all objective calls this iteration (each returns a gradient)
    stop_reason: str | None = None  # the stopping rule that fired (see convergence()), or a failure
    step_size: float | None = None  # the line search's accepted step length, if any

    @property
    def evaluations(self) -> int:
        """Objective calls (loss and gradient) spent in this iteration."""
        return self.gradient_evaluations

    @property
    def converged(self) -> bool:
        return self.stop_reason in CONVERGED


class Minimizer:
    """Full-batch method over the flat parameter vector (Newton, quasi-Newton, CG).

    `step(objective, theta, loss, grad)` takes one outer iteration from θ,
    where (loss, grad) = objective(θ), and returns the new point with its
    loss and gradient (so the caller never re-evaluates) in a StepResult.
    Methods that hold a dense P×P matrix refuse large models in
    `check_size(P)`, which callers run before loading any data.
    """

    registered_name = "minimizer"
    spec: dict
    full_batch = True

    def check_size(self, num_params: int) -> None:
        """Raise ConfigError (no key path) when this method cannot handle a model with num_params parameters."""

    def step(self, objective: Objective, theta: np.ndarray, loss: float, grad: np.ndarray) -> StepResult:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
