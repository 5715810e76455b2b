"""The training loop on its own: a three-parameter model, a recording optimizer, no run folder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nncli.data import Dataset, Split
from nncli.errors import DivergedError
from nncli.losses import LOSSES
from nncli.models import Sequential
from nncli.objective import Objective
from nncli.optimizers.base import Optimizer
from nncli.schedules import SCHEDULES
from nncli.training import Callback, Trainer, TrainingConfig


class Recording(Optimizer):
    """Plain gradient descent that keeps what every update was given."""

    registered_name = "recording"

    def __init__(self, learning_rate=0.1, blow_up_at: int | None = None):
        super().__init__(learning_rate)
        self.calls: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.blow_up_at = blow_up_at

    def _apply(self, theta, grad, lr):
        self.calls.append((theta.copy(), grad.copy(), lr))
        theta -= lr * grad
        if self.t == self.blow_up_at:
            theta[0] = np.inf


def setup(optimizer, epochs=2, clip_norm=None, callbacks=()):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 2))
    y = (x[:, 0] > 0).astype(np.int64)
    data = Dataset(Split(x, y), None, None, (2,), [0, 1])
    model = Sequential.from_specs([{"type": "dense", "units": 1}], (2,), np.float64)  # W (2, 1) and b: 3 parameters
    model.initialize(np.random.default_rng(1))
    settings = TrainingConfig(epochs=epochs, batch_size=4, shuffle=False, clip_norm=clip_norm,
                              schedule=SCHEDULES.create({"type": "step", "step_size": 1, "gamma": 0.5}))  # fmt: skip
    seeds = {k: np.random.SeedSequence(i) for i, k in enumerate(("shuffle", "layers", "augment"))}
    loss = LOSSES.create("binary_cross_entropy")
    return Trainer(model, loss, optimizer, data, settings, seeds, callbacks), model, loss, data


def test_each_step_is_one_clipped_update_at_the_epochs_scheduled_rate():
    optimizer = Recording()
    trainer, model, loss, data = setup(optimizer, clip_norm=0.05)
    assert model.num_params == 3 and trainer.batches_per_epoch == 3
    reference = Sequential.from_specs([{"type": "dense", "units": 1}], (2,), np.float64)
    objective = Objective(reference, LOSSES.create("binary_cross_entropy"))
    logs = []
    while not trainer.finished:
        logs.append(trainer.step())
    assert [log.rows for log in logs] == [4, 4, 2, 4, 4, 2]  # no shuffling: batches in order, the last one short
    assert [log.learning_rate for log in logs] == [0.1] * 3 + [0.05] * 3  # step schedule: halved after epoch 1
    assert [lr for _, _, lr in optimizer.calls] == [0.1] * 3 + [0.05] * 3
    for k, (theta, grad, _) in enumerate(optimizer.calls):
        start = (k % 3) * 4
        reference.theta[...] = theta
        value, _ = objective(data.train.x[start : start + 4], data.train.y[start : start + 4])
        assert logs[k].loss == pytest.approx(value, rel=1e-12)
        norm = np.linalg.norm(reference.grad)
        expected = reference.grad * min(1.0, 0.05 / norm)  # rescaled to the clip norm when above it
        np.testing.assert_allclose(grad, expected, rtol=1e-12)
    assert any(np.linalg.norm(g) == pytest.approx(0.05) for _, g, _ in optimizer.calls)  # clipping really happened
    assert trainer.state.step == 6 and trainer.state.epoch == 2 and len(trainer.state.history) == 2


def test_a_callback_can_stop_the_loop_after_any_update():
    class StopAfterFour(Callback):
        def on_batch_end(self, fit):
            if fit.state.step == 4:
                fit.request_stop("enough")

    trainer, *_ = setup(Recording(), epochs=5, callbacks=[StopAfterFour()])
    state = trainer.fit()
    assert (state.step, state.epoch, state.batch, state.stop_reason) == (4, 1, 1, "enough")


def test_an_update_that_makes_weights_non_finite_is_undone_and_reported():
    trainer, model, *_ = setup(Recording(blow_up_at=2))
    before = None
    with pytest.raises(DivergedError, match="epoch 1, batch 2/3: the update would make weights non-finite"):
        while True:
            before = model.theta.copy()
            trainer.step()
    np.testing.assert_array_equal(model.theta, before)
    assert math.isfinite(model.theta[0]) and trainer.state.step == 1
