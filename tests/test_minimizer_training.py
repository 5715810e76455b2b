"""Minimisers under `nncli train`: one history row per iteration, stop reasons, exact resume, the memory guard."""

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers import make_csv, write_config
from typer.testing import CliRunner

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.cli import app

REPO = Path(__file__).resolve().parent.parent
MINIMIZERS = ["newton", "bfgs", "dfp", "lbfgs", "cg"]


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """loss.png costs more than these whole runs; its drawing is not under test here."""
    monkeypatch.setattr("nncli.plots.plot_history", lambda *args, **kwargs: None)


def mlp_on_table(path: Path, optimizer, epochs=6, dtype="float64") -> dict:
    """A small nonconvex model (3-5-1 tanh) on the tiny CSV: not logistic regression."""
    return {
        "name": "table",
        "seed": 0,
        "data": {"source": "csv", "path": str(path), "test_split": 0.2, "validation_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 5, "activation": "tanh"}, {"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "optimizer": optimizer,
        "training": {"epochs": epochs, "dtype": dtype},
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", MINIMIZERS)
def test_train_with_a_minimizer_writes_one_history_row_per_iteration(tmp_path, table, name, dtype):
    result = nncli.train(mlp_on_table(table, {"type": name}, epochs=6, dtype=dtype), out=tmp_path / "run")
    rows = list(csv.DictReader((result.run_dir / "history.csv").open()))
    assert len(rows) == len(result.history) == result.state.epoch <= 6
    losses = [float(r["train_loss"]) for r in rows]
    assert all(b <= a for a, b in zip(losses, losses[1:])), losses  # line searches only accept decreases
    assert losses[-1] < losses[0]
    assert all(float(r["learning_rate"]) > 0 for r in rows)  # the accepted step length
    assert rows[0]["val_loss"] != ""
    assert result.state.evaluations > result.state.epoch
    assert read_checkpoint(result.final_checkpoint).meta["epoch"] == len(rows)


def test_train_stops_early_with_the_reason(tmp_path, table):
    config = mlp_on_table(table, {"type": "bfgs", "tolerance_grad": 1e-3}, epochs=500)
    result = nncli.train(config, out=tmp_path / "run")
    assert result.state.stop_reason == "gradient_tolerance"
    assert result.state.epoch < 500


@pytest.mark.parametrize("name", ["newton", "bfgs", "lbfgs", "cg"])  # scalar state, matrix, pair lists, vectors
def test_resume_continues_a_minimizer_exactly(tmp_path, table, name):
    straight = nncli.train(mlp_on_table(table, {"type": name}, epochs=4), out=tmp_path / "straight")
    first = nncli.train(mlp_on_table(table, {"type": name}, epochs=2), out=tmp_path / "split")
    resumed = nncli.train(mlp_on_table(table, {"type": name}, epochs=4), resume=first.final_checkpoint)
    a = read_checkpoint(straight.final_checkpoint)
    b = read_checkpoint(resumed.final_checkpoint)
    pa, pb = a.group("param/"), b.group("param/")
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key])

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert without_time(straight.history) == without_time(resumed.history)


def test_pima_config_trains_with_newton(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    result = nncli.train(REPO / "configs" / "pima.yaml", out=tmp_path / "pima")
    assert result.state.stop_reason == "gradient_tolerance"
    assert len(result.history) <= 15
    report = nncli.evaluate([result.final_checkpoint])
    assert report.models[0].evaluation.accuracy >= 0.74


# -- the memory guard: checked from shapes, before any data is read ---------------------------
def test_bfgs_on_the_mnist_mlp_fails_fast_naming_optimizer_and_memory(monkeypatch, tmp_path):
    from nncli.data.idx import IdxSource

    def no_loading(*args, **kwargs):
        raise AssertionError("data was loaded before the memory check")

    monkeypatch.setattr(IdxSource, "load", no_loading)
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["train", "configs/mnist_mlp.yaml", "--set", "optimizer.type=bfgs", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("error: configs/mnist_mlp.yaml:15: optimizer: bfgs needs a 13,002×13,002 float64 matrix (1.35 GB)")
    assert "use cg or lbfgs" in lines[0].lower()
    assert not Path("runs/mnist_mlp").exists() or not any(Path("runs/mnist_mlp").iterdir())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["newton", "bfgs", "dfp"])
def test_max_parameters_is_an_option(tmp_path, table, name):
    config = write_config(tmp_path / "c.yaml", mlp_on_table(table, {"type": name, "max_parameters": 10}))
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {config}:")
    assert f"optimizer: {name} needs a 26×26 float64 matrix (5.41 kB)" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["lbfgs", "cg"])
def test_limited_memory_minimizers_pass_the_guard(tmp_path, name):
    monkey_free = mlp_on_table(make_csv(tmp_path / "t.csv"), {"type": name}, epochs=1)
    nncli.train(monkey_free, out=tmp_path / "run")


@pytest.mark.parametrize(
    "training,data,path",
    [
        ({"schedule": "cosine"}, {}, "training.schedule"),
        ({"clip_norm": 1.0}, {}, "training.clip_norm"),
        ({}, {"augment": {"shift": 1.0}}, "data.augment"),
    ],
)
def test_minimisers_refuse_settings_they_would_ignore(digits, training, data, path):
    from helpers import mlp_config

    from nncli.errors import ConfigError
    from nncli.experiment import load_experiment

    config = mlp_config(digits, **training)
    config["data"].update(data)
    config["optimizer"] = {"type": "lbfgs"}
    with pytest.raises(ConfigError) as err:
        load_experiment(config)
    assert str(err.value).startswith(f"<dict>: {path}: lbfgs is a full-batch minimiser")


@pytest.mark.parametrize(
    "layer,index,effect",
    [
        ({"type": "dropout", "rate": 0.2}, 1, "dropout(0.2) draws random numbers"),
        ({"type": "batchnorm"}, 1, "batchnorm"),
        ({"type": "rrelu"}, 1, "rrelu"),
    ],
)
def test_minimisers_and_compare_refuse_layers_that_make_the_objective_move(tmp_path, table, layer, index, effect):
    """A line search needs f(θ) fixed: dropout and rrelu draw new noise and batchnorm updates its statistics on every call."""
    from nncli.errors import ConfigError

    config = mlp_on_table(table, "lbfgs")
    config["model"]["layers"].insert(index, layer)
    with pytest.raises(ConfigError) as err:
        nncli.train(config, out=tmp_path / "run")
    message = str(err.value)
    assert message.startswith(f"<dict>: model.layers.{index}: ") and effect in message and "lbfgs" in message
    assert not (tmp_path / "run").exists()
    config["optimizer"] = "adam"  # mini-batch training with these layers is fine ...
    config["training"]["epochs"] = 1
    nncli.train(config, out=tmp_path / "adam")
    config["compare"] = {"optimizers": ["adam", "sgd"]}  # ... but compare-optimizers needs one fixed objective
    with pytest.raises(ConfigError) as err:
        nncli.compare_optimizers(config, out=tmp_path / "cmp")
    assert f"model.layers.{index}: " in str(err.value) and "compare-optimizers" in str(err.value)
    assert not (tmp_path / "cmp").exists()


def test_an_activation_that_draws_noise_is_refused_too(table):
    from nncli.errors import ConfigError
    from nncli.experiment import load_experiment

    config = mlp_on_table(table, "cg")
    config["model"]["layers"][0]["activation"] = "rrelu"
    with pytest.raises(ConfigError, match=r"model.layers.0: dense\(5, rrelu"):
        load_experiment(config)
    config["model"]["layers"][0]["activation"] = "prelu"  # learned, deterministic: fine
    load_experiment(config)
