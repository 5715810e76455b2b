"""Full-batch minimisers over the flat parameter vector: Newton, BFGS, DFP, L-BFGS and nonlinear CG.

All five follow one loop (`LineSearchMinimizer.step`):

  1. stop at once if max|∇f| <= tolerance_grad;
  2. a search direction d from the method (Newton system, inverse-Hessian
     approximation, two-loop recursion, conjugate direction);
  3. if d is not a descent direction (∇fᵀd >= 0, e.g. after rounding), reset
     the method's memory and use d = -∇f;
  4. a line search on φ(t) = f(θ + t·d) (optimizers/linesearch.py); if it
     finds no acceptable step, reset and retry once along -∇f, else stop
     with `line_search_failed (<status>)`;
  5. update the method's memory from s = θ_new - θ, y = ∇f_new - ∇f;
  6. apply the stopping rule (`convergence`: gradient, then loss change).

Conventions: linear algebra runs in float64 whatever the model's dtype (θ
and ∇f are converted on the way in; the caller casts θ back). `learning_rate`
is the line search's first trial step, as in torch's L-BFGS; quasi-Newton
methods and CG use min(1, 1/‖∇f‖₁)·learning_rate on their first iteration,
before they have any curvature information (torch does the same).
Reference: J. Nocedal & S. J. Wright, Numerical Optimization, 2nd ed.
(Springer 2006), cited as N&W below.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..errors import ConfigError
from ..registry import NonNegativeFloat, OpenUnit, PositiveFloat, PositiveInt
from . import linesearch
from .base import GRADIENT_TOLERANCE, LINE_SEARCH_FAILED, OPTIMIZERS, Minimizer, Objective, StepResult, convergence, gradient_converged

CURVATURE_EPS = 1e-10  # quasi-Newton updates need yᵀs > CURVATURE_EPS·‖y‖·‖s‖ (else the update is skipped)


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def dense_matrix_message(name: str, num_params: int, limit: int) -> str:
    need = _human_bytes(8.0 * num_params * num_params)
    return (
        f"{name} needs a {num_params:,}×{num_params:,} float64 matrix ({need}) for this model's {num_params:,} parameters; "
        f"its limit is max_parameters={limit:,}. Use cg or lbfgs (memory linear in the parameters) or a smaller model"
    )


class _Line:
    """φ(t) = f(θ + t·d) and φ'(t) = ∇f(θ + t·d)·d, keeping the trial points a search can return.

    A search returns its last trial or the lowest one with sufficient decrease
    (linesearch's convention), so only those two (x, f, g) are kept: memory
    stays linear in P however many trials the search takes.
    """

    def __init__(self, objective: Objective, x: np.ndarray, d: np.ndarray, f0: float, slope0: float, c1: float):
        self.objective, self.x, self.d = objective, x, d
        self.f0, self.slope0, self.c1 = f0, slope0, c1
        self.last: tuple[float, np.ndarray, float, np.ndarray] | None = None  # (t, x, f, g)
        self.best: tuple[float, np.ndarray, float, np.ndarray] | None = None
        self.calls = 0

    def __call__(self, t: float) -> tuple[float, float]:
        x = self.x + t * self.d
        f, g = self.objective(x)
        self.calls += 1
        f = float(f)
        g = np.asarray(g, np.float64)
        self.last = (t, x, f, g)
        if linesearch.sufficient_decrease(f, t, self.f0, self.slope0, self.c1) and (self.best is None or f < self.best[2]):
            self.best = self.last
        slope = float(g @ self.d) if np.isfinite(g).all() else math.nan
        return f, slope

    def at(self, t: float) -> tuple[np.ndarray, float, np.ndarray]:
        """(x, f, g) at step t: a kept trial, else evaluated now (a search that did not follow the convention)."""
        for point in (self.last, self.best):
            if point is not None and point[0] == t:
                return point[1:]
        self(t)
        return self.last[1:]


class LineSearchMinimizer(Minimizer):
    """Shared loop: direction, descent check, line search, memory update, stopping rule (module docstring)."""

    max_parameters: int | None = None  # set by the methods that keep a dense P×P matrix
    c1: float  # the line search's Armijo constant (every method has one; _Line keeps its best trial by it)

    def __init__(self, learning_rate: float, tolerance_grad: float, tolerance_change: float):
        self.learning_rate = learning_rate  # first trial step of the line search
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.iterations = 0  # outer iterations taken
        self.restarts = 0  # times the memory was reset to steepest descent
        self.line_search = self.default_line_search()  # (phi, f0, slope0, t0) -> LineSearchResult; tests swap it

    # -- what a method defines ----------------------------------------------
    def default_line_search(self):
        raise NotImplementedError

    def direction(self, objective: Objective, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, int]:
        """The search direction at x and the objective calls spent finding it."""
        raise NotImplementedError

    def initial_step(self, g: np.ndarray, slope: float) -> float:
        return self.learning_rate

    def update(self, s: np.ndarray, y: np.ndarray, g: np.ndarray, d: np.ndarray, t: float, slope: float) -> None:
        """Learn from the accepted step s = θ_new - θ and the gradient change y = ∇f_new - g.

        The step went t along d, from where the gradient was g and the slope gᵀd.
        """

    def reset(self) -> None:
        """Forget curvature memory; the next direction is steepest descent."""

    # -- the loop -------------------------------------------------------------
    def check_size(self, num_params: int) -> None:
        if self.max_parameters is not None and num_params > self.max_parameters:
            raise ConfigError(dense_matrix_message(self.registered_name, num_params, self.max_parameters))

    def step(self, objective: Objective, theta: np.ndarray, loss: float, grad: np.ndarray) -> StepResult:
        self.check_size(theta.size)
        x = np.array(theta, np.float64)
        g = np.array(grad, np.float64)
        f = float(loss)
        if gradient_converged(g, self.tolerance_grad):
            return StepResult(x, f, g, 0, 0, GRADIENT_TOLERANCE, None)
        d, spent = self.direction(objective, x, g)
        slope = float(g @ d)
        steepest = not (np.isfinite(d).all() and slope < 0)
        if steepest:  # 3. not downhill: start again from -∇f
            d, slope = self._steepest(g)
        line = _Line(objective, x, d, f, slope, self.c1)
        result = self.line_search(line, f, slope, self.initial_step(g, slope))
        if result.step <= 0 and not steepest:  # 4. retry once along -∇f
            d, slope = self._steepest(g)
            retry = _Line(objective, x, d, f, slope, self.c1)
            result = self.line_search(retry, f, slope, self.initial_step(g, slope))
            retry.calls += line.calls
            line = retry
        if result.step <= 0:
            return StepResult(x, f, g, line.calls, spent + line.calls, f"{LINE_SEARCH_FAILED} ({result.status})", 0.0)
        x_new, f_new, g_new = line.at(result.step)
        self.iterations += 1
        self.update(x_new - x, g_new - g, g, d, result.step, slope)
        reason = convergence(f, f_new, g_new, self.tolerance_grad, self.tolerance_change)
        return StepResult(x_new, f_new, g_new, line.calls, spent + line.calls, reason, result.step)

    def _steepest(self, g: np.ndarray) -> tuple[np.ndarray, float]:
        """Restart: forget the memory (counted in restarts) and go along -∇f; the direction and its slope."""
        self.restarts += 1
        self.reset()
        return -g, -float(g @ g)

    def state_dict(self) -> dict:
        return {"iterations": self.iterations, "restarts": self.restarts}

    def load_state_dict(self, state: dict) -> None:
        self.iterations = int(state.get("iterations", 0))
        self.restarts = int(state.get("restarts", 0))


def _first_step(g: np.ndarray, learning_rate: float) -> float:
    """min(1, 1/‖g‖₁)·lr: a first trial step of length at most lr·‖g‖₂/‖g‖₁ <= lr, before any curvature is known."""
    return min(1.0, 1.0 / max(float(np.sum(np.abs(g))), 1e-300)) * learning_rate


def _scaled_identity(s: np.ndarray, y: np.ndarray, ys: float) -> np.ndarray:
    """(yᵀs / yᵀy)·I, the starting inverse Hessian that matches the curvature along the latest step (N&W eq. 6.20)."""
    return (ys / float(y @ y)) * np.eye(s.size)


@OPTIMIZERS.register("newton", "newton_method")
class Newton(LineSearchMinimizer):
    """Damped Newton's method: solve (H + τI)d = -∇f with a finite-difference Hessian, then backtrack (N&W §3.4).

    H is built column by column from central differences of the analytic
    gradient, H[:, i] = (∇f(θ + hᵢeᵢ) - ∇f(θ - hᵢeᵢ)) / 2hᵢ with hᵢ = ε·max(1, |θᵢ|)
    (2P gradient evaluations per iteration), then symmetrised. τ = 0 when H
    is positive definite; otherwise τ grows from damping·max|Hᵢᵢ| (doubling)
    until a Cholesky factorisation succeeds (N&W Algorithm 3.3), so d is
    always a descent direction, also on the indefinite Hessians of networks.
    The line search is backtracking (Armijo) from t = learning_rate (1: the
    pure Newton step, taken as soon as it is good enough).

    Options:
    learning_rate: first trial step of the backtracking line search (1 = full Newton step)
    tolerance_grad: stop when ‖∇f‖∞ (the largest gradient component) <= this
    tolerance_change: stop when the loss changes by <= this, relative to max(1, loss)
    epsilon: finite-difference step ε (relative); null = cube root of the dtype's machine epsilon
    damping: smallest shift τ tried when H is not positive definite, relative to the largest diagonal entry of H (in absolute value)
    c1: Armijo constant of the line search
    max_parameters: refuse models with more parameters (the Hessian is P×P float64)
    """

    max_parameters = 5000

    def __init__(
        self,
        learning_rate: PositiveFloat = 1.0,
        tolerance_grad: NonNegativeFloat = 1e-6,
        tolerance_change: NonNegativeFloat = 1e-9,
        epsilon: PositiveFloat | None = None,
        damping: PositiveFloat = 1e-3,
        c1: OpenUnit = 1e-4,
        max_parameters: PositiveInt = 5000,
    ):
        self.epsilon = epsilon
        self.damping = damping
        self.c1 = c1
        self.max_parameters = max_parameters
        self.last_shift = 0.0  # τ used in the last iteration
        super().__init__(learning_rate, tolerance_grad, tolerance_change)

    def default_line_search(self):
        return partial(linesearch.backtracking, c1=self.c1)

    def hessian(self, objective: Objective, x: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Central-difference Hessian from the analytic gradient, symmetrised: (P, P)."""
        eps = self.epsilon if self.epsilon is not None else float(np.finfo(dtype).eps) ** (1.0 / 3.0)
        P = x.size
        H = np.empty((P, P))
        for i in range(P):
            h = eps * max(1.0, abs(x[i]))
            up, down = x.copy(), x.copy()
            # the points as the model will hold them (its dtype), so the divisor is the step actually taken
            up[i] = float(np.asarray(x[i] + h, dtype))
            down[i] = float(np.asarray(x[i] - h, dtype))
            g_up = np.asarray(objective(up)[1], np.float64)
            g_down = np.asarray(objective(down)[1], np.float64)
            H[:, i] = (g_up - g_down) / (up[i] - down[i])
        return 0.5 * (H + H.T)

    def direction(self, objective, x, g):
        H = self.hessian(objective, x, self._dtype)
        shift = self.positive_definite_shift(H)
        self.last_shift = shift
        d = np.linalg.solve(H + shift * np.eye(x.size), -g)
        return d, 2 * x.size

    def positive_definite_shift(self, H: np.ndarray) -> float:
        """Smallest τ of the sequence 0 (or β - min Hᵢᵢ), then doubling, with H + τI Cholesky-factorisable."""
        diag = np.diag(H)
        scale = float(np.max(np.abs(diag), initial=0.0))
        beta = self.damping * (scale if scale > 0 else 1.0)
        tau = 0.0 if float(diag.min(initial=math.inf)) > 0 else beta - float(diag.min(initial=0.0))
        eye = np.eye(len(H))
        for _ in range(200):
            try:
                np.linalg.cholesky(H + tau * eye)
                return tau
            except np.linalg.LinAlgError:
                tau = max(2.0 * tau, beta)
        raise FloatingPointError("could not make the Hessian positive definite")

    def step(self, objective, theta, loss, grad):
        self._dtype = theta.dtype if np.issubdtype(theta.dtype, np.floating) else np.float64
        return super().step(objective, theta, loss, grad)

    def state_dict(self):
        return {**super().state_dict(), "last_shift": float(self.last_shift)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.last_shift = float(state.get("last_shift", 0.0))


class _WolfeMethod(LineSearchMinimizer):
    """A method with a strong Wolfe line search (BFGS, DFP, L-BFGS, CG): holds its constants, 0 < c1 < c2 < 1."""

    def __init__(self, learning_rate, tolerance_grad, tolerance_change, c1, c2):
        if not c1 < c2:  # each is in (0, 1) by its annotation
            raise ValueError(f"the line search needs c1 < c2, got c1={c1:g}, c2={c2:g}")
        self.c1, self.c2 = c1, c2
        super().__init__(learning_rate, tolerance_grad, tolerance_change)

    def default_line_search(self):
        return partial(linesearch.strong_wolfe, c1=self.c1, c2=self.c2)


class _QuasiNewton(_WolfeMethod):
    """BFGS, DFP, L-BFGS: learn from each pair (s, y) that passes the curvature condition; skip and count the others.

    The condition yᵀs > CURVATURE_EPS·‖y‖‖s‖ keeps the inverse-Hessian
    approximation positive definite; the strong Wolfe line search makes a
    skip rare.
    """

    def __init__(self, learning_rate, tolerance_grad, tolerance_change, c1, c2):
        self.skipped_updates = 0
        super().__init__(learning_rate, tolerance_grad, tolerance_change, c1, c2)

    def update(self, s, y, g, d, t, slope):
        ys = float(y @ s)
        if not ys > CURVATURE_EPS * float(np.linalg.norm(y) * np.linalg.norm(s)):
            self.skipped_updates += 1
            return
        self._learn(s, y, ys)

    def _learn(self, s: np.ndarray, y: np.ndarray, ys: float) -> None:
        """Take in a pair that passed the curvature condition (ys = yᵀs > 0)."""
        raise NotImplementedError

    def state_dict(self):
        return {**super().state_dict(), "skipped_updates": self.skipped_updates}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.skipped_updates = int(state.get("skipped_updates", 0))


class _InverseHessianMethod(_QuasiNewton):
    """Quasi-Newton with a dense inverse-Hessian approximation H (N&W Algorithm 6.1): d = -H∇f.

    H starts as the identity; just before the first update it is rescaled to
    (yᵀs / yᵀy)·I (N&W eq. 6.20).
    """

    max_parameters = 5000

    def __init__(self, learning_rate, tolerance_grad, tolerance_change, c1, c2, max_parameters):
        self.max_parameters = max_parameters
        self.H: np.ndarray | None = None  # (P, P) inverse-Hessian approximation; None = identity, not yet scaled
        super().__init__(learning_rate, tolerance_grad, tolerance_change, c1, c2)

    def direction(self, objective, x, g):
        return (-g if self.H is None else -(self.H @ g)), 0

    def initial_step(self, g, slope):
        return _first_step(g, self.learning_rate) if self.H is None else self.learning_rate

    def _learn(self, s, y, ys):
        if self.H is None:
            self.H = _scaled_identity(s, y, ys)
        self.H = self._updated(self.H, s, y, ys)

    def _updated(self, H: np.ndarray, s: np.ndarray, y: np.ndarray, ys: float) -> np.ndarray:
        """The updated H; the formulas keep it exactly symmetric (each term is), so no symmetrising is needed."""
        raise NotImplementedError

    def reset(self):
        self.H = None

    def state_dict(self):
        state = super().state_dict()
        if self.H is not None:
            state["H"] = self.H
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.H = np.array(state["H"], np.float64) if "H" in state else None


@OPTIMIZERS.register("bfgs")
class BFGS(_InverseHessianMethod):
    """BFGS: H ← (I - ρsyᵀ)H(I - ρysᵀ) + ρssᵀ, ρ = 1/yᵀs (N&W eq. 6.17), with a strong Wolfe line search.

    Options:
    learning_rate: first trial step of the line search (after the first iteration)
    tolerance_grad: stop when ‖∇f‖∞ (the largest gradient component) <= this
    tolerance_change: stop when the loss changes by <= this, relative to max(1, loss)
    c1: sufficient-decrease (Armijo) constant of the strong Wolfe line search
    c2: curvature constant of the strong Wolfe line search
    max_parameters: refuse models with more parameters (H is P×P float64)
    """

    def __init__(
        self,
        learning_rate: PositiveFloat = 1.0,
        tolerance_grad: NonNegativeFloat = 1e-6,
        tolerance_change: NonNegativeFloat = 1e-9,
        c1: OpenUnit = 1e-4,
        c2: OpenUnit = 0.9,
        max_parameters: PositiveInt = 5000,
    ):
        super().__init__(learning_rate, tolerance_grad, tolerance_change, c1, c2, max_parameters)

    def _updated(self, H, s, y, ys):
        rho = 1.0 / ys
        Hy = H @ y
        # expanded form of (I - ρsyᵀ)H(I - ρysᵀ) + ρssᵀ for symmetric H
        return H - rho * (np.outer(Hy, s) + np.outer(s, Hy)) + (rho * rho * float(y @ Hy) + rho) * np.outer(s, s)


@OPTIMIZERS.register("dfp")
class DFP(_InverseHessianMethod):
    """DFP (Davidon-Fletcher-Powell): H ← H - HyyᵀH/yᵀHy + ssᵀ/yᵀs (N&W eq. 6.15), with a strong Wolfe line search.

    NOTE: c2 defaults to 0.1, not BFGS's 0.9. DFP corrects a poor H much less
    well than BFGS (N&W §6.1), and an inexact line search exposes that: on
    Rosenbrock from (-1.2, 1) it needs 1,250 iterations with c2 = 0.9 and 24
    with c2 = 0.1 (BFGS: 40 and 24).

    Options:
    learning_rate: first trial step of the line search (after the first iteration)
    tolerance_grad: stop when ‖∇f‖∞ (the largest gradient component) <= this
    tolerance_change: stop when the loss changes by <= this, relative to max(1, loss)
    c1: sufficient-decrease (Armijo) constant of the strong Wolfe line search
    c2: curvature constant of the strong Wolfe line search
    max_parameters: refuse models with more parameters (H is P×P float64)
    """

    def __init__(
        self,
        learning_rate: PositiveFloat = 1.0,
        tolerance_grad: NonNegativeFloat = 1e-6,
        tolerance_change: NonNegativeFloat = 1e-9,
        c1: OpenUnit = 1e-4,
        c2: OpenUnit = 0.1,
        max_parameters: PositiveInt = 5000,
    ):
        super().__init__(learning_rate, tolerance_grad, tolerance_change, c1, c2, max_parameters)

    def _updated(self, H, s, y, ys):
        Hy = H @ y
        yHy = float(y @ Hy)
        if not yHy > 0:  # H lost positive definiteness to rounding: start over from the scaled identity
            H = _scaled_identity(s, y, ys)
            Hy = H @ y
            yHy = float(y @ Hy)
        return H - np.outer(Hy, Hy) / yHy + np.outer(s, s) / ys


@OPTIMIZERS.register("lbfgs", "l_bfgs")
class LBFGS(_QuasiNewton):
    """Limited-memory BFGS: d = -H∇f by the two-loop recursion over the last history_size pairs (s, y) (N&W Algorithm 7.4).

    H₀ = (sᵀy / yᵀy)·I from the newest pair (N&W eq. 7.20); pairs failing the
    curvature condition are not stored. Memory is 2·history_size vectors of
    P floats, so it works on models of any size. Strong Wolfe line search.

    Options:
    learning_rate: first trial step of the line search (after the first iteration)
    history_size: number of (s, y) pairs kept
    tolerance_grad: stop when ‖∇f‖∞ (the largest gradient component) <= this
    tolerance_change: stop when the loss changes by <= this, relative to max(1, loss)
    c1: sufficient-decrease (Armijo) constant of the strong Wolfe line search
    c2: curvature constant of the strong Wolfe line search
    """

    def __init__(
        self,
        learning_rate: PositiveFloat = 1.0,
        history_size: PositiveInt = 10,
        tolerance_grad: NonNegativeFloat = 1e-6,
        tolerance_change: NonNegativeFloat = 1e-9,
        c1: OpenUnit = 1e-4,
        c2: OpenUnit = 0.9,
    ):
        self.history_size = history_size
        self.s: list[np.ndarray] = []  # oldest first
        self.y: list[np.ndarray] = []
        self.ys: list[float] = []  # yᵀs of each pair, which both loops divide by
        super().__init__(learning_rate, tolerance_grad, tolerance_change, c1, c2)

    def direction(self, objective, x, g):
        return -self.apply_inverse_hessian(g), 0

    def apply_inverse_hessian(self, g: np.ndarray) -> np.ndarray:
        """H·g by the two-loop recursion (H = identity with no pairs stored)."""
        q = g.copy()
        alphas = []
        for s, y, ys in zip(reversed(self.s), reversed(self.y), reversed(self.ys)):
            alpha = float(s @ q) / ys
            q -= alpha * y
            alphas.append(alpha)
        if self.s:
            q *= self.ys[-1] / float(self.y[-1] @ self.y[-1])
        for s, y, ys, alpha in zip(self.s, self.y, self.ys, reversed(alphas)):
            beta = float(y @ q) / ys
            q += (alpha - beta) * s
        return q

    def initial_step(self, g, slope):
        return _first_step(g, self.learning_rate) if not self.s else self.learning_rate

    def _learn(self, s, y, ys):
        self.s.append(s)
        self.y.append(y)
        self.ys.append(ys)
        if len(self.s) > self.history_size:
            del self.s[0], self.y[0], self.ys[0]

    def reset(self):
        self.s, self.y, self.ys = [], [], []

    def state_dict(self):
        state = super().state_dict()
        if self.s:
            state["s"] = np.stack(self.s)
            state["y"] = np.stack(self.y)
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.s = [np.array(v, np.float64) for v in state["s"]] if "s" in state else []
        self.y = [np.array(v, np.float64) for v in state["y"]] if "y" in state else []
        self.ys = [float(y @ s) for s, y in zip(self.s, self.y)]


@OPTIMIZERS.register("cg", "conjugate_gradient", "nonlinear_cg")
class ConjugateGradient(_WolfeMethod):
    """Nonlinear conjugate gradient, Polak-Ribière+: d = -∇f + βd_prev, β = max(0, ∇fᵀ(∇f - ∇f_prev)/‖∇f_prev‖²) (N&W §5.2).

    Restarts with d = -∇f every restart_every iterations (default: P, the
    number of parameters), when successive gradients are far from orthogonal
    (|∇fᵀ∇f_prev| >= 0.2‖∇f‖², Powell's test, N&W eq. 5.52) and whenever d is
    not a descent direction. The strong Wolfe line search uses c2 = 0.1 (a
    near-exact search, as CG needs); later first trial steps follow N&W
    eq. 3.60, t₀ = t_prev·φ'_prev(0)/φ'(0). Memory: two vectors of P floats.

    Options:
    learning_rate: first trial step on the first iteration (scaled by min(1, 1/‖∇f‖₁))
    restart_every: iterations between restarts; null = the number of parameters
    tolerance_grad: stop when ‖∇f‖∞ (the largest gradient component) <= this
    tolerance_change: stop when the loss changes by <= this, relative to max(1, loss)
    c1: sufficient-decrease (Armijo) constant of the strong Wolfe line search
    c2: curvature constant of the strong Wolfe line search
    """

    POWELL = 0.2  # restart threshold on |∇fᵀ∇f_prev| / ‖∇f‖²

    def __init__(
        self,
        learning_rate: PositiveFloat = 1.0,
        restart_every: PositiveInt | None = None,
        tolerance_grad: NonNegativeFloat = 1e-6,
        tolerance_change: NonNegativeFloat = 1e-9,
        c1: OpenUnit = 1e-4,
        c2: OpenUnit = 0.1,
    ):
        self.restart_every = restart_every
        self.g_prev: np.ndarray | None = None  # gradient where d_prev was taken
        self.d_prev: np.ndarray | None = None
        self.t_prev = 0.0  # accepted step along d_prev
        self.slope_prev = 0.0  # φ'(0) along d_prev
        self.since_restart = 0  # iterations since the last steepest-descent direction
        super().__init__(learning_rate, tolerance_grad, tolerance_change, c1, c2)

    def direction(self, objective, x, g):
        period = self.restart_every or x.size
        if self.d_prev is None or self.since_restart >= period or abs(float(g @ self.g_prev)) >= self.POWELL * float(g @ g):
            self.reset()
            return -g, 0
        beta = max(0.0, float(g @ (g - self.g_prev)) / float(self.g_prev @ self.g_prev))
        return -g + beta * self.d_prev, 0

    def initial_step(self, g, slope):
        if self.t_prev <= 0 or self.slope_prev >= 0:
            return _first_step(g, self.learning_rate)
        return self.t_prev * self.slope_prev / slope

    def update(self, s, y, g, d, t, slope):
        self.g_prev, self.d_prev = g, d
        self.t_prev, self.slope_prev = t, slope
        self.since_restart += 1

    def reset(self):
        # keep t_prev/slope_prev: the step-length guess stays useful across restarts
        self.g_prev = self.d_prev = None
        self.since_restart = 0

    def state_dict(self):
        state = {
            **super().state_dict(),
            "t_prev": float(self.t_prev),
            "slope_prev": float(self.slope_prev),
            "since_restart": self.since_restart,
        }
        if self.d_prev is not None:
            state["g_prev"], state["d_prev"] = self.g_prev, self.d_prev
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t_prev = float(state.get("t_prev", 0.0))
        self.slope_prev = float(state.get("slope_prev", 0.0))
        self.since_restart = int(state.get("since_restart", 0))
        self.g_prev = np.array(state["g_prev"], np.float64) if "g_prev" in state else None
        self.d_prev = np.array(state["d_prev"], np.float64) if "d_prev" in state else None
