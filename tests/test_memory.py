"""A model too big for memory is counted from shapes and refused before anything is allocated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import make_csv, write_config

from nncli import api
from nncli.models import available_memory

# Runs the command as its only child and reports the child's peak resident memory (KiB on Linux).
PEAK = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    root = tmp_path_factory.mktemp("huge")
    table = make_csv(root / "table.csv")
    return write_config(root / "huge.yaml", {
        "name": "huge", "data": {"source": "csv", "path": str(table), "target": "label"},
        "model": {"layers": [{"type": "dense", "units": 10**9, "activation": "relu"}, {"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
    })  # fmt: skip


def run_measured(*args) -> dict:
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "nncli", *map(str, args)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)


def test_summary_counts_a_billion_unit_model_without_allocating_it(huge):
    result = run_measured("summary", huge)
    assert result["rc"] == 0, result["stderr"]
    assert "5,000,000,001" in result["stdout"]  # 3 features: W 3e9, b 1e9, then 1e9 + 1
    assert "training needs about" in result["stdout"] and "TiB" in result["stdout"]
    assert result["peak_kib"] < 300 * 1024


def test_train_refuses_it_in_one_line_before_allocating(huge, tmp_path):
    result = run_measured("train", huge, "--out", tmp_path / "run")
    assert result["rc"] == 2
    (line,) = result["stderr"].strip().splitlines()
    assert line.startswith("error: ") and "huge.yaml" in line and "model.layers.0 dense(1000000000, relu)" in line
    assert "memory is available" in line and "training needs about" in line
    assert result["peak_kib"] < 300 * 1024
    assert not (tmp_path / "run").exists()


def test_a_batch_too_big_for_memory_is_refused_and_a_model_that_fits_is_not(huge, monkeypatch, tmp_path):
    config = {"name": "wide", "data": {"source": "csv", "path": str(tmp_path / "t.csv"), "target": "label", "test_split": 0.0, "validation_split": 0.0},
              "model": {"layers": [{"type": "dense", "units": 4000, "activation": "relu"}, {"type": "dense", "units": 1}]},
              "loss": "binary_cross_entropy", "training": {"epochs": 1, "batch_size": 150, "eval_batch_size": 150}}  # fmt: skip
    make_csv(tmp_path / "t.csv")
    need = api.memory_needed(api.load_experiment(config), api.load_experiment(config).plan((3,), 2), rows=200)
    assert need.parts["activations (batch 150)"] == 150 * 3 * (4000 + 1) * 4  # output, gradient and cache per unit
    monkeypatch.setenv("NNCLI_MEMORY_LIMIT", str(need.total - 1))
    with pytest.raises(api.ConfigError, match="batch 150"):
        api.train(config, out=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    monkeypatch.setenv("NNCLI_MEMORY_LIMIT", str(need.total + 1))
    assert api.train(config, out=tmp_path / "fits").state.epoch == 1


def test_available_memory_is_the_smaller_of_the_machine_and_the_limit(monkeypatch):
    free = available_memory()
    assert free is not None and free > 0
    monkeypatch.setenv("NNCLI_MEMORY_LIMIT", "12345")
    assert available_memory() == 12345
