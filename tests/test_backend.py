"""The array backend (nncli/backend.py, `--device`): detection, refusals, and training through a stand-in GPU module.

The stand-in (tests/standin_gpu.py) computes with NumPy but its arrays refuse to
mix with host NumPy arrays, as CuPy's do; so a compute path that falls back to
host NumPy fails here, and results are compared with the CPU run bit for bit
(the same NumPy operations in the same order).
"""

import json
import types

import numpy as np
import pytest
from helpers import csv_rows, make_csv, make_digits, minimiser_config, mlp_config, write_config
from standin_gpu import MODULE, DeviceArray, HostArrayMixed
from test_layers import CASES
from typer.testing import CliRunner

import nncli
from nncli import backend
from nncli.backend import CPU, Backend, detect_gpu, fetch, to_host
from nncli.cli import app
from nncli.errors import ConfigError
from nncli.layers import LAYERS
from nncli.losses import LOSSES
from nncli.models import Sequential
from nncli.optimizers import OPTIMIZERS, Optimizer
from nncli.training import Callback

STANDIN = Backend("gpu", MODULE, "Stand-in GPU (standin)")


@pytest.fixture
def standin_gpu(monkeypatch):
    """Detection finds the stand-in GPU: --device gpu trains on it."""
    monkeypatch.setattr(backend, "detect_gpu", lambda: (MODULE, STANDIN.description))
    return MODULE


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backend, "detect_gpu", lambda: (None, "no CUDA device"))


# -- the stand-in itself: it must refuse what CuPy refuses --------------------------------
def test_the_stand_in_refuses_host_arrays_both_ways():
    d = MODULE.asarray(np.ones(3))
    with pytest.raises(TypeError):
        np.add(d, 1.0)
    with pytest.raises(TypeError):
        np.asarray(d)
    with pytest.raises(HostArrayMixed):
        MODULE.multiply(d, np.ones(3))
    with pytest.raises(TypeError):
        d + np.ones(3)
    with pytest.raises(TypeError):
        np.ones(3) + d
    with pytest.raises(HostArrayMixed):
        d[...] = np.zeros(3)
    assert isinstance(MODULE.sum(d), DeviceArray)  # reductions stay on the device
    before = MODULE.transfers
    assert float(MODULE.sum(d)) == 3.0 and MODULE.transfers == before + 1


# -- detection -----------------------------------------------------------------------------
def _cupy(count=1, count_error=None, kernel_error=None, name=b"Stand-in H200"):
    def device_count():
        if count_error is not None:
            raise count_error
        return count

    def arange(n, dtype=None):
        if kernel_error is not None:
            raise kernel_error
        return np.arange(n, dtype=dtype)

    runtime = types.SimpleNamespace(getDeviceCount=device_count, getDeviceProperties=lambda i: {"name": name})
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), arange=arange, float32=np.float32, __version__="99.0")


def _importer(module=None, error=None):
    def import_module(name):
        assert name == "cupy"
        if error is not None:
            raise error
        return module

    return import_module


@pytest.mark.parametrize(
    "importer, expected",
    [
        (_importer(error=ImportError("No module named 'cupy'")), "CuPy is not installed (pip install 'nncli[gpu-cuda12]'"),
        (_importer(error=OSError("libcudart.so.12: cannot open shared object file")), "CuPy does not import (OSError: libcudart"),
        (_importer(_cupy(count_error=RuntimeError("cudaErrorInsufficientDriver"))), "no usable CUDA driver (RuntimeError: cudaErrorInsufficientDriver)"),
        (_importer(_cupy(count=0)), "no CUDA device"),
        (_importer(_cupy(kernel_error=RuntimeError("nvrtc: library not found"))), "no usable CUDA GPU (RuntimeError: nvrtc"),
    ],
    ids=["missing", "broken-install", "no-driver", "no-device", "no-compiler"],
)
def test_detection_says_why_no_gpu_is_usable(importer, expected):
    module, why = detect_gpu(importer)
    assert module is None and why.startswith(expected)


def test_detection_names_a_usable_gpu():
    cupy = _cupy(count=2)
    module, why = detect_gpu(_importer(cupy))
    assert module is cupy and why == "Stand-in H200 (cupy 99.0, 1 of 2)"


def test_devices_command_lists_the_cpu_and_why_not_a_gpu(no_gpu):
    result = CliRunner().invoke(app, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["device"], r["usable"]) for r in rows] == [("cpu", True), ("gpu", False)]
    assert rows[1]["description"] == "no CUDA device" and rows[0]["description"].startswith("CPU (numpy ")
    table = CliRunner().invoke(app, ["devices"])
    assert table.exit_code == 0 and "no CUDA device" in table.stdout


# -- refusals without a GPU --------------------------------------------------------------
@pytest.fixture
def pima_like(tmp_path):
    data = make_csv(tmp_path / "t.csv", n=120)
    config = {
        "name": "t", "seed": 0,
        "data": {"source": "csv", "path": str(data), "target": "label", "validation_split": 0.2, "test_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 6, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "loss": "cross_entropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
        "training": {"epochs": 2, "batch_size": 16},
        "compare": {"optimizers": [{"type": "sgd"}, {"type": "adam"}]},
    }  # fmt: skip
    return write_config(tmp_path / "t.yaml", config)


@pytest.mark.parametrize("command", ["train", "compare-optimizers", "sweep"])
def test_device_gpu_without_one_is_one_error_line_and_writes_nothing(no_gpu, pima_like, tmp_path, command):
    out = tmp_path / "out"
    args = [command, str(pima_like), "--device", "gpu", "--out", str(out)]
    if command == "sweep":
        args += ["--grid", "optimizer.learning_rate=0.01,0.1", "--engine", "serial"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: --device gpu: training.device: no usable GPU: no CUDA device"]
    assert not out.exists()


def test_eval_and_predict_on_gpu_without_one_are_refused(no_gpu, pima_like, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = nncli.train(pima_like, out=tmp_path / "run")
    for args in (["eval", str(run.final_checkpoint)], ["predict", str(run.final_checkpoint), str(tmp_path / "t.csv")]):
        result = CliRunner().invoke(app, [*args, "--device", "gpu"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().endswith("training.device: no usable GPU: no CUDA device"), result.stderr
    assert not (tmp_path / "predictions.csv").exists()


def test_auto_trains_on_the_cpu_and_says_why(no_gpu, pima_like, tmp_path):
    result = CliRunner().invoke(app, ["train", str(pima_like), "--device", "auto", "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0, result.output
    assert "device auto: the CPU (no CUDA device)" in result.stderr
    assert "device: auto" in (tmp_path / "r" / "config.yaml").read_text()


def test_a_one_shot_model_kind_is_refused_on_a_gpu(standin_gpu, tmp_path):
    config = {"name": "h", "data": {"source": "random_patterns", "patterns": 5, "neurons": 16},
              "model": {"type": "hopfield"}, "training": {"device": "gpu"}}  # fmt: skip
    with pytest.raises(ConfigError, match="training.device"):
        nncli.train(write_config(tmp_path / "h.yaml", config), out=tmp_path / "h")
    assert not (tmp_path / "h").exists()


# -- training through the stand-in GPU ----------------------------------------------------
class CountTransfers(Callback):
    """Device->host copies between consecutive updates."""

    def __init__(self):
        self.per_step: list[tuple[int, int]] = []  # (batch index within the epoch, copies since the previous step)

    def on_train_begin(self, fit):
        self.last = MODULE.transfers

    def on_batch_end(self, fit):
        self.per_step.append((fit.state.batch, MODULE.transfers - self.last))
        self.last = MODULE.transfers


def _histories_equal(a, b, exact=True):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for key in ra:
            if key == "seconds" or ra[key] is None:
                assert ra[key] == rb[key] or key == "seconds"
                continue
            assert ra[key] == rb[key] if exact else ra[key] == pytest.approx(rb[key], rel=1e-6), (key, ra, rb)


MLP = {
    "layers": [
        {"type": "flatten"},
        {"type": "dense", "units": 12, "activation": "relu", "kernel_regularizer": {"type": "l1_l2", "l1": 1e-4, "l2": 1e-3}},
        {"type": "batchnorm"},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 8, "activation": {"type": "rrelu"}, "activity_regularizer": {"type": "l2", "l2": 1e-4}},
        {"type": "dense", "units": 3},
    ]
}
CNN = {
    "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"},
        {"type": "maxpool2d"},
        {"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "elu"},
        {"type": "avgpool2d", "pool_size": 2, "strides": 1},
        {"type": "flatten"},
        {"type": "dense", "units": 3},
    ]
}
RECURRENT = {
    "layers": [
        {"type": "lstm", "units": 5, "return_sequences": True, "dropout": 0.1, "recurrent_dropout": 0.1},
        {"type": "bidirectional", "layer": {"type": "gru", "units": 3, "return_sequences": True}},
        {"type": "rnn", "units": 3},
        {"type": "dense", "units": 3},
    ]
}


@pytest.mark.parametrize(
    "model, optimizer, training",
    [
        (MLP, {"type": "adam", "learning_rate": 0.01}, {"clip_norm": 0.5, "weight_decay": 1e-3, "schedule": {"type": "step", "step_size": 1}, "log_gradients": True}),
        (CNN, {"type": "momentum", "learning_rate": 0.05}, {"batch_size": 8, "clip_value": 1.0}),
        (RECURRENT, {"type": "rmsprop", "learning_rate": 0.01}, {"batch_size": 12}),
    ],
    ids=["mlp", "cnn", "recurrent"],
)
def test_training_on_the_stand_in_gpu_equals_the_cpu(standin_gpu, tmp_path, model, optimizer, training):
    """Every layer, loss, regulariser and optimizer of these runs computes on the device module, or this fails;
    the numbers are the CPU's; each update copies to the host once (loss, finiteness, correct count)."""
    data = make_digits(tmp_path / "digits", n_train=96, n_test=24)
    config = {**mlp_config(data, **training), "model": model, "optimizer": optimizer}
    config["training"]["epochs"] = 2
    if model is RECURRENT:
        config["data"]["sequence"] = "rows"  # each 8×8 image as 8 steps of 8 features
    if model is CNN:
        config["data"]["augment"] = {"shift": 1, "rotation": 5}  # on the host (its draws are), batches uploaded
    path = write_config(tmp_path / "c.yaml", config)
    counter = CountTransfers()
    gpu = nncli.train(path, out=tmp_path / "gpu", device="gpu", callbacks=[counter])
    cpu = nncli.train(path, out=tmp_path / "cpu")
    _histories_equal(gpu.history, cpu.history, exact=model is not CNN)  # the CPU splits conv evaluation batches
    if training.get("log_gradients"):
        assert csv_rows(gpu.run_dir, "gradients.csv") == csv_rows(cpu.run_dir, "gradients.csv")
    steps_after_an_update = [n for batch, n in counter.per_step if batch > 1]
    assert steps_after_an_update and set(steps_after_an_update) == {1}
    meta = nncli.read_checkpoint(gpu.final_checkpoint).meta
    assert meta["device"] == STANDIN.description and meta["config"]["training"]["device"] == "gpu"

    # A device checkpoint is host NumPy: it evaluates on the CPU as on the device, and resumes on the CPU.
    on_cpu = nncli.evaluate([gpu.final_checkpoint])
    on_gpu = nncli.evaluate([gpu.final_checkpoint], device="gpu")
    assert on_cpu.models[0].evaluation.loss == pytest.approx(on_gpu.models[0].evaluation.loss, rel=1e-6)
    assert on_cpu.models[0].evaluation.accuracy == on_gpu.models[0].evaluation.accuracy


def test_a_gpu_run_resumes_on_the_cpu_and_the_other_way(standin_gpu, tmp_path):
    data = make_digits(tmp_path / "digits", n_train=96, n_test=24)
    config = {**mlp_config(data), "model": MLP}
    config["training"]["epochs"] = 1
    path = write_config(tmp_path / "c.yaml", config)
    first = nncli.train(path, out=tmp_path / "a", device="gpu")
    resumed = nncli.train(path, ["training.epochs=3"], resume=first.final_checkpoint, device="cpu")
    again = nncli.train(path, ["training.epochs=3"], resume=resumed.final_checkpoint, device="gpu", out=tmp_path / "b")
    straight = nncli.train(path, ["training.epochs=3"], out=tmp_path / "c")
    _histories_equal(resumed.history, straight.history[:3])
    _histories_equal(again.history, straight.history)


def test_a_full_batch_minimiser_runs_its_objective_on_the_device(standin_gpu, tmp_path):
    path = write_config(tmp_path / "n.yaml", minimiser_config(make_csv(tmp_path / "t.csv", n=80), "bfgs"))
    gpu = nncli.train(path, out=tmp_path / "gpu", device="gpu")
    cpu = nncli.train(path, out=tmp_path / "cpu")
    _histories_equal(gpu.history, cpu.history)


def test_compare_optimizers_on_the_device_equals_the_cpu(standin_gpu, pima_like, tmp_path):
    gpu = nncli.compare_optimizers(pima_like, out=tmp_path / "gpu", device="gpu")
    cpu = nncli.compare_optimizers(pima_like, out=tmp_path / "cpu")
    def without_times(folder):
        return [{k: v for k, v in row.items() if "second" not in k} for row in csv_rows(folder, "curves.csv")]

    assert without_times(gpu.out_dir) == without_times(cpu.out_dir)


# -- every layer, loss and optimizer on the device ----------------------------------------
def _twin(spec, shape, on):
    layer = LAYERS.create(spec)
    model = Sequential([layer], shape, dtype=np.float64, backend=on)
    model.initialize(np.random.default_rng(0))
    layer.needs_input_grad = True
    return layer, model


@pytest.mark.parametrize("spec, shape", [case for cases in CASES.values() for case in cases], ids=lambda v: str(v)[:40])
def test_every_layer_computes_on_the_device_as_on_the_cpu(spec, shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, *shape))
    probe = None
    results = []
    for on in (CPU, STANDIN):
        layer, model = _twin(spec, shape, on)
        for random_layer in layer.random_layers():
            random_layer.rng = np.random.default_rng(2)
        outputs = []
        for training in (True, False):
            y = layer.forward(on.to_device(x), training=training)
            if probe is None:
                probe = rng.normal(size=y.shape)
            outputs.append(to_host(y).copy())
        layer.forward(on.to_device(x), training=True)
        dx = layer.backward(on.to_device(probe.copy()))
        results.append((outputs, to_host(dx).copy(), {k: to_host(g).copy() for k, g in model.named_grads()}))
    (cpu_y, cpu_dx, cpu_g), (gpu_y, gpu_dx, gpu_g) = results
    for a, b in zip(cpu_y, gpu_y):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cpu_dx, gpu_dx)
    assert cpu_g.keys() == gpu_g.keys()
    for key in cpu_g:
        np.testing.assert_array_equal(cpu_g[key], gpu_g[key])


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"])
def test_every_loss_computes_on_the_device(name):
    rng = np.random.default_rng(0)
    k = 1 if name == "binary_cross_entropy" else 3
    outputs = rng.normal(size=(6, k))
    labels = rng.integers(0, 2 if k == 1 else 3, 6)
    got = []
    for on in (CPU, STANDIN):
        loss = LOSSES.create(name)
        value = loss.forward(on.to_device(outputs), on.to_device(labels))
        got.append((fetch(value)[0], to_host(loss.backward()).copy(), to_host(loss.predictions(on.to_device(outputs))),
                    to_host(loss.probabilities(on.to_device(outputs)))))
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(n for n in OPTIMIZERS.names() if isinstance(OPTIMIZERS.create(n), Optimizer)))
def test_every_first_order_optimizer_steps_on_the_device(name):
    rng = np.random.default_rng(0)
    theta, grads = rng.normal(size=20), rng.normal(size=(3, 20))
    got = []
    for on in (CPU, STANDIN):
        opt = OPTIMIZERS.create(name)
        t = on.to_device(theta.copy())
        for g in grads:
            opt.step(t, on.to_device(g), 0.05)
        state = opt.state_dict()
        assert all(isinstance(v, np.ndarray) for k, v in state.items() if k != "t" and hasattr(v, "shape"))
        restored = OPTIMIZERS.create(name)
        restored.load_state_dict(state)  # a checkpoint's host slots go to θ's device at the next step
        restored.step(t, on.to_device(grads[0]), 0.05)
        got.append(to_host(t).copy())
    np.testing.assert_array_equal(*got)


def test_an_npy_source_trains_on_the_device_as_on_the_cpu(standin_gpu, tmp_path):
    """Memory-mapped rows are read whole and uploaded once on a GPU; the numbers are the CPU's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0] + x[:, 1] > 0).astype(np.int64))
    config = {
        "name": "n", "data": {"source": "npy", "path": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy"),
                              "validation_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 5, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "optimizer": {"type": "adam", "learning_rate": 0.01}, "training": {"epochs": 2, "batch_size": 16},
    }  # fmt: skip
    path = write_config(tmp_path / "n.yaml", config)
    _histories_equal(nncli.train(path, out=tmp_path / "gpu", device="gpu").history, nncli.train(path, out=tmp_path / "cpu").history)


def test_gradcheck_of_a_gpu_config_runs_on_the_cpu(no_gpu, pima_like, tmp_path):
    """Finite differences in float64 are the host's job: a config that trains on a GPU is checked without one."""
    result = CliRunner().invoke(app, ["gradcheck", str(pima_like), "--set", "training.device=gpu", "--samples", "2", "--entries", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True
