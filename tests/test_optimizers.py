"""First-order optimizers: the first steps against values computed by hand, element by element.

The reference rules below are written independently, in scalar Python, from
the conventions stated in each optimizer's docstring.
"""

import math
import tracemalloc

import numpy as np
import pytest

from nncli.optimizers import OPTIMIZERS, Minimizer

THETA0 = [1.0, 2.0, 3.0, 4.0]
GRADS = [[1.0, 6.0, 7.0, 2.0], [0.5, -3.0, 2.0, -1.0], [-2.0, 1.0, 0.25, 4.0]]


def per_element(rule):
    """Turn `rule(theta_i, grads_i)`, a generator of one coordinate's values after each step, into a reference
    run over whole vectors: the optimizers are elementwise, so each coordinate is simulated on its own."""

    def run(theta, grads):
        columns = [list(rule(t, [g[i] for g in grads])) for i, t in enumerate(theta)]
        return [list(step) for step in zip(*columns)]

    return run


def reference_gd(o):
    def rule(x, gs):
        for g in gs:
            x -= o["learning_rate"] * g
            yield x

    return per_element(rule)


def reference_momentum(o, nesterov=False):
    lr, mu = o["learning_rate"], o["momentum"]

    def rule(x, gs):
        v = 0.0
        for g in gs:
            v = mu * v + g
            x -= lr * (g + mu * v if nesterov else v)
            yield x

    return per_element(rule)


def reference_adagrad(o):
    lr, eps = o["learning_rate"], o["epsilon"]

    def rule(x, gs):
        acc = o["initial_accumulator_value"]
        for g in gs:
            acc += g * g
            x -= lr * g / (math.sqrt(acc) + eps)
            yield x

    return per_element(rule)


def reference_adadelta(o):
    lr, rho, eps = o["learning_rate"], o["rho"], o["epsilon"]

    def rule(x, gs):
        eg = ed = 0.0
        for g in gs:
            eg = rho * eg + (1 - rho) * g * g
            delta = math.sqrt(ed + eps) / math.sqrt(eg + eps) * g
            ed = rho * ed + (1 - rho) * delta * delta
            x -= lr * delta
            yield x

    return per_element(rule)


def reference_rmsprop(o):
    lr, rho, eps = o["learning_rate"], o["rho"], o["epsilon"]

    def rule(x, gs):
        v = 0.0
        for g in gs:
            v = rho * v + (1 - rho) * g * g
            x -= lr * g / (math.sqrt(v) + eps)
            yield x

    return per_element(rule)


def reference_adam(o, decoupled=0.0):
    lr, b1, b2, eps = (o[k] for k in ("learning_rate", "beta_1", "beta_2", "epsilon"))

    def rule(x, gs):
        m = v = 0.0
        for t, g in enumerate(gs, start=1):
            x *= 1 - lr * decoupled
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            x -= lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
            yield x

    return per_element(rule)


# name -> (options, reference). Every registered first-order optimizer must appear here.
CASES = {
    "gd": ({"learning_rate": 0.1}, reference_gd),
    "sgd": ({"learning_rate": 0.05}, reference_gd),
    "momentum": ({"learning_rate": 0.05, "momentum": 0.9}, reference_momentum),
    "nesterov": ({"learning_rate": 0.05, "momentum": 0.8}, lambda o: reference_momentum(o, nesterov=True)),
    "adagrad": ({"learning_rate": 0.1, "epsilon": 1e-10, "initial_accumulator_value": 0.1}, reference_adagrad),
    "adadelta": ({"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}, reference_adadelta),
    "rmsprop": ({"learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-8}, reference_rmsprop),
    "adam": ({"learning_rate": 0.5, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}, reference_adam),
    "adamw": (
        {"learning_rate": 0.5, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.1},
        lambda o: reference_adam(o, decoupled=o["weight_decay"]),
    ),
}


def first_order_names():
    return [n for n in OPTIMIZERS.names() if not issubclass(OPTIMIZERS.get(n), Minimizer)]


def test_every_first_order_optimizer_has_a_closed_form_test():
    assert set(CASES) == set(first_order_names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_first_steps_match_hand_computed_values(name):
    options, reference = CASES[name]
    opt = OPTIMIZERS.create({"type": name, **options})
    theta = np.array(THETA0)
    expected = reference(options)(THETA0, GRADS)
    for g, want in zip(GRADS, expected):
        opt.step(theta, np.array(g), options["learning_rate"])
        np.testing.assert_allclose(theta, want, rtol=1e-12, atol=1e-12)


def test_adam_first_step_is_lr_times_sign():
    # Kingma & Ba: the first bias-corrected step has magnitude lr whatever the gradient's scale
    opt = OPTIMIZERS.create({"type": "adam", "learning_rate": 0.5})
    theta = np.array([1.0, 2.0, 3.0, 4.0])
    opt.step(theta, np.array([1.0, -6.0, 7.0, -2.0]), 0.5)
    np.testing.assert_allclose(theta, [0.5, 2.5, 2.5, 4.5], atol=1e-7)


def test_rmsprop_first_step_closed_form():
    opt = OPTIMIZERS.create({"type": "rmsprop", "learning_rate": 0.01, "rho": 0.9})
    theta = np.zeros(2)
    opt.step(theta, np.array([3.0, -0.2]), 0.01)
    np.testing.assert_allclose(theta, [-0.01 / math.sqrt(0.1), 0.01 / math.sqrt(0.1)], rtol=1e-6)


def test_momentum_two_steps_by_hand():
    opt = OPTIMIZERS.create({"type": "momentum", "learning_rate": 0.1, "momentum": 0.9})
    theta = np.array([1.0])
    opt.step(theta, np.array([1.0]), 0.1)  # v = 1, θ = 1 - 0.1
    assert theta[0] == pytest.approx(0.9)
    opt.step(theta, np.array([1.0]), 0.1)  # v = 0.9 + 1 = 1.9, θ = 0.9 - 0.19
    assert theta[0] == pytest.approx(0.71)


def test_momentum_takes_each_steps_rate_outside_the_velocity():
    """v ← μ·v + g; θ ← θ − lr·v with the rate of each step (a schedule's): the velocity carries no old rate.

    At one constant rate this equals Keras' v ← μ·v − lr·g; θ ← θ + v, so only a changing rate tells them apart.
    """
    opt = OPTIMIZERS.create({"type": "momentum", "learning_rate": 0.1, "momentum": 0.9})
    theta = np.array([1.0, -2.0])
    opt.step(theta, np.array([1.0, 0.5]), 0.1)  # v = (1, 0.5); θ = (1 - 0.1, -2 - 0.05)
    np.testing.assert_allclose(theta, [0.9, -2.05], rtol=1e-12)
    opt.step(theta, np.array([2.0, -1.0]), 0.5)  # v = 0.9·(1, 0.5) + (2, -1) = (2.9, -0.55); θ -= 0.5·v
    np.testing.assert_allclose(theta, [-0.55, -1.775], rtol=1e-12)  # Keras' rule would give (-0.19, -1.595)


def test_float32_stays_float32():
    for name in CASES:
        opt = OPTIMIZERS.create(name)
        theta = np.ones(3, np.float32)
        opt.step(theta, np.full(3, 0.5, np.float32), 0.01)
        assert theta.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state_dict().values() if isinstance(v, np.ndarray))
        buffers = [v for v in vars(opt).values() if isinstance(v, np.ndarray)] + list(getattr(opt, "_slot", {}).values())
        assert all(v.dtype == np.float32 for v in buffers), name  # slots and scratch follow θ
    # hyperparameters are plain Python numbers, whatever the spec held: an np.float64 would be a "strong"
    # scalar under NumPy's promotion rules and silently turn float32 arithmetic into float64
    for name in OPTIMIZERS.names():
        for spec in ({"type": name}, {"type": name, "learning_rate": 1}, {"type": name, "learning_rate": np.float64(0.5)}):
            opt = OPTIMIZERS.create(spec)
            options = {k: getattr(opt, k) for k in opt.spec if k != "type"}
            assert all(type(v) in (float, int, type(None)) for v in options.values()), (name, options)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_step_allocates_no_parameter_sized_temporaries(name):
    # updates run in place on preallocated slot and scratch arrays: after the first step (which makes them), a step
    # allocates nothing of θ's size, in particular no float64 copy of a float32 θ
    rng = np.random.default_rng(0)
    theta = rng.normal(size=100_000).astype(np.float32)
    grad = rng.normal(size=100_000).astype(np.float32)
    opt = OPTIMIZERS.create(name)
    opt.step(theta, grad, 0.01)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        opt.step(theta, grad, 0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not tracing:
            tracemalloc.stop()
    assert peak - before < theta.nbytes // 4, f"{name} allocated {peak - before:,} bytes in one step"
    assert theta.dtype == np.float32


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip_continues_identically(name):
    options, _ = CASES[name]
    a = OPTIMIZERS.create({"type": name, **options})
    theta_a = np.array(THETA0)
    a.step(theta_a, np.array(GRADS[0]), options["learning_rate"])
    b = OPTIMIZERS.create({"type": name, **options})
    b.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.state_dict().items()})
    theta_b = theta_a.copy()
    for g in GRADS[1:]:
        a.step(theta_a, np.array(g), options["learning_rate"])
        b.step(theta_b, np.array(g), options["learning_rate"])
    np.testing.assert_array_equal(theta_a, theta_b)


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"type": "adam", "learning_rate": -1.0}, "must be > 0"),
        ({"type": "adam", "beta_1": 1.0}, "must be in [0, 1)"),
        ({"type": "momentum", "momentum": 1.5}, "must be in [0, 1)"),
        ({"type": "sgd", "learning_rte": 0.1}, "Did you mean 'learning_rate'"),
        ({"type": "adma"}, "Did you mean 'adam'"),
    ],
)
def test_bad_hyperparameters_are_config_errors(spec, message):
    from nncli.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        OPTIMIZERS.create(spec, ("optimizer",))
