"""One training loop and one model contract: compare-optimizers trains as `nncli train` does, every
training setting applies or is refused, and a model kind registered from outside plugs into every command."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from helpers import make_csv, make_digits, mlp_config, write_config
from typer.testing import CliRunner

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.cli import app
from nncli.metrics import Evaluation, confusion_matrix
from nncli.models import MODELS, ModelKind, ModelPlan, PlanRow


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr("nncli.plots.plot_curves", lambda *a, **k: None)
    monkeypatch.setattr("nncli.plots.plot_history", lambda *a, **k: None)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_csv(tmp_path_factory.mktemp("table") / "table.csv")


# -- one loop ------------------------------------------------------------------------
def scheduled_config(digits, epochs=3, **training):
    """Adam with warm-up then cosine decay, clipping and augmentation: every setting a mini-batch update has."""
    config = mlp_config(
        digits, epochs=epochs, batch_size=16, clip_norm=0.5,
        schedule={"type": "warmup", "epochs": 1, "then": "cosine"}, **training,
    )  # fmt: skip
    config["data"]["augment"] = {"shift": 1.0}
    return config


def test_compare_runs_adam_update_for_update_as_train_does(digits, tmp_path):
    config = scheduled_config(digits)
    trained = nncli.train(config, out=tmp_path / "train")
    updates = trained.state.step
    assert updates == 3 * math.ceil(192 / 16)  # 240 images, 20% for validation
    config["compare"] = {"optimizers": [{"type": "adam", "learning_rate": 0.01}], "batch_size": 16,
                         "max_iterations": updates, "tolerance_grad": 0.0, "tolerance_change": 0.0}
    compared = nncli.compare_optimizers(config, out=tmp_path / "compare")
    (run,) = compared.comparison.runs
    assert run.iterations == updates and run.stop_reason == "max_iterations"
    assert run.schedule == "warmup(1) > cosine"
    trained_theta = read_checkpoint(trained.final_checkpoint).build_model().theta
    np.testing.assert_array_equal(run.theta, trained_theta)
    # and the settings matter: without them the same comparison takes other steps
    for key in ("schedule", "clip_norm"):
        del config["training"][key]
    del config["data"]["augment"]
    plain = nncli.compare_optimizers(config, out=tmp_path / "plain").comparison.runs[0]
    assert not np.array_equal(plain.theta, run.theta)


def schedule_comparison(table, schedule):
    config = {
        "name": "sched", "seed": 0,
        "data": {"source": "csv", "path": str(table), "test_split": 0.25, "validation_split": 0.0},
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "training": {"dtype": "float64", "batch_size": 16},
        "compare": {"max_iterations": 30, "optimizers": [{"type": "adam", "learning_rate": 0.05}, "bfgs"]},
    }  # fmt: skip
    if schedule is not None:
        config["training"]["schedule"] = schedule
    return config


def test_a_top_level_schedule_shapes_first_order_runs_only(table, tmp_path):
    plain = nncli.compare_optimizers(schedule_comparison(table, None), out=tmp_path / "a").comparison
    cosine = nncli.compare_optimizers(schedule_comparison(table, "cosine"), out=tmp_path / "b").comparison
    runs = {(c, r.optimizer): r for c, comparison in (("plain", plain), ("cosine", cosine)) for r in comparison.runs}
    assert runs["plain", "adam"].losses != runs["cosine", "adam"].losses
    assert runs["plain", "bfgs"].losses == runs["cosine", "bfgs"].losses
    assert [(r.optimizer, r.schedule) for r in cosine.rows] == [("adam", "cosine"), ("bfgs", "line search")]
    with (tmp_path / "b" / "summary.csv").open() as f:
        assert [row["schedule"] for row in csv.DictReader(f)] == ["cosine", "line search"]


def test_an_entry_schedule_overrides_the_top_level_one(table, tmp_path):
    config = schedule_comparison(table, "cosine")
    config["compare"]["optimizers"] = [{"type": "adam", "learning_rate": 0.05, "schedule": {"type": "step", "step_size": 1, "gamma": 0.5}},
                                       {"type": "adam", "learning_rate": 0.05, "label": "adam-cosine"}]
    rows = nncli.compare_optimizers(config, out=tmp_path / "o").rows
    assert [(r.optimizer, r.schedule) for r in rows] == [("adam", "step(1, 0.5)"), ("adam-cosine", "cosine")]


def test_a_schedule_on_a_minimiser_entry_is_one_line_and_nothing_is_written(table, tmp_path):
    config = schedule_comparison(table, None)
    config["compare"]["optimizers"][1] = {"type": "bfgs", "schedule": "cosine"}
    path = write_config(tmp_path / "c.yaml", config)
    result = CliRunner().invoke(app, ["compare-optimizers", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "compare.optimizers.1.schedule" in lines[0] and "bfgs" in lines[0] and "line search" in lines[0]
    assert not (tmp_path / "out").exists()


# -- a model kind from outside ----------------------------------------------------------
class ClassMeans:
    """The arrays of a nearest-class-mean classifier."""

    def __init__(self, input_shape, num_classes, dtype):
        self.input_shape, self.dtype = tuple(input_shape), np.dtype(dtype)
        self.output_shape = (num_classes,)
        self.means = np.zeros((num_classes, math.prod(input_shape)), self.dtype)
        self.num_params = self.means.size

    def named_params(self):
        yield "means", self.means

    def named_state(self):
        return iter(())

    def initialize(self, rng):
        pass


class NearestMean(ModelKind):
    """Nearest class mean: each input gets the class whose training mean is closest."""

    gradient_trained = False

    def __init__(self, metric: str = "euclidean"):
        self.metric = metric

    def plan(self, input_shape, num_classes, dtype):
        rows = [PlanRow(0, f"class means ({self.metric})", (num_classes,), num_classes * math.prod(input_shape))]
        return ModelPlan(tuple(input_shape), (num_classes,), rows, np.dtype(dtype).itemsize)

    def build(self, input_shape, num_classes, dtype, settings):
        return ClassMeans(input_shape, num_classes, dtype)

    def fit(self, model, split):
        x = split.x.reshape(len(split), -1)
        for k in range(len(model.means)):
            model.means[k] = x[split.y == k].mean(axis=0)

    def evaluate(self, model, loss, split, num_classes, batch_size=1000, keep_probabilities=False):
        x = split.x.reshape(len(split), -1)
        distance = ((x[:, None, :] - model.means[None]) ** 2).sum(axis=2)
        predicted = distance.argmin(axis=1)
        return Evaluation(len(split), float("nan"), float(np.mean(predicted == split.y)),
                          confusion_matrix(split.y, predicted, num_classes))


@pytest.fixture
def nearest_mean():
    MODELS.register("nearest_mean")(NearestMean)
    yield
    MODELS.unregister("nearest_mean")


def kind_config(digits):
    return {"name": "means", "data": {"source": "idx", "path": str(digits), "validation_split": 0.2},
            "model": {"type": "nearest_mean"}}


def test_a_model_kind_registered_outside_nncli_trains_evaluates_and_summarises(nearest_mean, digits, tmp_path):
    runner = CliRunner()
    config = write_config(tmp_path / "means.yaml", kind_config(digits))
    summary = runner.invoke(app, ["summary", str(config)])
    assert summary.exit_code == 0, summary.output
    assert "class means (euclidean)" in summary.stdout and "192" in summary.stdout  # 3 classes × 8×8 pixels

    trained = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert trained.exit_code == 0, trained.output
    last = tmp_path / "run" / "checkpoints" / "last.npz"
    assert trained.stdout.strip().splitlines()[-1] == str(last)
    with (tmp_path / "run" / "history.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["epoch"] == "1" and row["train_loss"] == "" and float(row["train_accuracy"]) > 0.5

    checkpoint = read_checkpoint(last)
    assert checkpoint.config["model"] == {"type": "nearest_mean", "metric": "euclidean"}
    assert "loss" not in checkpoint.config and "optimizer" not in checkpoint.config
    model = checkpoint.build_model()
    expected = NearestMean().build((8, 8, 1), 3, "float32", None)
    data = checkpoint.experiment().data.load(checkpoint.experiment().seeds("data"))
    NearestMean().fit(expected, data.train)
    np.testing.assert_array_equal(model.means, expected.means)

    report = runner.invoke(app, ["eval", str(last), "--json"])
    assert report.exit_code == 0, report.output
    assert '"loss": null' in report.stdout and '"accuracy": ' in report.stdout


def test_a_one_shot_kind_refuses_gradient_settings(nearest_mean, digits, tmp_path):
    runner = CliRunner()
    for key, value, where in (("optimizer", "adam", "optimizer"), ("loss", "mse", "loss"),
                              ("training", {"epochs": 3}, "training.epochs")):
        config = {**kind_config(digits), key: value}
        result = runner.invoke(app, ["train", str(write_config(tmp_path / "c.yaml", config)), "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, (key, result.output)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and f"{where}:" in line and "nearest_mean" in line
        assert not (tmp_path / "r").exists()
