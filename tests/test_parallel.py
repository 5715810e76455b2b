"""Conv-net batches split across two threads: same gradients and outputs as one thread, deterministic."""

import numpy as np
import pytest
from helpers import write_config

import nncli
from nncli import parallel
from nncli.layers import LAYERS, Layer
from nncli.losses import LOSSES
from nncli.models import Sequential
from nncli.objective import Objective, full_batch_objective

CNN = [
    {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
    {"type": "maxpool2d"},
    {"type": "conv2d", "filters": 3, "kernel_size": 2, "padding": "same", "activation": "tanh"},
    {"type": "flatten"},
    {"type": "dense", "units": 5, "activation": "relu"},
    {"type": "dense", "units": 3},
]


def cnn(dtype=np.float64, seed=0):
    model = Sequential.from_specs(CNN, (8, 8, 1), dtype)
    model.initialize(np.random.default_rng(seed))
    return model


def objective(model, loss=None, split=True, chunked=True):
    """The training objective; split=False / chunked=False make the one-thread, whole-batch reference."""
    made = Objective(model, loss or LOSSES.create("cross_entropy"))
    if not split:
        made.splitter = None
    if not chunked:
        made.chunked = False
    return made


def one_thread_forward(model, x):
    return model.forward(x, training=False)


def evaluation_forward(model, x):
    return parallel.evaluation_forward(model)(x)


def loss_and_grad(made, x, y):
    """f and ∇f as full-batch minimisers see them, through the given objective."""
    value, _ = made(x, y)
    return value, made.model.grad.copy()


def data(n, dtype=np.float64):
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, 8, 8, 1)).astype(dtype), rng.integers(0, 3, n)


@pytest.mark.parametrize("n", [16, 21, 40])
def test_split_step_equals_the_whole_batch_step(n):
    x, y = data(n)
    split, whole = cnn(), cnn()
    split_objective, whole_objective = objective(split), objective(whole, split=False)
    value_a, correct_a = split_objective(x, y)
    value_b, correct_b = whole_objective(x, y)
    assert split_objective.splitter is not None and whole_objective.splitter is None
    assert split_objective.splits(n) and split_objective.splitter.replica.layers[0]._buffers  # this batch really was split
    assert correct_a == correct_b
    assert value_a == pytest.approx(value_b, rel=1e-12)
    np.testing.assert_allclose(split.grad, whole.grad, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(evaluation_forward(split, x), one_thread_forward(whole, x), rtol=1e-12, atol=1e-14)


def test_replica_shares_theta_but_not_gradients_or_buffers():
    model = cnn()
    objective(model)(*data(20))
    twin = parallel.splitter_for(model).replica
    assert twin.theta is model.theta and twin.grad is not model.grad
    for mine, theirs in zip(model.layers, twin.layers):
        assert mine is not theirs
        for k in mine.params:
            assert np.shares_memory(theirs.params[k], model.theta)
            assert not np.shares_memory(theirs.grads[k], model.grad)
    model.theta[:] = 0.25  # an optimizer step seen by both
    assert (twin.layers[0].params["W"] == 0.25).all()


def test_split_is_deterministic_in_float32():
    x, y = data(64, np.float32)
    grads = []
    for _ in range(2):
        model = cnn(np.float32)
        step = objective(model)
        for _ in range(3):
            step(x, y)
            model.theta -= 0.01 * model.grad
        grads.append(model.grad.copy())
    np.testing.assert_array_equal(grads[0], grads[1])


def test_only_conv_nets_with_large_enough_batches_split():
    mlp = Sequential.from_specs([{"type": "flatten"}, {"type": "dense", "units": 3}], (8, 8, 1))
    assert not parallel.can_split(mlp)
    model = cnn()
    assert parallel.can_split(model)
    step = objective(model)
    step(*data(2 * parallel.MIN_HALF - 1))
    assert not step.splits(2 * parallel.MIN_HALF - 1) and step.splits(2 * parallel.MIN_HALF)
    twin = step.splitter.replica
    assert not any(layer._buffers for layer in twin.layers)  # 15 samples: all in this thread, the replica untouched
    whole = cnn()
    objective(whole, split=False)(*data(2 * parallel.MIN_HALF - 1))
    np.testing.assert_array_equal(model.grad, whole.grad)  # the one-thread computation, exactly
    step(*data(2 * parallel.MIN_HALF))
    assert twin.layers[0]._buffers["z"]  # 16: the second half ran on the replica


class _Noisy(Layer):
    """Stands in for dropout: draws random numbers, so its replica would need a Generator of its own."""

    has_randomness = True
    independent_samples = True

    def build(self, input_shape):
        return input_shape


class _BatchStatistic(Layer):
    """Stands in for batch norm: samples are not independent."""

    def build(self, input_shape):
        return input_shape


@pytest.mark.parametrize("extra", [_Noisy, _BatchStatistic])
def test_random_or_batch_dependent_layers_are_never_split(extra):
    model = Sequential([LAYERS.create(CNN[0]), extra(), LAYERS.create("flatten")], (8, 8, 1))
    assert not parallel.can_split(model)


@pytest.mark.parametrize("extra", [{"type": "dropout", "rate": 0.3}, {"type": "batchnorm"}, "rrelu"], ids=str)
def test_evaluation_splits_through_layers_that_are_per_sample_there(extra):
    """Dropout, batchnorm and rrelu keep training batches whole, but evaluation-mode forwards split across threads."""
    specs = CNN[:2] + [extra] + CNN[2:]
    model, reference = (Sequential.from_specs(specs, (8, 8, 1), np.float64) for _ in range(2))
    model.initialize(np.random.default_rng(0))
    reference.theta[:] = model.theta
    rng = np.random.default_rng(5)
    for (_, mine), (_, theirs) in zip(model.named_state(), reference.named_state()):
        mine[...] = theirs[...] = rng.uniform(0.5, 2.0, size=mine.shape)  # batchnorm's running statistics
    x, y = data(40)
    np.testing.assert_allclose(evaluation_forward(model, x), one_thread_forward(reference, x), rtol=1e-12, atol=1e-14)
    assert parallel.splitter_for(model, training=False).applies(40) and parallel.splitter_for(model) is None
    twin = parallel.splitter_for(model, training=False).replica
    assert twin.layers[0]._buffers["z"]  # the second half ran on the replica
    for (_, mine), (_, theirs) in zip(model.named_state(), twin.named_state()):
        assert np.shares_memory(mine, theirs)
    objective(model)(x, y)
    assert (twin.grad == 0).all()  # training steps stay in one thread
    activity = Sequential.from_specs([{**CNN[0], "activity_regularizer": "l1"}, *specs[1:]], (8, 8, 1))
    assert not parallel.can_split(activity, training=False)  # evaluate reads the whole batch's activity penalty


def test_training_a_conv_net_twice_gives_the_same_history(tmp_path, digits):
    config = {
        "name": "tiny_cnn",
        "seed": 3,
        "data": {"source": "idx", "path": str(digits), "validation_split": 0.2},
        "model": {"layers": CNN[:2] + [{"type": "flatten"}, {"type": "dense", "units": 3}]},
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "training": {"epochs": 3, "batch_size": 32},
    }
    path = write_config(tmp_path / "cnn.yaml", config)
    runs = [nncli.train(path, out=tmp_path / f"run{i}") for i in range(2)]
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert strip(runs[0].history) == strip(runs[1].history)
    assert runs[0].history[-1]["val_accuracy"] > 0.8  # it learns the toy task
    report = nncli.evaluate([runs[0].final_checkpoint])
    assert report.models[0].evaluation.accuracy > 0.8


def test_batches_larger_than_a_chunk_give_the_whole_batch_gradient(monkeypatch):
    """Full-batch objectives of conv nets go through in chunks, so memory is bounded by the chunk."""
    monkeypatch.setattr(parallel, "MAX_CHUNK", 20)
    x, y = data(53)  # chunks of 20, 20 and 13 (the last one too small to split)
    chunked, whole = cnn(), cnn()
    chunked_objective, whole_objective = objective(chunked), objective(whole, split=False, chunked=False)
    value_a, grad_a = full_batch_objective(chunked, LOSSES.create("cross_entropy"), x, y)(chunked.theta)
    value_b, grad_b = loss_and_grad(whole_objective, x, y)
    assert value_a == pytest.approx(value_b, rel=1e-12)
    np.testing.assert_allclose(grad_a, grad_b, rtol=1e-10, atol=1e-13)
    assert chunked_objective(x, y)[1] == whole_objective(x, y)[1]
    np.testing.assert_allclose(evaluation_forward(chunked, x), one_thread_forward(whole, x), rtol=1e-12, atol=1e-14)
    sizes = [buf.shape[0] for buf in chunked.layers[0]._buffers["z"].values()]
    assert sizes and max(sizes) <= 20  # work arrays are sized by the chunk (or its halves), never the batch


def test_conv_nets_that_cannot_split_still_take_large_batches_in_chunks(monkeypatch):
    """An activity penalty keeps a conv net in one thread, but a full-batch objective still goes through in chunks."""
    monkeypatch.setattr(parallel, "MAX_CHUNK", 20)
    specs = [{**CNN[0], "activity_regularizer": {"type": "l1", "l1": 0.01}}, *CNN[1:]]
    chunked, whole = (Sequential.from_specs(specs, (8, 8, 1), np.float64) for _ in range(2))
    for model in (chunked, whole):
        model.initialize(np.random.default_rng(0))
    chunked_objective, whole_objective = objective(chunked), objective(whole, chunked=False)  # the reference: the whole batch at once
    x, y = data(53)  # chunks of 20, 20 and 13
    value_a, grad_a = loss_and_grad(chunked_objective, x, y)
    value_b, grad_b = loss_and_grad(whole_objective, x, y)
    assert chunked_objective.splitter is None and chunked.activity_regularized
    assert value_a == pytest.approx(value_b, rel=1e-12)  # activity penalty included, weighted by chunk size
    np.testing.assert_allclose(grad_a, grad_b, rtol=1e-10, atol=1e-13)
    assert chunked_objective(x, y)[1] == whole_objective(x, y)[1]
    for i in (0, 4):  # the conv and the dense layer
        assert max(buf.shape[0] for buf in chunked.layers[i]._buffers["z"].values()) <= 20
        assert max(buf.shape[0] for buf in whole.layers[i]._buffers["z"].values()) == 53
    mlp = Sequential.from_specs([{"type": "flatten"}, {"type": "dense", "units": 3}], (8, 8, 1), np.float64)
    objective(mlp)(x, y)
    assert max(buf.shape[0] for buf in mlp.layers[1]._buffers["z"].values()) == 53  # MLPs keep whole batches


def test_conv_net_resume_is_bitwise_identical(tmp_path, digits):
    from helpers import assert_same_run
    from test_resume import interrupted_then_resumed

    config = {
        "name": "tiny_cnn",
        "data": {"source": "idx", "path": str(digits), "validation_split": 0.2},
        "model": {"layers": CNN[:2] + [{"type": "flatten"}, {"type": "dense", "units": 3}]},
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "training": {"epochs": 2, "batch_size": 40, "schedule": "cosine"},  # 192 samples: 4 split batches + 1 of 32
    }
    straight = nncli.train(config, out=tmp_path / "straight")
    assert_same_run(straight, interrupted_then_resumed(config, tmp_path, [3, 6]))


def test_the_second_thread_keeps_the_callers_floating_point_error_settings():
    """np.errstate is per thread: an overflow the trainer silences (to report divergence itself) stays silent in both halves."""
    import warnings

    model = Sequential.from_specs(
        [{"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"}, "flatten", {"type": "dense", "units": 3}],
        (6, 6, 1),
    )
    model.theta[:] = 1e30  # products overflow float32
    step = objective(model)
    assert step.splits(32)
    x = np.ones((32, 6, 6, 1), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", invalid="ignore"):
            out = evaluation_forward(model, x)
            step(x, np.zeros(32, np.int64))
    assert not np.isfinite(out).all()
