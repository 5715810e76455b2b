"""Line searches, checked by their defining conditions on a grid of one-dimensional functions.

Each function is φ(t) with its derivative; the searches see only `phi(t) -> (φ(t), φ'(t))`.
"""

import math

import numpy as np
import pytest

from nncli.optimizers import linesearch
from nncli.optimizers.linesearch import backtracking, cubic_minimizer, strong_wolfe


def quadratic(t):  # minimum at t = 2
    return (t - 2.0) ** 2, 2.0 * (t - 2.0)


def quartic(t):  # two wells; φ'(0) < 0
    return t**4 - 3.0 * t**2 - 2.0 * t, 4.0 * t**3 - 6.0 * t - 2.0


def logistic(t):  # softplus(3 - t/2) + t/50: convex, minimum near t = 12.4
    u = 3.0 - 0.5 * t
    softplus = max(u, 0.0) + math.log1p(math.exp(-abs(u)))
    sigmoid = 1.0 / (1.0 + math.exp(-u))
    return softplus + 0.02 * t, -0.5 * sigmoid + 0.02


def wavy(t):  # nonconvex: many local minima
    return -math.sin(3.0 * t) + 0.1 * t * t - t, -3.0 * math.cos(3.0 * t) + 0.2 * t - 1.0


def rosenbrock_ray(t):  # f(x + t·d) for Rosenbrock from (-1.2, 1) along -∇f
    x0 = np.array([-1.2, 1.0])

    def f(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, np.array(
            [-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)]
        )

    d = -f(x0)[1]
    value, grad = f(x0 + t * d)
    return value, float(grad @ d)


FUNCTIONS = {"quadratic": quadratic, "quartic": quartic, "logistic": logistic, "wavy": wavy, "rosenbrock": rosenbrock_ray}
FIRST_STEPS = [1e-6, 1e-3, 1.0, 10.0, 1e3]  # from far too short (extrapolation) to far too long (zoom)


def counted(phi):
    calls = []

    def wrapped(t):
        calls.append(t)
        return phi(t)

    return wrapped, calls


def armijo(phi, t, c1):
    f0, s0 = phi(0.0)
    return phi(t)[0] <= f0 + c1 * t * s0


@pytest.mark.parametrize("t0", FIRST_STEPS)
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("c1,c2", [(1e-4, 0.9), (1e-4, 0.1), (0.3, 0.4)])
def test_strong_wolfe_point_satisfies_both_conditions(name, t0, c1, c2):
    phi = FUNCTIONS[name]
    f0, s0 = phi(0.0)
    wrapped, calls = counted(phi)
    result = strong_wolfe(wrapped, f0, s0, t0=t0, c1=c1, c2=c2, max_evaluations=50)
    assert result.status == "ok", result
    assert result.step > 0
    assert armijo(phi, result.step, c1)
    assert abs(phi(result.step)[1]) <= c2 * abs(s0)
    # the result reports the values at its step, and counts its calls
    assert (result.value, result.slope) == phi(result.step)
    assert result.evaluations == len(calls)


@pytest.mark.parametrize("t0", FIRST_STEPS)
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_backtracking_point_satisfies_armijo(name, t0):
    phi = FUNCTIONS[name]
    f0, s0 = phi(0.0)
    result = backtracking(phi, f0, s0, t0=t0, c1=1e-4, shrink=0.5, max_evaluations=60)
    assert result.status == "ok"
    assert 0 < result.step <= t0
    assert armijo(phi, result.step, 1e-4)


def test_backtracking_takes_the_first_step_when_it_is_good_enough():
    f0, s0 = quadratic(0.0)
    result = backtracking(quadratic, f0, s0, t0=2.0)
    assert (result.step, result.evaluations) == (2.0, 1)


def test_backtracking_shrinks_geometrically():
    f0, s0 = quadratic(0.0)
    wrapped, calls = counted(quadratic)
    result = backtracking(wrapped, f0, s0, t0=64.0, shrink=0.5)
    assert calls == [64.0, 32.0, 16.0, 8.0, 4.0, 2.0]  # φ(4) = φ(0): 2 is the first with sufficient decrease
    assert result.step == 2.0


def test_strong_wolfe_accepts_an_exact_first_step_without_more_calls():
    f0, s0 = quadratic(0.0)
    result = strong_wolfe(quadratic, f0, s0, t0=2.0)
    assert (result.step, result.evaluations, result.status) == (2.0, 1, "ok")


def test_strong_wolfe_treats_non_finite_values_as_too_long():
    def phi(t):  # the quadratic, but overflowing past t = 3
        return quadratic(t) if t < 3 else (math.inf, math.nan)

    f0, s0 = phi(0.0)
    result = strong_wolfe(phi, f0, s0, t0=100.0, c2=0.1)
    assert result.ok and result.step < 3 and abs(phi(result.step)[1]) <= 0.1 * abs(s0)


def test_backtracking_treats_non_finite_values_as_too_long():
    def phi(t):
        return quadratic(t) if t < 3 else (math.nan, math.nan)

    f0, s0 = phi(0.0)
    result = backtracking(phi, f0, s0, t0=100.0)
    assert result.ok and result.step < 3


# -- failure modes: each a clear status, never an exception or a bogus step ----------------------
@pytest.mark.parametrize("search", [backtracking, strong_wolfe])
def test_not_a_descent_direction(search):
    wrapped, calls = counted(lambda t: (quadratic(-t)[0], -quadratic(-t)[1]))  # uphill along +t
    f0, s0 = wrapped(0.0)
    calls.clear()
    result = search(wrapped, f0, s0)
    assert (result.status, result.step, calls) == ("not_descent", 0.0, [])


@pytest.mark.parametrize("search", [backtracking, strong_wolfe])
@pytest.mark.parametrize("f0,s0", [(math.nan, -1.0), (1.0, math.inf), (math.inf, -1.0)])
def test_non_finite_start(search, f0, s0):
    result = search(quadratic, f0, s0)
    assert (result.status, result.step) == ("non_finite", 0.0)


@pytest.mark.parametrize("search", [backtracking, strong_wolfe])
def test_flat_function_reports_no_progress(search):
    # φ'(0) claims a descent direction but φ never goes down (e.g. at the limit of float precision)
    def phi(t):
        return 1.0, -1.0

    result = search(phi, 1.0, -1.0, max_evaluations=1000)
    assert (result.status, result.step) == ("no_progress", 0.0)
    assert result.evaluations < 200


def test_backtracking_runs_out_of_evaluations():
    f0, s0 = quadratic(0.0)
    result = backtracking(quadratic, f0, s0, t0=1e6, max_evaluations=3)
    assert (result.status, result.step, result.evaluations) == ("max_evaluations", 0.0, 3)


def test_strong_wolfe_out_of_evaluations_returns_the_best_decreasing_point():
    def phi(t):  # unbounded below: the curvature condition never holds
        return -t, -1.0

    result = strong_wolfe(phi, 0.0, -1.0, t0=1.0, max_evaluations=4)
    assert result.status == "max_evaluations"
    assert result.step > 1.0 and result.value == -result.step  # extrapolated, sufficient decrease holds
    assert result.evaluations == 4


def test_strong_wolfe_zoom_out_of_evaluations_keeps_sufficient_decrease():
    f0, s0 = wavy(0.0)
    result = strong_wolfe(wavy, f0, s0, t0=50.0, c1=1e-8, c2=1e-6, max_evaluations=3)
    assert result.status == "max_evaluations"
    assert result.step == 0.0 or armijo(wavy, result.step, 1e-4)
    assert result.step > 0 and armijo(wavy, result.step, 1e-8)  # it found one (t ≈ 8.4), by the c1 it ran with
    assert (result.value, result.slope) == wavy(result.step)


@pytest.mark.parametrize("search", [backtracking, strong_wolfe])
def test_a_step_is_the_last_trial_or_the_lowest_with_sufficient_decrease(search):
    # the convention minimisers rely on to keep only two trial points; small budgets make searches stop early
    returned_earlier = 0
    for name, phi in FUNCTIONS.items():
        for t0 in FIRST_STEPS:
            for c1, c2 in [(1e-4, 0.9), (1e-4, 0.1), (0.3, 0.4), (0.6, 0.7)]:
                for budget in (2, 3, 5, 50):
                    f0, s0 = phi(0.0)
                    wrapped, calls = counted(phi)
                    constants = {"c1": c1, "c2": c2} if search is strong_wolfe else {"c1": c1}
                    result = search(wrapped, f0, s0, t0=t0, max_evaluations=budget, **constants)
                    if result.step <= 0:
                        continue
                    decreasing = [t for t in calls if linesearch.sufficient_decrease(phi(t)[0], t, f0, s0, c1)]
                    lowest = min(decreasing, key=lambda t: phi(t)[0])
                    assert result.step in (calls[-1], lowest), (name, t0, c1, c2, budget, result)
                    returned_earlier += result.step != calls[-1]
    assert returned_earlier > 0 or search is backtracking  # the second case is exercised


@pytest.mark.parametrize("kwargs", [{"c1": 0.5, "c2": 0.4}, {"c1": 0.0}, {"c2": 1.0}, {"t0": 0.0}])
def test_strong_wolfe_rejects_bad_constants(kwargs):
    with pytest.raises(ValueError):
        strong_wolfe(quadratic, 4.0, -4.0, **kwargs)


def test_cubic_minimizer_is_exact_on_a_cubic_and_falls_back_to_the_midpoint():
    def cubic(t):  # φ = t³ - 3t: local minimum at t = 1
        return t**3 - 3 * t, 3 * t**2 - 3

    assert cubic_minimizer(0.0, *cubic(0.0), 2.0, *cubic(2.0), 0.0, 2.0) == pytest.approx(1.0, abs=1e-12)
    assert cubic_minimizer(0.0, *cubic(0.0), 2.0, *cubic(2.0), 1.5, 2.0) == 1.5  # clamped
    assert cubic_minimizer(0.0, 0.0, 1.0, 1.0, math.inf, math.nan, 0.0, 1.0) == 0.5  # no cubic: midpoint


@pytest.mark.parametrize("search", [backtracking, strong_wolfe])
def test_status_codes_are_distinct_and_each_reported_in_its_case(search):
    codes = [linesearch.OK, linesearch.NOT_DESCENT, linesearch.NON_FINITE, linesearch.NO_PROGRESS, linesearch.MAX_EVALUATIONS]
    assert len(set(codes)) == len(codes)
    f0, s0 = quadratic(0.0)
    if search is backtracking:
        out_of_budget = search(quadratic, f0, s0, t0=1e6, max_evaluations=3)
    else:
        out_of_budget = search(lambda t: (-t, -1.0), 0.0, -1.0, max_evaluations=4)
    cases = {
        linesearch.OK: search(quadratic, f0, s0, t0=2.0),
        linesearch.NOT_DESCENT: search(quadratic, f0, -s0),
        linesearch.NON_FINITE: search(quadratic, math.nan, s0),
        linesearch.NO_PROGRESS: search(lambda t: (1.0, -1.0), 1.0, -1.0, max_evaluations=1000),
        linesearch.MAX_EVALUATIONS: out_of_budget,
    }
    for code, result in cases.items():
        assert (result.status, result.ok) == (code, code == linesearch.OK)
