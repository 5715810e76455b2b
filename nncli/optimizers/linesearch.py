"""Line searches as pure functions of the one-dimensional restriction φ(t) = f(θ + t·d).

Every search takes `phi(t) -> (φ(t), φ'(t))` (φ'(t) = ∇f(θ + t·d)·d; the
objective gives value and gradient together, so both come from one call),
the value and slope at t = 0, and a first trial step. It returns a
`LineSearchResult`; nothing else is read or changed, so the searches are
tested alone by their defining conditions (tests/test_linesearch.py) and a
minimiser can be handed any other function with the same signature (the
exact line search on a quadratic, in tests).

Conditions (Nocedal & Wright, Numerical Optimization, 2nd ed., §3.1):
  sufficient decrease (Armijo)  φ(t) ≤ φ(0) + c₁·t·φ'(0)   (and φ(t) < φ(0), which rounding could break)
  strong curvature              |φ'(t)| ≤ c₂·|φ'(0)|,      0 < c₁ < c₂ < 1

Convention: `step > 0` means the returned point satisfies the Armijo
condition (so it lowers f); `status` says whether the search fully
succeeded ("ok") or why not. A failed search that found no acceptable point
returns `step = 0.0`. A step > 0 is always one of the trials: the last one,
or the lowest one with sufficient decrease (minimisers keep only these two).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Phi = Callable[[float], tuple[float, float]]  # t -> (φ(t), φ'(t))

OK = "ok"
NOT_DESCENT = "not_descent"  # φ'(0) >= 0: d does not point downhill
NON_FINITE = "non_finite"  # φ(0) or φ'(0) is NaN/inf
NO_PROGRESS = "no_progress"  # the bracket is below the resolution of f: a flat function, or at the minimum already
MAX_EVALUATIONS = "max_evaluations"  # the evaluation budget ran out first

_EPS = 2.220446049250313e-16  # float64 machine epsilon


@dataclass(frozen=True)
class LineSearchResult:
    step: float  # accepted t; 0.0 when no point with sufficient decrease was found
    value: float  # φ(step)
    slope: float  # φ'(step)
    evaluations: int  # calls of phi
    status: str  # OK or one of the failure codes above

    @property
    def ok(self) -> bool:
        return self.status == OK


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _check_start(f0: float, slope0: float) -> LineSearchResult | None:
    if not _finite(f0, slope0):
        return LineSearchResult(0.0, f0, slope0, 0, NON_FINITE)
    if slope0 >= 0:
        return LineSearchResult(0.0, f0, slope0, 0, NOT_DESCENT)
    return None


def sufficient_decrease(f: float, t: float, f0: float, slope0: float, c1: float) -> bool:
    """Armijo, plus f < f0 outright: where c1·t·φ'(0) is below the rounding of f0 the bound alone would accept no decrease."""
    return math.isfinite(f) and f <= f0 + c1 * t * slope0 and f < f0


def _too_small(width: float, f0: float, slope0: float) -> bool:
    """Is a change of t by `width` below what f can resolve (predicted change |width·φ'(0)| < ε·max(1,|f0|))?"""
    return width * abs(slope0) <= _EPS * max(1.0, abs(f0))


def backtracking(
    phi: Phi,
    f0: float,
    slope0: float,
    t0: float = 1.0,
    c1: float = 1e-4,
    shrink: float = 0.5,
    max_evaluations: int = 40,
) -> LineSearchResult:
    """Backtracking (Armijo) line search, N&W Algorithm 3.1: t = t0, t0·ρ, t0·ρ², ... until sufficient decrease.

    A non-finite φ(t) counts as "too long" and shrinks the step too.
    """
    if not (0 < c1 < 1 and 0 < shrink < 1 and t0 > 0):
        raise ValueError(f"need 0 < c1 < 1, 0 < shrink < 1 and t0 > 0, got c1={c1}, shrink={shrink}, t0={t0}")
    failed = _check_start(f0, slope0)
    if failed is not None:
        return failed
    t = t0
    for n in range(1, max_evaluations + 1):
        f, s = phi(t)
        if sufficient_decrease(f, t, f0, slope0, c1):
            return LineSearchResult(t, f, s, n, OK)
        if _too_small(t, f0, slope0):
            return LineSearchResult(0.0, f0, slope0, n, NO_PROGRESS)
        t *= shrink
    return LineSearchResult(0.0, f0, slope0, max_evaluations, MAX_EVALUATIONS)


def cubic_minimizer(t1: float, f1: float, s1: float, t2: float, f2: float, s2: float, lo: float, hi: float) -> float:
    """Minimiser of the cubic matching φ and φ' at t1 and t2 (N&W eq. 3.59), clamped to [lo, hi].

    Falls back to the midpoint of [lo, hi] when the cubic has no minimiser there.
    """
    if t1 == t2 or not _finite(f1, s1, f2, s2):
        return 0.5 * (lo + hi)
    d1 = s1 + s2 - 3.0 * (f1 - f2) / (t1 - t2)
    radicand = d1 * d1 - s1 * s2
    if radicand < 0:
        return 0.5 * (lo + hi)
    d2 = math.copysign(math.sqrt(radicand), t2 - t1)
    denominator = s2 - s1 + 2.0 * d2
    if denominator == 0:
        return 0.5 * (lo + hi)
    t = t2 - (t2 - t1) * (s2 + d2 - d1) / denominator
    if not math.isfinite(t):
        return 0.5 * (lo + hi)
    return min(max(t, lo), hi)


def strong_wolfe(
    phi: Phi,
    f0: float,
    slope0: float,
    t0: float = 1.0,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evaluations: int = 25,
) -> LineSearchResult:
    """Line search for the strong Wolfe conditions: N&W Algorithm 3.5 (bracketing) and 3.6 (zoom).

    Brackets by extrapolation (cubic, between 1.01× and 10× the last step),
    then zooms by safeguarded cubic interpolation (trial kept inside the
    middle 80% of the bracket). A non-finite φ(t) counts as "too long".
    If the budget runs out, the best point with sufficient decrease found so
    far is returned (step > 0) with status MAX_EVALUATIONS.
    """
    if not (0 < c1 < c2 < 1 and t0 > 0):
        raise ValueError(f"need 0 < c1 < c2 < 1 and t0 > 0, got c1={c1}, c2={c2}, t0={t0}")
    failed = _check_start(f0, slope0)
    if failed is not None:
        return failed
    prev = (0.0, f0, slope0)  # (t, φ, φ') at the previous trial step
    t, n = t0, 0
    while n < max_evaluations:
        f, s = phi(t)
        n += 1
        if not _finite(f, s):
            return _zoom(phi, f0, slope0, prev, (t, math.inf, math.nan), c1, c2, n, max_evaluations)
        if not sufficient_decrease(f, t, f0, slope0, c1) or f >= prev[1]:  # the first prev is φ(0)
            return _zoom(phi, f0, slope0, prev, (t, f, s), c1, c2, n, max_evaluations)
        if abs(s) <= -c2 * slope0:
            return LineSearchResult(t, f, s, n, OK)
        if s >= 0:  # passed a minimum: it lies between t and the previous step
            return _zoom(phi, f0, slope0, (t, f, s), prev, c1, c2, n, max_evaluations)
        # still going downhill with a steep slope: extrapolate
        t_next = cubic_minimizer(prev[0], prev[1], prev[2], t, f, s, t + 0.01 * (t - prev[0]), 10.0 * t)
        prev, t = (t, f, s), t_next
    t_best, f_best, s_best = prev  # sufficient decrease holds at every accepted extrapolation point
    return LineSearchResult(t_best, f_best, s_best, n, MAX_EVALUATIONS)


def _zoom(phi, f0, slope0, lo, hi, c1, c2, n, max_evaluations) -> LineSearchResult:
    """N&W Algorithm 3.6. Invariants: lo satisfies sufficient decrease with the lowest φ seen;
    φ'(lo)·(hi − lo) < 0, so the bracket holds a strong-Wolfe point."""
    while n < max_evaluations:
        t_lo, f_lo, s_lo = lo
        t_hi, f_hi, s_hi = hi
        a, b = min(t_lo, t_hi), max(t_lo, t_hi)
        if _too_small(b - a, f0, slope0):
            return LineSearchResult(t_lo, f_lo, s_lo, n, NO_PROGRESS)
        margin = 0.1 * (b - a)
        t = cubic_minimizer(t_lo, f_lo, s_lo, t_hi, f_hi, s_hi, a + margin, b - margin)
        f, s = phi(t)
        n += 1
        if not _finite(f, s):
            hi = (t, math.inf, math.nan)
            continue
        if not sufficient_decrease(f, t, f0, slope0, c1) or f >= f_lo:
            hi = (t, f, s)
            continue
        if abs(s) <= -c2 * slope0:
            return LineSearchResult(t, f, s, n, OK)
        if s * (t_hi - t_lo) >= 0:
            hi = lo
        lo = (t, f, s)
    t_lo, f_lo, s_lo = lo
    return LineSearchResult(t_lo, f_lo, s_lo, n, MAX_EVALUATIONS)
