"""The benchmark script keeps working (nncli side only: PyTorch is never a test dependency)."""

import importlib.util
from pathlib import Path

from helpers import write_config

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
