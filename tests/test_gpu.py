"""On a real NVIDIA GPU (CuPy): every layer, loss and optimizer, and whole runs, against the CPU.

Marked `gpu` and skipped, with the reason, where no GPU is usable (CI never
has one; scripts/gpu_check.sh runs these where there is one). Tolerances:
float32 results within 1e-5 of the CPU's relative to the largest value,
float64 within 1e-12; two GPU runs with one seed are identical (cuBLAS is
deterministic for one stream on one GPU model).
"""

import numpy as np
import pytest
from helpers import make_csv, make_digits, minimiser_config, mlp_config, write_config
from test_layers import CASES

import nncli
from nncli.backend import CPU, Backend, detect_gpu, fetch, to_host
from nncli.layers import LAYERS
from nncli.losses import LOSSES
from nncli.models import Sequential
from nncli.optimizers import OPTIMIZERS, Optimizer

cupy, WHY = detect_gpu()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cupy is None, reason=f"no usable GPU: {WHY}")]
GPU = Backend("gpu", cupy, WHY) if cupy is not None else None
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close(cpu, gpu, dtype, what=""):
    cpu, gpu = np.asarray(cpu, np.float64), np.asarray(gpu, np.float64)
    scale = max(float(np.max(np.abs(cpu), initial=0.0)), 1e-30)
    worst = float(np.max(np.abs(gpu - cpu), initial=0.0)) / scale
    assert worst <= TOLERANCE[dtype], f"{what}: max |gpu - cpu| is {worst:.2e} of the largest value"


def _run_layer(spec, shape, dtype, on):
    layer = LAYERS.create(spec)
    model = Sequential([layer], shape, dtype=dtype, backend=on)
    model.initialize(np.random.default_rng(0))  # host draws: the same θ on both
    layer.needs_input_grad = True
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, *shape)).astype(dtype)
    for random_layer in layer.random_layers():
        random_layer.rng = np.random.default_rng(2)
    y_eval = to_host(layer.forward(on.to_device(x), training=False)).copy()
    y = layer.forward(on.to_device(x), training=True)
    probe = np.random.default_rng(3).normal(size=y.shape).astype(dtype)
    y = to_host(y).copy()
    dx = to_host(layer.backward(on.to_device(probe))).copy()
    return y_eval, y, dx, {k: to_host(g).copy() for k, g in model.named_grads()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("spec, shape", [case for cases in CASES.values() for case in cases], ids=lambda v: str(v)[:40])
def test_every_layer_forward_and_gradients_match_the_cpu(spec, shape, dtype):
    cpu, gpu = _run_layer(spec, shape, dtype, CPU), _run_layer(spec, shape, dtype, GPU)
    for name, a, b in zip(("evaluation output", "training output", "dL/dx"), cpu[:3], gpu[:3]):
        assert_close(a, b, dtype, f"{spec} {name}")
    for key in cpu[3]:
        assert_close(cpu[3][key], gpu[3][key], dtype, f"{spec} d{key}")


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"])
def test_every_loss_matches_the_cpu(name):
    rng = np.random.default_rng(0)
    k = 1 if name == "binary_cross_entropy" else 5
    outputs, labels = rng.normal(size=(64, k)).astype(np.float32), rng.integers(0, 2 if k == 1 else 5, 64)
    got = []
    for on in (CPU, GPU):
        loss = LOSSES.create(name)
        value = fetch(loss.forward(on.to_device(outputs), on.to_device(labels)))[0]
        got.append((value, to_host(loss.backward()).copy()))
    assert got[1][0] == pytest.approx(got[0][0], rel=1e-6)
    assert_close(got[0][1], got[1][1], np.float32, name)


@pytest.mark.parametrize("name", sorted(n for n in OPTIMIZERS.names() if isinstance(OPTIMIZERS.create(n), Optimizer)))
def test_every_first_order_optimizer_step_matches_the_cpu(name):
    rng = np.random.default_rng(0)
    theta, grads = rng.normal(size=1000).astype(np.float32), rng.normal(size=(5, 1000)).astype(np.float32)
    got = []
    for on in (CPU, GPU):
        opt, t = OPTIMIZERS.create(name), on.to_device(theta.copy())
        for g in grads:
            opt.step(t, on.to_device(g), 0.01)
        got.append(to_host(t))
    assert_close(got[0], got[1], np.float32, name)


@pytest.fixture
def cnn_config(tmp_path):
    data = make_digits(tmp_path / "digits", n_train=96, n_test=48)
    config = mlp_config(data, epochs=1, batch_size=32)
    config["model"] = {"layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"},
        {"type": "maxpool2d"}, {"type": "dropout", "rate": 0.25}, {"type": "flatten"}, {"type": "dense", "units": 3},
    ]}  # fmt: skip
    return write_config(tmp_path / "cnn.yaml", config)


def test_a_training_epoch_matches_the_cpu_and_evaluates_there(cnn_config, tmp_path):
    gpu = nncli.train(cnn_config, out=tmp_path / "gpu", device="gpu")
    cpu = nncli.train(cnn_config, out=tmp_path / "cpu")
    a, b = nncli.read_checkpoint(cpu.final_checkpoint), nncli.read_checkpoint(gpu.final_checkpoint)
    for key, value in a.group("param/").items():
        assert_close(value, b.group("param/")[key], np.float32, key)
    assert gpu.history[0]["train_loss"] == pytest.approx(cpu.history[0]["train_loss"], rel=1e-5)
    on_cpu = nncli.evaluate([gpu.final_checkpoint]).models[0].evaluation
    on_gpu = nncli.evaluate([gpu.final_checkpoint], device="gpu").models[0].evaluation
    assert on_cpu.accuracy == on_gpu.accuracy and on_cpu.loss == pytest.approx(on_gpu.loss, rel=1e-5)


def test_two_gpu_runs_with_one_seed_are_identical_and_resume_exactly(cnn_config, tmp_path):
    first = nncli.train(cnn_config, ["training.epochs=2"], out=tmp_path / "a", device="gpu")
    second = nncli.train(cnn_config, ["training.epochs=2"], out=tmp_path / "b", device="gpu")
    half = nncli.train(cnn_config, out=tmp_path / "c", device="gpu")
    resumed = nncli.train(cnn_config, ["training.epochs=2"], resume=half.final_checkpoint, device="gpu")
    for other in (second, resumed):
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in other.history] == [
            {k: v for k, v in r.items() if k != "seconds"} for r in first.history
        ]
        a, b = nncli.read_checkpoint(first.final_checkpoint), nncli.read_checkpoint(other.final_checkpoint)
        for key, value in a.group("param/").items():
            np.testing.assert_array_equal(value, b.group("param/")[key])


def test_a_full_batch_minimiser_keeps_its_float64_algebra_on_the_host(tmp_path):
    path = write_config(tmp_path / "n.yaml", minimiser_config(make_csv(tmp_path / "t.csv", n=120), "newton", units=4, epochs=5))
    gpu = nncli.train(path, out=tmp_path / "gpu", device="gpu")
    cpu = nncli.train(path, out=tmp_path / "cpu")
    for a, b in zip(gpu.history, cpu.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
