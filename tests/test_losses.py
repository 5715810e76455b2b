"""Losses: finite-difference gradients, stability, values, and the output/class checks."""

import numpy as np
import pytest
from helpers import numeric_grad, rel_error

from nncli.losses import LOSSES

rng = np.random.default_rng(0)

# name -> (outputs, integer targets; float (N, T) target values for the regression-only losses).
# Every registered loss must appear here.
CASES = {
    "cross_entropy": (rng.normal(size=(5, 4)) * 3, rng.integers(0, 4, 5)),
    "binary_cross_entropy": (rng.normal(size=(6, 1)) * 3, rng.integers(0, 2, 6)),
    "mse": (rng.normal(size=(5, 3)), rng.integers(0, 3, 5)),
    "mae": (rng.normal(size=(5, 2)), rng.normal(size=(5, 2)).astype(np.float32)),
    "huber": (rng.normal(size=(7, 2)) * 2, rng.normal(size=(7, 2)).astype(np.float32)),  # both sides of delta = 1
}
REGRESSION_ONLY = {"mae", "huber"}
# regression targets for every loss that takes them: (outputs, float (N, T) targets)
REGRESSION_CASES = {
    "mse": (rng.normal(size=(6, 2)), rng.normal(size=(6, 2)).astype(np.float32)),
    "mse-one-target": (rng.normal(size=(6, 1)), rng.normal(size=(6, 1)).astype(np.float32)),
    "mae": CASES["mae"],
    "huber": CASES["huber"],
    "huber-delta-0.3": (rng.normal(size=(8, 3)), rng.normal(size=(8, 3)).astype(np.float32)),
}


def test_every_loss_has_a_gradient_check():
    assert set(CASES) == set(LOSSES.names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_gradient_matches_finite_differences(name):
    loss = LOSSES.create(name)
    outputs, targets = (a.copy() for a in CASES[name])
    loss.forward(outputs, targets)
    analytic = loss.backward().copy()
    numeric = numeric_grad(lambda: loss.forward(outputs, targets), outputs)
    assert rel_error(analytic, numeric) < 1e-6


def test_mse_with_one_output_uses_the_label_as_target():
    loss = LOSSES.create("mse")
    outputs, targets = np.array([[0.2], [0.9]]), np.array([0, 1])
    assert loss.forward(outputs, targets) == pytest.approx((0.2**2 + 0.1**2) / 2)
    numeric = numeric_grad(lambda: loss.forward(outputs, targets), outputs)
    loss.forward(outputs, targets)
    assert rel_error(loss.backward(), numeric) < 1e-6


def test_mse_with_one_output_gives_two_class_probabilities_thresholded_at_half():
    loss = LOSSES.create("mse")
    outputs = np.array([[-0.3], [0.2], [0.5], [0.7], [1.4]])
    np.testing.assert_allclose(loss.probabilities(outputs), [[1.0, 0.0], [0.8, 0.2], [0.5, 0.5], [0.3, 0.7], [0.0, 1.0]])
    np.testing.assert_array_equal(loss.predictions(outputs), [0, 0, 0, 1, 1])


def test_cross_entropy_value_and_stability():
    loss = LOSSES.create("cross_entropy")
    logits = np.array([[1.0, 2.0, 3.0]])
    expected = -np.log(np.exp(1.0) / np.exp([1.0, 2.0, 3.0]).sum())
    assert loss.forward(logits, np.array([0])) == pytest.approx(expected)
    huge = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], np.float32)
    assert loss.forward(huge, np.array([0, 1])) == pytest.approx(0.0, abs=1e-6)
    assert loss.forward(huge, np.array([1, 1])) == pytest.approx(1000.0)
    assert np.isfinite(loss.backward()).all()


def test_binary_cross_entropy_value_and_stability():
    loss = LOSSES.create("binary_cross_entropy")
    z = np.array([[0.0], [2.0]])
    expected = (np.log(2) + np.log1p(np.exp(-2.0))) / 2
    assert loss.forward(z, np.array([1, 1])) == pytest.approx(expected)
    assert loss.forward(np.array([[800.0], [-800.0]]), np.array([0, 1])) == pytest.approx(800.0)
    assert np.isfinite(loss.backward()).all()


def test_probabilities_and_predictions_agree():
    one_output = np.array([[-0.3], [0.2], [0.5], [0.7], [1.4]])  # mse on two classes: the single-output branch
    for name, (outputs, _) in [*((n, c) for n, c in CASES.items() if n not in REGRESSION_ONLY), ("mse", (one_output, None))]:
        loss = LOSSES.create(name)
        p = loss.probabilities(outputs)
        assert p.shape == (len(outputs), max(2, outputs.shape[1]))
        np.testing.assert_array_equal(np.argmax(p, axis=1), loss.predictions(outputs))
        if name != "mse":
            np.testing.assert_allclose(p.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "name,shape,classes,ok",
    [
        ("cross_entropy", (10,), 10, True),
        ("cross_entropy", (9,), 10, False),
        ("cross_entropy", (1,), 2, False),
        ("binary_cross_entropy", (1,), 2, True),
        ("binary_cross_entropy", (2,), 2, False),
        ("binary_cross_entropy", (1,), 3, False),
        ("mse", (3,), 3, True),
        ("mse", (1,), 2, True),
        ("mse", (2,), 3, False),
    ],
)
def test_output_shape_checks(name, shape, classes, ok):
    loss = LOSSES.create(name)
    if ok:
        loss.check(shape, classes)
    else:
        with pytest.raises(ValueError):
            loss.check(shape, classes)


def _regression_loss(case: str):
    name, _, option = case.partition("-")
    return LOSSES.create({"type": "huber", "delta": 0.3} if option == "delta-0.3" else name)


@pytest.mark.parametrize("case", sorted(REGRESSION_CASES))
def test_regression_loss_gradient_matches_finite_differences(case):
    loss = _regression_loss(case)
    outputs, targets = (a.copy() for a in REGRESSION_CASES[case])
    loss.forward(outputs, targets)
    analytic = loss.backward().copy()
    numeric = numeric_grad(lambda: loss.forward(outputs, targets), outputs)
    assert rel_error(analytic, numeric) < 1e-6


def test_regression_loss_values_are_means_over_samples_and_targets():
    outputs = np.array([[1.0, 0.0], [3.0, -2.0]])
    targets = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)  # differences 1, 0, 2, -3
    assert LOSSES.create("mse").forward(outputs, targets) == pytest.approx((1 + 0 + 4 + 9) / 4)
    assert LOSSES.create("mae").forward(outputs, targets) == pytest.approx((1 + 0 + 2 + 3) / 4)
    # huber, delta 1: ½·1, 0, 1·(2 − ½), 1·(3 − ½)
    assert LOSSES.create("huber").forward(outputs, targets) == pytest.approx((0.5 + 0 + 1.5 + 2.5) / 4)
    # delta 3: all quadratic, half the mse
    assert LOSSES.create({"type": "huber", "delta": 3.0}).forward(outputs, targets) == pytest.approx((1 + 0 + 4 + 9) / 8)


def test_mse_keeps_one_hot_classes_for_integer_labels():
    loss = LOSSES.create("mse")
    outputs = np.array([[0.5, 0.5], [0.0, 1.0]])
    assert loss.forward(outputs, np.array([0, 1])) == pytest.approx((0.25 + 0.25) / 4)
    assert loss.forward(outputs, np.array([[0.5, 0.5], [0.0, 1.0]], np.float32)) == 0.0  # values: a regression


@pytest.mark.parametrize(
    "name,shape,targets,ok,fragment",
    [
        ("mse", (1,), 1, True, ""),
        ("mae", (3,), 3, True, ""),
        ("huber", (2,), 2, True, ""),
        ("mse", (3,), 1, False, "the last layer has output shape (3,) but the data has 1 target column"),
        ("huber", (1,), 2, False, "needs 2 outputs (dense units: 2)"),
        ("cross_entropy", (2,), 2, False, "cross_entropy is a classification loss but data.task is regression"),
        ("binary_cross_entropy", (1,), 1, False, "binary_cross_entropy is a classification loss"),
    ],
)
def test_regression_output_checks(name, shape, targets, ok, fragment):
    loss = LOSSES.create(name)
    if ok:
        loss.check(shape, None, targets)
    else:
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            loss.check(shape, None, targets)


@pytest.mark.parametrize("name", sorted(REGRESSION_ONLY))
def test_regression_only_losses_refuse_classes(name):
    with pytest.raises(ValueError, match="needs data.task: regression"):
        LOSSES.create(name).check((3,), 3)
