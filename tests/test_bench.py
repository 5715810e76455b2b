"""The benchmark script keeps working, and its PyTorch mapping computes what nncli does (those tests skip without
PyTorch: it is never a test dependency)."""

import importlib.util
from pathlib import Path

import pytest
from helpers import write_config

from nncli.experiment import load_experiment

REPO = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_times_and_profiles_a_small_cnn(tmp_path, digits, capsys):
    config = {
        "name": "tiny_cnn",
        "data": {"source": "idx", "path": str(digits), "validation_split": 0.2},
        "model": {
            "layers": [
                {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
                {"type": "maxpool2d"},
                {"type": "flatten"},
                {"type": "dense", "units": 3},
            ]
        },
        "training": {"batch_size": 32},
    }
    path = write_config(tmp_path / "cnn.yaml", config)
    load_bench().main([str(path), "--no-torch", "--steps", "3", "--rounds", "2", "--profile", "--profile-steps", "3"])
    out = capsys.readouterr().out
    assert "batch 32, 6 steps/epoch" in out
    assert "no torch" in out and "pytorch" not in out  # --no-torch never imports it
    assert "train: nncli" in out and "s/epoch" in out
    assert "infer: nncli" in out and "img/s" in out
    assert "0 conv2d(4, 3×3, relu)" in out and "1 maxpool2d(2×2)" in out and "optimizer" in out


RECURRENT_MODELS = {
    "lstm": [{"type": "lstm", "units": 4}],
    "gru": [{"type": "gru", "units": 4}],
    "rnn": [{"type": "rnn", "units": 4}],
    "relu_rnn": [{"type": "rnn", "units": 4, "activation": "relu"}],
    "bidirectional_lstm": [{"type": "bidirectional", "layer": {"type": "lstm", "units": 4}}],
    "sequences_and_pooling": [
        {"type": "dense", "units": 5, "activation": "tanh"},
        {"type": "bidirectional", "layer": {"type": "gru", "units": 4, "return_sequences": True}},
        {"type": "global_avgpool1d"},
    ],
    "max_over_time": [{"type": "gru", "units": 4, "return_sequences": True}, {"type": "global_maxpool1d"}],
    "conv_rows": [  # back to an image, then a 2-channel image (NCHW in torch) to rows
        {"type": "reshape", "target_shape": [8, 8, 1]},
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"},
        {"type": "reshape", "target_shape": [6, 12]},
        {"type": "lstm", "units": 4},
    ],
}


@pytest.mark.parametrize("layers", RECURRENT_MODELS.values(), ids=RECURRENT_MODELS.keys())
def test_recurrent_mapping_matches_torch(tmp_path, digits, layers):
    """The torch model and copied weights give nncli's loss and gradients (rows of 8×8 digits: T = D = 8, batch 4).
    The first two rows are blank, as MNIST's are: the states stay exactly 0 there, ties for the max over time."""
    pytest.importorskip("torch")
    bench = load_bench()
    bench.import_torch()
    config = {
        "name": "tiny_rnn",
        "data": {"source": "idx", "path": str(digits)},
        "model": {"layers": [{"type": "reshape", "target_shape": [8, 8]}, *layers, {"type": "dense", "units": 3}]},
        "training": {"batch_size": 4},
    }
    experiment = load_experiment(str(write_config(tmp_path / "rnn.yaml", config)), [])
    run = bench.NncliRun(experiment, experiment.data.load(experiment.seeds("data")))
    run.data.train.x[:4, :2] = 0.0
    ours, theirs, worst = bench.check_against_torch(run)
    assert abs(ours - theirs) < 1e-5 * abs(theirs)
    assert worst < 1e-5


def test_benchmark_runs_nncli_on_a_gpu_module(tmp_path, digits, capsys, monkeypatch):
    """--device gpu takes the device path (data uploaded once, gather and step there, one host copy per step);
    here through the stand-in GPU module, whose arrays refuse host NumPy."""
    from standin_gpu import MODULE

    from nncli import backend

    monkeypatch.setattr(backend, "detect_gpu", lambda: (MODULE, "Stand-in GPU (standin)"))
    config = {
        "name": "tiny_cnn",
        "data": {"source": "idx", "path": str(digits), "validation_split": 0.2},
        "model": {"layers": [{"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"}, {"type": "flatten"}, {"type": "dense", "units": 3}]},
        "training": {"batch_size": 32},
    }
    path = write_config(tmp_path / "cnn.yaml", config)
    before = MODULE.transfers
    load_bench().main([str(path), "--no-torch", "--device", "gpu", "--steps", "3", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "on Stand-in GPU (standin)" in out and "train: nncli" in out and "infer: nncli" in out
    assert MODULE.transfers > before
