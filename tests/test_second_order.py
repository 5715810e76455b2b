"""Full-batch minimisers: textbook finite-termination properties, their safeguards, and Pima against scipy."""

from pathlib import Path

import numpy as np
import pytest

from nncli.errors import ConfigError
from nncli.optimizers import OPTIMIZERS, Minimizer
from nncli.optimizers.linesearch import LineSearchResult

REPO = Path(__file__).resolve().parent.parent

# name -> options for the runs below. Every registered minimiser must appear here.
CASES = {
    "newton": {},
    "bfgs": {},
    "dfp": {},
    "lbfgs": {"history_size": 5},
    "cg": {},
}


def minimizer_names():
    return [n for n in OPTIMIZERS.names() if issubclass(OPTIMIZERS.get(n), Minimizer)]


def test_every_minimizer_has_a_case():
    assert set(CASES) == set(minimizer_names())


def make(name, **options):
    return OPTIMIZERS.create({"type": name, **CASES[name], **options})


def spd_quadratic(n, seed=0, condition=50.0):
    """f(x) = ½xᵀAx - bᵀx with A symmetric positive definite (eigenvalues 1..condition); minimiser A⁻¹b."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = Q @ np.diag(np.linspace(1.0, condition, n)) @ Q.T
    b = rng.normal(size=n)

    def objective(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    return objective, np.linalg.solve(A, b), A


def rosenbrock(x):
    f = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    g = np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])
    return f, g


def exact_line_search(phi, f0, slope0, t0):
    """Exact minimiser of φ on a quadratic: φ' is linear, φ'(t) = φ'(0) + t·dᵀAd, so one more slope fixes it."""
    _, slope1 = phi(1.0)
    t = -slope0 / (slope1 - slope0)
    value, slope = phi(t)
    return LineSearchResult(t, value, slope, 2, "ok")


def run(opt, objective, x, iterations):
    f, g = objective(x)
    history = []
    for _ in range(iterations):
        result = opt.step(objective, x, f, g)
        x, f, g = result.theta, result.loss, result.grad
        history.append(result)
        if result.stop_reason:
            break
    return x, history


# -- finite termination on quadratics --------------------------------------------
def test_newton_solves_a_quadratic_in_one_step():
    objective, x_star, _ = spd_quadratic(6)
    opt = make("newton")
    x, history = run(opt, objective, np.zeros(6), 1)
    assert np.max(np.abs(x - x_star)) < 1e-8
    assert history[0].step_size == 1.0  # the full Newton step, accepted at once
    assert history[0].gradient_evaluations == 2 * 6 + 1  # 2P Hessian columns + one line-search trial
    assert opt.last_shift == 0.0  # positive definite: no damping


@pytest.mark.parametrize("name", ["bfgs", "dfp", "cg", "lbfgs"])
@pytest.mark.parametrize("n", [2, 6, 9])
def test_exact_line_search_minimises_an_n_dimensional_quadratic_in_n_iterations(name, n):
    objective, x_star, _ = spd_quadratic(n, seed=n)
    opt = make(name, tolerance_grad=0.0, tolerance_change=0.0)
    opt.line_search = exact_line_search
    x0 = np.random.default_rng(n).normal(size=n)
    x_before, _ = run(opt, objective, x0, n - 1)
    assert np.max(np.abs(x_before - x_star)) > 1e-4  # not done after n - 1 iterations ...
    opt = make(name, tolerance_grad=0.0, tolerance_change=0.0)
    opt.line_search = exact_line_search
    x, history = run(opt, objective, x0, n)
    assert len(history) == n
    assert np.max(np.abs(x - x_star)) < 1e-8  # ... and exactly there after n


def test_bfgs_inverse_hessian_approaches_the_true_inverse_on_a_quadratic():
    # with exact line searches H_n = A⁻¹ (N&W Theorem 6.4 for quadratics)
    objective, _, A = spd_quadratic(5, seed=3)
    for name in ("bfgs", "dfp"):
        opt = make(name, tolerance_grad=0.0, tolerance_change=0.0)
        opt.line_search = exact_line_search
        run(opt, objective, np.ones(5), 5)
        np.testing.assert_allclose(opt.H, np.linalg.inv(A), atol=1e-8)


def test_lbfgs_two_loop_recursion_equals_the_materialised_bfgs_matrix():
    rng = np.random.default_rng(0)
    n, m = 7, 4
    opt = make("lbfgs", history_size=m)
    pairs = []
    for _ in range(m + 2):  # more pairs than it keeps: only the last m count
        s = rng.normal(size=n)
        y = s + 0.3 * rng.normal(size=n)  # yᵀs > 0
        opt.update(s, y, None, None, 1.0, -1.0)
        pairs.append((s, y))
    kept = pairs[-m:]
    s_last, y_last = kept[-1]
    H = (s_last @ y_last) / (y_last @ y_last) * np.eye(n)
    for s, y in kept:  # explicit BFGS updates from H0 = γI
        rho = 1.0 / (y @ s)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    g = rng.normal(size=n)
    np.testing.assert_allclose(opt.apply_inverse_hessian(g), H @ g, rtol=1e-10)


def rosenbrock_hessian(x):
    return np.array([[2 - 400 * (x[1] - x[0] ** 2) + 800 * x[0] ** 2, -400 * x[0]], [-400 * x[0], 200.0]])


def test_newton_finite_difference_hessian_is_accurate_and_exactly_symmetric():
    opt = make("newton")

    def skewed(x):  # a non-quadratic function with a nonzero mixed third derivative, in 3-D
        f = np.exp(x[0] * x[1]) + x[1] ** 3 * x[2] + np.sin(x[2])
        g = np.array([x[1] * np.exp(x[0] * x[1]), x[0] * np.exp(x[0] * x[1]) + 3 * x[1] ** 2 * x[2], x[1] ** 3 + np.cos(x[2])])
        return f, g

    x = np.array([0.3, -1.2, 2.5])
    H = opt.hessian(skewed, x)
    e = np.exp(x[0] * x[1])
    exact = np.array(
        [
            [x[1] ** 2 * e, e + x[0] * x[1] * e, 0.0],
            [e + x[0] * x[1] * e, x[0] ** 2 * e + 6 * x[1] * x[2], 3 * x[1] ** 2],
            [0.0, 3 * x[1] ** 2, -np.sin(x[2])],
        ]
    )
    np.testing.assert_allclose(H, exact, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(H, H.T)
    np.testing.assert_allclose(opt.hessian(rosenbrock, np.array([-1.2, 1.0])), rosenbrock_hessian([-1.2, 1.0]), rtol=1e-8)


@pytest.mark.parametrize("name", ["bfgs", "dfp"])
def test_first_update_starts_from_the_scaled_identity(name):
    # N&W eq. 6.20: H0 = (yᵀs / yᵀy)·I just before the first update
    s, y = np.array([1.0, 2.0, -1.0]), np.array([3.0, 1.0, 0.5])
    opt = make(name)
    opt.update(s, y, None, None, 1.0, -1.0)
    H0 = (y @ s) / (y @ y) * np.eye(3)
    if name == "bfgs":
        V = np.eye(3) - np.outer(y, s) / (y @ s)
        expected = V.T @ H0 @ V + np.outer(s, s) / (y @ s)
    else:
        Hy = H0 @ y
        expected = H0 - np.outer(Hy, Hy) / (y @ Hy) + np.outer(s, s) / (y @ s)
    np.testing.assert_allclose(opt.H, expected, rtol=1e-12)
    np.testing.assert_allclose(opt.H @ y, s, rtol=1e-12)  # the secant equation


@pytest.mark.parametrize("name", ["bfgs", "dfp"])
def test_inverse_hessian_updates_keep_h_exactly_symmetric(name):
    # the update formulas are sums of symmetric terms, so H needs no symmetrising after each update
    def extended_rosenbrock(x):
        a, b = x[0::2], x[1::2]
        g = np.empty_like(x)
        g[0::2], g[1::2] = -400 * a * (b - a * a) - 2 * (1 - a), 200 * (b - a * a)
        return float(np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)), g

    opt = make(name, tolerance_grad=1e-10, tolerance_change=0.0)
    x = np.tile([-1.2, 1.0], 5)
    f, g = extended_rosenbrock(x)
    for _ in range(60):
        result = opt.step(extended_rosenbrock, x, f, g)
        if result.stop_reason:
            break
        x, f, g = result.theta, result.loss, result.grad
        np.testing.assert_array_equal(opt.H, opt.H.T)
    assert opt.iterations > 20


def test_dfp_restarts_from_the_scaled_identity_when_h_is_not_positive_definite():
    s, y = np.array([1.0, 2.0, -1.0]), np.array([3.0, 1.0, 0.5])
    fresh = make("dfp")
    fresh.update(s, y, None, None, 1.0, -1.0)  # from the scaled identity
    broken = make("dfp")
    broken.H = -np.eye(3)  # yᵀHy < 0
    broken.update(s, y, None, None, 1.0, -1.0)
    np.testing.assert_array_equal(broken.H, fresh.H)
    np.testing.assert_allclose(broken.H @ y, s, rtol=1e-12)


@pytest.mark.parametrize("name", ["bfgs", "dfp", "lbfgs", "cg"])
def test_a_failed_line_search_is_retried_once_along_steepest_descent(name):
    from nncli.optimizers.linesearch import strong_wolfe

    calls = []

    def fails_first(phi, f0, slope0, t0):
        calls.append(slope0)
        if len(calls) == 1:
            return LineSearchResult(0.0, f0, slope0, 0, "max_evaluations")
        return strong_wolfe(phi, f0, slope0, t0)

    opt = make(name)
    x = np.array([-1.2, 1.0])
    first = opt.step(rosenbrock, x, *rosenbrock(x))  # some curvature memory first
    opt.line_search = fails_first
    restarts = opt.restarts
    f, g = first.loss, first.grad
    retried = opt.step(rosenbrock, first.theta, f, g)
    assert len(calls) == 2 and opt.restarts == restarts + 1
    assert calls[1] == pytest.approx(-(g @ g))  # the retry went along -∇f
    assert retried.step_size > 0 and retried.loss < f and retried.stop_reason is None


def test_a_search_stopping_at_an_earlier_trial_costs_no_extra_evaluation():
    # f = -x + x²/10 from 0 with c1 = 0.6: t = 1 has sufficient decrease, the extrapolated t = 5 is lower but
    # fails it, and with no budget left the search returns t = 1, the minimiser must still have its point
    from functools import partial

    from nncli.optimizers.linesearch import strong_wolfe

    calls = []

    def f(x):
        calls.append(x.copy())
        return float(-x[0] + 0.1 * x[0] ** 2), np.array([-1.0 + 0.2 * x[0]])

    opt = make("bfgs", c1=0.6, c2=0.7)
    opt.line_search = partial(strong_wolfe, c1=0.6, c2=0.7, max_evaluations=2)
    result = opt.step(f, np.zeros(1), *f(np.zeros(1)))
    calls.pop(0)
    assert [float(x[0]) for x in calls] == [1.0, pytest.approx(5.0)]  # the trials: the search ran out at the second
    assert (result.step_size, result.loss, result.gradient_evaluations) == (1.0, -0.9, 2)
    np.testing.assert_array_equal(result.grad, [-0.8])


# -- safeguards ------------------------------------------------------------------------
def test_newton_damps_an_indefinite_hessian_into_a_descent_direction():
    def saddle(x):  # f = x² - y² + y⁴/4: indefinite at the start, minima at y = ±√2
        return x[0] ** 2 - x[1] ** 2 + x[1] ** 4 / 4, np.array([2 * x[0], -2 * x[1] + x[1] ** 3])

    opt = make("newton")
    x0 = np.array([1.0, 0.1])
    result = opt.step(saddle, x0, *saddle(x0))
    assert opt.last_shift > 0  # H = diag(2, -1.97) needed a shift
    assert result.loss < saddle(x0)[0]
    x, history = run(make("newton"), saddle, x0, 30)
    np.testing.assert_allclose(x, [0.0, np.sqrt(2.0)], atol=1e-6)


def test_newton_shift_makes_the_matrix_positive_definite():
    opt = make("newton")
    for H in (np.diag([2.0, -3.0]), np.array([[0.0, 1.0], [1.0, 0.0]]), np.zeros((3, 3))):
        tau = opt.positive_definite_shift(H)
        assert np.linalg.eigvalsh(H + tau * np.eye(len(H))).min() > 0
    assert opt.positive_definite_shift(np.diag([1.0, 2.0])) == 0.0


@pytest.mark.parametrize("name", ["bfgs", "dfp", "lbfgs"])
def test_quasi_newton_skips_an_update_that_fails_the_curvature_condition(name):
    opt = make(name)
    s, y = np.array([1.0, 0.0]), np.array([-1.0, 0.5])  # yᵀs < 0
    opt.update(s, y, None, None, 1.0, -1.0)
    assert opt.skipped_updates == 1
    assert (opt.H is None) if name != "lbfgs" else (opt.s == [])


@pytest.mark.parametrize("name", sorted(CASES))
def test_rosenbrock_from_the_textbook_start(name):
    # nonconvex, badly scaled: N&W's standard test, from (-1.2, 1)
    opt = make(name, tolerance_grad=1e-8, tolerance_change=0.0)
    x, history = run(opt, rosenbrock, np.array([-1.2, 1.0]), 400)
    assert history[-1].stop_reason == "gradient_tolerance", history[-1]
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-6)
    losses = [rosenbrock(np.array([-1.2, 1.0]))[0]] + [h.loss for h in history]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # every iteration lowers f (the line search's job)


@pytest.mark.parametrize("name", sorted(CASES))
def test_stops_at_once_on_a_small_gradient(name):
    objective, x_star, _ = spd_quadratic(3)
    result = make(name).step(objective, x_star, *objective(x_star))
    assert (result.stop_reason, result.gradient_evaluations) == ("gradient_tolerance", 0)
    assert result.converged


@pytest.mark.parametrize("name", sorted(CASES))
def test_reports_a_failed_line_search_instead_of_a_fake_convergence(name):
    objective, _, _ = spd_quadratic(3)

    def wrong_gradient(x):  # the gradient's sign is flipped: no step along "-∇f" lowers f
        f, g = objective(x)
        return f, -g

    x0 = np.ones(3)
    result = make(name).step(wrong_gradient, x0, *wrong_gradient(x0))
    assert result.stop_reason.startswith("line_search_failed (")
    assert not result.converged
    np.testing.assert_array_equal(result.theta, x0)  # no step taken


def test_loss_change_rule():
    objective, x_star, _ = spd_quadratic(3)
    opt = make("bfgs", tolerance_grad=0.0, tolerance_change=1e-3)
    x, history = run(opt, objective, x_star + 1e-2, 50)
    assert history[-1].stop_reason == "change_tolerance"


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip_continues_identically(name):
    x0 = np.array([-1.2, 1.0])
    a = make(name)
    (x1, history) = run(a, rosenbrock, x0, 3)
    b = make(name)
    b.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.state_dict().items()})
    xa, ha = run(a, rosenbrock, x1, 4)
    xb, hb = run(b, rosenbrock, x1, 4)
    np.testing.assert_array_equal(xa, xb)
    assert [h.loss for h in ha] == [h.loss for h in hb]


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_parameters(name):
    # the trainer hands over the model's θ; maths runs in float64, the objective casts back
    def objective32(x):
        x32 = np.asarray(x, np.float32)
        f, g = rosenbrock(x32.astype(np.float64))
        return np.float32(f).item(), g.astype(np.float32)

    opt = make(name, tolerance_grad=1e-3)
    x, history = run(opt, objective32, np.array([-1.2, 1.0], np.float32), 200)
    assert history[-1].converged, history[-1]
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-2)


# -- the memory guard -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["newton", "bfgs", "dfp"])
def test_dense_methods_refuse_large_models_naming_the_memory(name):
    opt = make(name)
    opt.check_size(5000)  # at the limit: fine
    with pytest.raises(ConfigError) as info:
        opt.check_size(13_002)
    message = str(info.value)
    assert f"{name} needs a 13,002×13,002" in message and "(1.35 GB)" in message
    assert "max_parameters=5,000" in message and "cg or lbfgs" in message
    with pytest.raises(ConfigError):  # also when called without the check, at the first step
        opt.step(lambda x: (0.0, x), np.zeros(5001), 0.0, np.ones(5001))


@pytest.mark.parametrize("name", ["lbfgs", "cg"])
def test_limited_memory_methods_have_no_size_limit(name):
    make(name).check_size(10**8)


def test_bad_line_search_constants_are_config_errors():
    with pytest.raises(ConfigError, match="c1 < c2"):
        OPTIMIZERS.create({"type": "bfgs", "c1": 0.5, "c2": 0.1}, ("optimizer",))
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\)"):
        OPTIMIZERS.create({"type": "cg", "c2": 1.0}, ("optimizer",))
    with pytest.raises(ConfigError, match="Did you mean 'history_size'"):
        OPTIMIZERS.create({"type": "lbfgs", "history": 3}, ("optimizer",))


# -- Pima logistic regression against an independent solution --------------------------------
@pytest.fixture(scope="module")
def pima():
    """The Pima training objective as nncli builds it (float64), plus the same data for scipy."""
    import os

    from nncli.experiment import load_experiment
    from nncli.objective import full_batch_objective

    cwd = os.getcwd()
    os.chdir(REPO)  # the config's data path is relative to the repository
    try:
        experiment = load_experiment(REPO / "configs" / "pima.yaml")
        data = experiment.data.load(experiment.seeds("data"))
    finally:
        os.chdir(cwd)
    model = experiment.build_model(data.input_shape, data.num_classes, dtype="float64")
    model.initialize(np.random.default_rng(experiment.seeds("init")))
    objective = full_batch_objective(model, experiment.loss, data.train.x, data.train.y)
    return objective, model.theta.copy(), data.train.x.astype(np.float64), data.train.y.astype(np.float64)


def logistic_loss(w, X, y):
    """Mean binary cross-entropy of sigmoid(Xw[:-1] + w[-1]), written independently of nncli."""
    z = X @ w[:-1] + w[-1]
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    r = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
    return loss, np.append(X.T @ r, r.sum())


@pytest.fixture(scope="module")
def scipy_minimum(pima):
    optimize = pytest.importorskip("scipy.optimize")
    _, theta0, X, y = pima
    solution = optimize.minimize(logistic_loss, np.zeros(X.shape[1] + 1), args=(X, y), jac=True, method="BFGS", options={"gtol": 1e-11})
    assert np.max(np.abs(solution.jac)) < 1e-8, solution
    return solution.fun, solution.x


def test_pima_objective_matches_the_independent_formula(pima):
    objective, theta0, X, y = pima
    f, g = objective(theta0)  # θ = [W (8, 1) flattened, b]: the same layout as w above
    f_ref, g_ref = logistic_loss(theta0, X, y)
    assert f == pytest.approx(f_ref, rel=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pima_minimum_matches_scipy(name, pima, scipy_minimum):
    objective, theta0, _, _ = pima
    f_ref, w_ref = scipy_minimum
    x, history = run(make(name), objective, theta0.copy(), 100)  # default options
    assert history[-1].converged, history[-1]
    assert abs(history[-1].loss - f_ref) <= 1e-6
    np.testing.assert_allclose(x, w_ref, atol=1e-3)
    if name == "newton":
        assert len(history) <= 15
    # loss-change rule off, gradient rule beyond what f can resolve (a step of |∇f|²/λ ≈ 1e-18 is below
    # f's rounding): the run ends when the line search can no longer lower f, as close as float64 allows
    x, history = run(make(name, tolerance_grad=1e-10, tolerance_change=0.0), objective, theta0.copy(), 200)
    assert history[-1].stop_reason in ("gradient_tolerance", "line_search_failed (no_progress)"), history[-1]
    assert np.max(np.abs(history[-1].grad)) < 1e-7
    assert abs(history[-1].loss - f_ref) <= 1e-13
    np.testing.assert_allclose(x, w_ref, atol=1e-6)
