"""Regression (data.task: regression): the csv loader, metrics on hand-computed examples, and tiny
regressions end to end through the CLI (train, history, eval --json, ensembles, compare-optimizers)."""

import csv as csvlib
import json

import numpy as np
import pytest
import yaml
from helpers import write_config
from typer.testing import CliRunner

from nncli.checkpoint import read_checkpoint
from nncli.cli import app
from nncli.data import DATA_SOURCES
from nncli.errors import ConfigError, DataError
from nncli.metrics import regression_metrics

SEED = np.random.SeedSequence(0)


def make_table(path, n=120, seed=0):
    """Two noisy linear targets of three features on very different scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 1.0]
    y1 = 100 + 20 * x[:, 0] + 2 * (x[:, 1] - 50) + rng.normal(size=n)
    y2 = -5 + 30 * (x[:, 2] - 1) + 0.1 * rng.normal(size=n)
    lines = ["a,b,c,y1,y2"] + [f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{t1:.4f},{t2:.4f}" for r, t1, t2 in zip(x, y1, y2)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_table(tmp_path_factory.mktemp("reg") / "reg.csv")


def source(path, **options):
    return DATA_SOURCES.create({"source": "csv", "path": str(path), "task": "regression", **options})


# -- loader ---------------------------------------------------------------------------
def test_multi_target_loading_standardises_with_training_rows_only(table):
    data = source(table, target=["y1", "y2"]).load(SEED)
    assert data.regression and data.classes == [] and data.targets == ["y1", "y2"]
    assert data.input_shape == (3,) and data.train.y.dtype == np.float32 and data.train.y.shape[1] == 2
    assert len(data.train) + len(data.val) + len(data.test) == 120
    np.testing.assert_allclose(data.train.y.mean(axis=0), 0.0, atol=1e-5)  # training rows: zero mean, unit sd
    np.testing.assert_allclose(data.train.y.std(axis=0), 1.0, atol=1e-5)
    assert not np.allclose(data.test.y.mean(axis=0), 0.0, atol=1e-3)  # the test rows were not used
    prep = data.preprocessing
    assert prep["task"] == "regression" and prep["targets"] == ["y1", "y2"] and "classes" not in prep
    raw = np.loadtxt(table, delimiter=",", skiprows=1)[:, 3:]
    units = data.in_target_units(np.concatenate([data.train.y, data.val.y, data.test.y]))
    np.testing.assert_allclose(np.sort(units, axis=0), np.sort(raw, axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(prep["target_mean"], data.in_target_units(data.train.y).mean(axis=0), rtol=1e-5)


def test_one_target_stays_two_dimensional_and_can_stay_raw(table):
    data = source(table, target="y1", standardize_target=False).load(SEED)
    assert data.train.y.shape == (len(data.train), 1) and data.target_scale is None
    assert "target_mean" not in data.preprocessing and data.preprocessing["features"] == ["a", "b", "c", "y2"]
    by_index = source(table, target=[3], standardize_target=False).load(SEED)
    np.testing.assert_array_equal(by_index.test.y, data.test.y)


def test_reloading_with_the_checkpoints_preprocessing_reproduces(table, tmp_path):
    first = source(table, target=["y2", "y1"]).load(SEED)
    # another file: the columns in another order and the statistics from the stored ones, not refitted
    rows = list(csvlib.reader(open(table)))
    order = [4, 0, 3, 2, 1]
    (tmp_path / "shuffled.csv").write_text("\n".join(",".join(r[i] for i in order) for r in rows) + "\n")
    again = source(tmp_path / "shuffled.csv", target=["y2", "y1"], limit=None).load(SEED, first.preprocessing)
    np.testing.assert_array_equal(again.test.y, first.test.y)
    np.testing.assert_array_equal(again.test.x, first.test.x)
    assert again.preprocessing == first.preprocessing
    with pytest.raises(DataError, match="preprocessing is for a regression, its config's data.task is classification"):
        DATA_SOURCES.create({"source": "csv", "path": str(table)}).load(SEED, first.preprocessing)


def test_splits_are_a_seeded_permutation(table):
    a, b = source(table, target="y1").load(SEED), source(table, target="y1").load(SEED)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    c = source(table, target="y1").load(np.random.SeedSequence(1))
    assert not np.array_equal(a.test.y, c.test.y)
    assert len(a.test) == 24  # round(0.2 · 120): no strata


def test_a_non_numeric_target_cell_is_one_error_with_its_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i * 1.5}\n" for i in range(10)) + "3,high\n")
    with pytest.raises(DataError, match=r"t.csv:12: column 'y': value 'high' is not a finite number"):
        source(path, target="y").load(SEED)
    with pytest.raises(DataError, match="no column named 'z'"):
        source(path, target=["y", "z"]).load(SEED)


def test_a_continuous_target_suggests_regression(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i * 1.37:.2f}\n" for i in range(30)))
    with pytest.raises(DataError, match="to predict the numbers set data.task: regression"):
        DATA_SOURCES.create({"source": "csv", "path": str(path)}).load(SEED)
    with pytest.raises(ConfigError, match="a list of target columns needs data.task: regression"):
        DATA_SOURCES.create({"source": "csv", "path": str(path), "target": ["y"]})
    info = source(path).inspect()
    assert info.num_classes is None and info.num_targets == 1


# -- metrics --------------------------------------------------------------------------
def test_metrics_on_hand_computed_examples():
    y = np.array([[1.0], [2.0], [3.0], [4.0]])
    mean = regression_metrics(y, np.full((4, 1), 2.5), np.array([2.5]))
    assert mean.r2 == pytest.approx(0.0) and mean.mse == pytest.approx(1.25) and mean.mae == pytest.approx(1.0)
    perfect = regression_metrics(y, y, np.array([0.0]))
    assert perfect.r2 == 1.0 and perfect.mse == 0.0 and perfect.rmse == 0.0
    assert perfect.baseline_mse == pytest.approx((1 + 4 + 9 + 16) / 4)  # predicting the training mean 0
    assert perfect.baseline_r2 == pytest.approx(1 - 30 / 5)  # SST = 5 around this split's mean 2.5
    off = regression_metrics(y, y + [[1.0], [-1.0], [1.0], [-1.0]], np.array([2.5]))
    assert off.mse == 1.0 and off.rmse == 1.0 and off.mae == 1.0 and off.r2 == pytest.approx(1 - 4 / 5)


def test_metrics_average_over_targets():
    y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    predicted = np.array([[1.0, 12.0], [2.0, 20.0], [3.0, 28.0]])  # target 1 perfect; target 2 SSE 8, SST 200
    m = regression_metrics(y, predicted, np.array([2.0, 20.0]))
    np.testing.assert_allclose(m.per_target["r2"], [1.0, 1 - 8 / 200])
    assert m.r2 == pytest.approx((1.0 + 1 - 8 / 200) / 2)
    assert m.mse == pytest.approx((0 + 8 / 3) / 2) and m.rmse == pytest.approx((0 + np.sqrt(8 / 3)) / 2)
    np.testing.assert_allclose(m.per_target["baseline_r2"], [0.0, 0.0])


# -- end to end -----------------------------------------------------------------------
def tiny_config(table, **changes):
    config = {
        "name": "reg",
        "seed": 0,
        "data": {"source": "csv", "path": str(table), "task": "regression", "target": ["y1", "y2"], "validation_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "loss": "mse",
        "optimizer": {"type": "adam", "learning_rate": 0.03},
        "training": {"epochs": 30, "batch_size": 16},
    }
    for key, value in changes.items():
        section, _, option = key.partition(".")
        if option:
            config[section][option] = value
        else:
            config[section] = value
    return config


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_train_and_eval_a_regression_end_to_end(table, tmp_path):
    config = write_config(tmp_path / "reg.yaml", tiny_config(table))
    out = cli("train", config, "--out", tmp_path / "run", "--quiet")
    assert "train loss / R²" in out.stdout and "val loss / R²" in out.stdout and "acc" not in out.stderr
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csvlib.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]
    assert all(r["train_accuracy"] == "" and r["val_accuracy"] == "" and r["val_loss"] != "" for r in rows)
    last = tmp_path / "run" / "checkpoints" / "last.npz"
    assert read_checkpoint(last).meta["preprocessing"]["targets"] == ["y1", "y2"]
    (report,) = json.loads("[" + cli("eval", last, "--json").stdout.strip().replace("\n", ",") + "]")
    assert {"checkpoint", "split", "n", "loss", "mse", "rmse", "mae", "r2", "baseline_mse", "baseline_r2", "targets"} <= set(report)
    assert report["accuracy"] is None and report["confusion_matrix"] is None  # the contract's keys, empty
    assert report["split"] == "test" and report["n"] == 24 and report["targets"] == ["y1", "y2"]
    assert report["r2"] > 0.9 and report["baseline_r2"] < 0.1  # an easy linear problem
    assert report["mse"] > 1.0  # in the targets' own units (their scale is tens), not the standardised loss
    table_out = cli("eval", last).stdout
    assert "R²" in table_out and "baseline R²" in table_out and "per target" in table_out


def test_an_ensemble_of_two_seeds_is_their_mean_prediction(table, tmp_path):
    config = write_config(tmp_path / "reg.yaml", tiny_config(table, **{"data.split_seed": 3, "training.epochs": 10}))
    cli("train", config, "--seeds", 2, "--out", tmp_path / "runs", "--quiet")
    lasts = [tmp_path / "runs" / f"seed-{s}" / "checkpoints" / "last.npz" for s in (0, 1)]
    rows = [json.loads(line) for line in cli("eval", *lasts, "--json").stdout.strip().splitlines()]
    assert [r["checkpoint"] for r in rows[:2]] == [str(p) for p in lasts] and rows[2]["checkpoint"] == "ensemble"
    assert "vote_accuracy" not in rows[2] and rows[2]["members"] == [str(p) for p in lasts]
    assert rows[2]["r2"] > 0.5 and rows[2]["r2"] >= min(r["r2"] for r in rows[:2]) - 1e-9  # MSE is convex: the mean is no worse than the worse
    assert "R² of the 2 models" in cli("eval", *lasts).stdout


def test_members_standardised_with_their_own_training_rows_still_ensemble(table, tmp_path):
    """One test split (split_seed), two validation splits: each member scales the targets by its own training
    rows, and the ensemble averages predictions in the target's units."""
    lasts = []
    for v in (0.2, 0.1):
        config = write_config(tmp_path / f"r{v}.yaml", tiny_config(table, **{"data.split_seed": 3, "data.validation_split": v, "training.epochs": 10}))
        cli("train", config, "--out", tmp_path / f"run{v}", "--quiet")
        lasts.append(tmp_path / f"run{v}" / "checkpoints" / "last.npz")
    rows = [json.loads(line) for line in cli("eval", *lasts, "--json").stdout.strip().splitlines()]
    assert rows[-1]["checkpoint"] == "ensemble" and "note" not in rows[0]
    assert rows[-1]["r2"] >= min(r["r2"] for r in rows[:2]) - 1e-9


def test_compare_optimizers_on_a_regression_reports_r2(table, tmp_path):
    compare = {"max_iterations": 30, "optimizers": [{"type": "lbfgs"}, {"type": "gd", "learning_rate": 0.1}, {"type": "newton"}]}
    config = write_config(tmp_path / "reg.yaml", tiny_config(table, compare=compare, **{"model": {"layers": [{"type": "dense", "units": 2}]}}))
    out = cli("compare-optimizers", config, "--out", tmp_path / "cmp", "--json")
    rows = json.loads(out.stdout)
    assert [r["optimizer"] for r in rows] == ["lbfgs", "gd", "newton"]
    for r in rows:
        assert r["train_accuracy"] is None and r["test_accuracy"] is None
        assert r["test_r2"] > 0.9 and r["train_r2"] > 0.9
    with open(tmp_path / "cmp" / "summary.csv", newline="") as f:
        summary = list(csvlib.DictReader(f))
    assert list(summary[0])[:7] == ["optimizer", "final_loss", "train_accuracy", "test_accuracy", "iterations", "seconds", "converged"]
    assert all(r["train_accuracy"] == "" and r["test_accuracy"] == "" and float(r["test_r2"]) > 0.9 for r in summary)
    assert abs(rows[0]["final_loss"] - rows[2]["final_loss"]) < 1e-6  # a linear least-squares problem: one minimum
    text = cli("compare-optimizers", config, "--out", tmp_path / "cmp2").stdout
    assert "test R²" in text and "always predict the training mean" in text


def test_the_shipped_diabetes_config_resolves(monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parent.parent)
    out = cli("summary", "configs/diabetes_mlp.yaml").stdout
    assert "loss mse" in out
    config = yaml.safe_load(open("configs/diabetes_mlp.yaml"))
    assert config["data"]["task"] == "regression" and config["data"]["test_split"] == 0.2
