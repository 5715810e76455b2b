"""Trainer features: schedules in history, early stopping, clipping, augmentation, gradient views, seeds, plots."""

import numpy as np
import pytest
from helpers import csv_rows, mlp_config
from typer.testing import CliRunner

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.cli import app
from nncli.data.augment import Augment
from nncli.errors import ConfigError


def test_history_records_the_scheduled_rate(tmp_path, digits):
    config = mlp_config(digits, epochs=4, schedule={"type": "step", "step_size": 2, "gamma": 0.5})
    run = nncli.train(config, out=tmp_path / "r").run_dir
    assert [float(r["learning_rate"]) for r in csv_rows(run)] == [0.01, 0.01, 0.005, 0.005]


def test_the_scheduled_rate_is_the_one_used(tmp_path, digits):
    # a schedule that zeroes the rate after epoch 1 must freeze the weights
    config = mlp_config(digits, epochs=3, schedule={"type": "step", "step_size": 1, "gamma": 1e-30})
    config["optimizer"] = {"type": "sgd", "learning_rate": 0.1}
    one = nncli.train({**config, "training": {**config["training"], "epochs": 2}}, out=tmp_path / "a")
    three = nncli.train(config, out=tmp_path / "b")
    a = read_checkpoint(one.final_checkpoint).arrays["param/1.dense/W"]
    b = read_checkpoint(three.final_checkpoint).arrays["param/1.dense/W"]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_early_stopping_restores_and_saves_the_best_weights(tmp_path, digits):
    config = mlp_config(digits, epochs=30, early_stopping={"monitor": "val_loss", "patience": 2})
    config["optimizer"]["learning_rate"] = 0.05
    result = nncli.train(config, out=tmp_path / "r")
    s = result.state
    assert s.stop_reason.startswith("early stopping: val_loss did not improve for 2 epochs")
    history = csv_rows(result.run_dir)
    assert len(history) == s.monitor_epoch + 2 < 30
    best = min(history, key=lambda r: float(r["val_loss"]))
    assert int(best["epoch"]) == s.monitor_epoch == s.best_epoch
    report = nncli.evaluate([result.final_checkpoint], split="val")
    assert report.models[0].evaluation.loss == pytest.approx(float(best["val_loss"]), rel=1e-6)


@pytest.mark.parametrize("patience,epochs", [(3, 40), (100, 8)], ids=["stopped by patience", "out of epochs"])
def test_early_stopping_ends_on_the_best_epochs_weights_bit_for_bit(tmp_path, table, patience, epochs):
    """A rate high enough that val_loss rises after its best epoch: the final checkpoint holds that epoch's weights."""
    config = {
        "name": "table", "seed": 0,
        "data": {"source": "csv", "path": str(table), "target": "label", "validation_split": 0.3},
        "model": {"layers": [{"type": "dense", "units": 16, "activation": "relu"}, {"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "optimizer": {"type": "adam", "learning_rate": 0.3},
        "training": {"epochs": epochs, "batch_size": 16, "early_stopping": {"monitor": "val_loss", "patience": patience}},
    }
    result = nncli.train(config, out=tmp_path / "r")
    losses = [row["val_loss"] for row in result.history]
    best_epoch = result.state.monitor_epoch
    assert losses.index(min(losses)) + 1 == best_epoch < len(losses) and losses[-1] > min(losses)  # a later, worse epoch
    final, best = read_checkpoint(result.final_checkpoint), read_checkpoint(result.best_checkpoint)
    assert best.meta["epoch"] == best_epoch and final.meta["epoch"] == len(losses)
    weights = [k for k in final.arrays if k.startswith(("param/", "state/"))]
    assert weights and weights == [k for k in best.arrays if k.startswith(("param/", "state/"))]
    for key in weights:
        np.testing.assert_array_equal(final.arrays[key], best.arrays[key], err_msg=key)


def test_early_stopping_on_validation_needs_validation_data(tmp_path, digits):
    config = mlp_config(digits, early_stopping={"patience": 2})
    config["data"]["validation_split"] = 0.0
    with pytest.raises(ConfigError, match="training.early_stopping.monitor: val_loss needs validation data"):
        nncli.train(config, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("clip", [{"clip_norm": 1e-3}, {"clip_value": 1e-5}])
def test_clipping_bounds_the_update(tmp_path, digits, clip):
    config = mlp_config(digits, epochs=1, dtype="float64", **clip)
    config["optimizer"] = {"type": "sgd", "learning_rate": 1.0}
    # the same run with a vanishing rate leaves the initial weights
    start = nncli.train({**config, "optimizer": {"type": "sgd", "learning_rate": 1e-300}}, out=tmp_path / "s")
    run = nncli.train(config, out=tmp_path / "r")
    before = read_checkpoint(start.final_checkpoint).arrays
    after = read_checkpoint(run.final_checkpoint).arrays
    theta0 = np.concatenate([before[k].ravel() for k in sorted(before) if k.startswith("param/")])
    theta1 = np.concatenate([after[k].ravel() for k in sorted(after) if k.startswith("param/")])
    steps = run.state.step
    if "clip_norm" in clip:
        assert np.linalg.norm(theta1 - theta0) <= steps * 1e-3 * (1 + 1e-9)
    else:
        assert np.abs(theta1 - theta0).max() <= steps * 1e-5 * (1 + 1e-9)
    assert np.abs(theta1 - theta0).max() > 0


def test_augmentation_is_vectorised_seeded_and_exact_for_integer_shifts():
    x = np.zeros((3, 7, 7, 1), np.float32)
    x[:, 3, 3, 0] = 1.0
    aug = Augment(crop_padding=2)
    a = aug(x, np.random.default_rng(0))
    b = aug(x, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == x.shape
    for img in a[..., 0]:  # an integer shift moves the dot without blurring it
        assert img.sum() == pytest.approx(1.0) and img.max() == pytest.approx(1.0)
    flipped = Augment(flip_horizontal=True)(np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1).repeat(64, 0), np.random.default_rng(1))
    assert {tuple(r) for r in flipped[:, 0, :, 0]} == {(0, 1, 2, 3), (3, 2, 1, 0)}
    assert not Augment().active


def test_rotation_keeps_the_centre_and_mass():
    x = np.zeros((50, 9, 9, 1))
    x[:, 4, 2:7, 0] = 1.0  # a horizontal bar through the centre
    out = Augment(rotation=90)(x, np.random.default_rng(0))
    np.testing.assert_allclose(out[:, 4, 4, 0], 1.0, atol=1e-9)
    assert out.sum(axis=(1, 2, 3)) == pytest.approx(np.full(50, 5.0), rel=0.35)


def test_augmented_training_changes_the_batches_but_not_evaluation(tmp_path, digits):
    plain = nncli.train(mlp_config(digits, epochs=1), out=tmp_path / "p")
    config = mlp_config(digits, epochs=1)
    config["data"]["augment"] = {"shift": 1.0, "rotation": 10}
    aug = nncli.train(config, out=tmp_path / "a")
    assert plain.history[0]["train_loss"] != aug.history[0]["train_loss"]
    again = nncli.train(config, out=tmp_path / "b")
    assert aug.history[0]["train_loss"] == again.history[0]["train_loss"]


def test_gradient_log_writes_rows_per_layer_and_epoch(tmp_path, digits):
    config = mlp_config(digits, epochs=2, log_gradients=True)
    run = nncli.train(config, out=tmp_path / "r").run_dir
    grad_rows = csv_rows(run, "gradients.csv")
    assert [(r["epoch"], r["layer"]) for r in grad_rows] == [("1", "1.dense"), ("1", "2.dense"), ("2", "1.dense"), ("2", "2.dense")]
    assert all(float(r["grad_norm"]) > 0 for r in grad_rows)
    assert 0 < float(grad_rows[0]["zero_fraction"]) < 1  # relu: some exact zeros
    assert grad_rows[1]["zero_fraction"] == ""  # logits layer has no activation
    assert (run / "gradients.png").stat().st_size > 1000


def test_deep_sigmoid_gradients_vanish_compared_with_relu(tmp_path, digits):
    def first_layer_norm(activation):
        config = mlp_config(digits, epochs=1, log_gradients=True)
        config["model"]["layers"] = [{"type": "flatten"}] + [
            {"type": "dense", "units": 16, "activation": activation} for _ in range(6)
        ] + [{"type": "dense", "units": 3}]
        config["optimizer"] = {"type": "sgd", "learning_rate": 0.01}
        run = nncli.train(config, out=tmp_path / activation).run_dir
        return float(csv_rows(run, "gradients.csv")[0]["grad_norm"])

    assert first_layer_norm("sigmoid") < first_layer_norm("relu") / 100


def test_seeds_train_copies_for_an_ensemble(tmp_path, mlp_yaml):
    result = CliRunner().invoke(app, ["train", str(mlp_yaml), "--seeds", "3", "--out", str(tmp_path / "ens"), "-q"])
    assert result.exit_code == 0, result.output
    paths = result.stdout.strip().splitlines()[-3:]
    assert paths == [str(tmp_path / "ens" / f"seed-{s}" / "checkpoints" / "last.npz") for s in range(3)]
    assert "nncli eval" in result.stderr
    report = nncli.evaluate(paths)
    assert report.ensemble is not None and len(report.models) == 3
    seeds = [read_checkpoint(p).config["seed"] for p in paths]
    assert seeds == [0, 1, 2]


def test_plot_overlays_runs_and_never_overwrites(tmp_path, digits):
    a = nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "a").run_dir
    b = nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "b").run_dir
    runner = CliRunner()
    first = runner.invoke(app, ["plot", str(a), str(b), "--out", str(tmp_path / "cmp.png")])
    second = runner.invoke(app, ["plot", str(a), "--out", str(tmp_path / "cmp.png")])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert first.stdout.strip() == str(tmp_path / "cmp.png")
    assert second.stdout.strip() == str(tmp_path / "cmp-2.png")
    bad = runner.invoke(app, ["plot", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and bad.stderr.startswith("error:")


def logistic_on_table(table, epochs):
    """Logistic regression on the tiny CSV with a seeded test split: each run seed draws its own split."""
    return {
        "name": "table", "seed": 0,
        "data": {"source": "csv", "path": str(table), "target": "label", "test_split": 0.25},
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "training": {"epochs": epochs, "batch_size": 16},
    }


def test_seeded_csv_runs_have_their_own_test_splits_so_eval_reports_their_mean(tmp_path, table):
    """`train --seeds` on CSV data splits by each seed: eval gives every model and their mean ± sd, no ensemble."""
    config = logistic_on_table(table, epochs=3)
    paths = [r.final_checkpoint for r in nncli.train_seeds(config, 3, out=tmp_path / "seeds")]
    report = nncli.evaluate(paths)
    assert report.ensemble is None and report.vote is None and "own test split" in report.note
    accuracies = [m.evaluation.accuracy for m in report.models]
    assert len(set(accuracies)) == 3  # so the spread below is not trivially 0
    assert len(set(accuracies)) > 1 or len({tuple(m.evaluation.confusion.ravel()) for m in report.models}) > 1
    mean, sd = report.accuracy_spread
    assert mean == pytest.approx(np.mean(accuracies)) and sd == pytest.approx(np.std(accuracies, ddof=1))
    result = CliRunner().invoke(app, ["eval", *map(str, paths)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"accuracy of the 3 models: mean {100 * mean:.2f}% ± {100 * sd:.2f}% (sd)" in result.stdout
    assert "ensemble" not in result.stdout.split("models:")[0]
    same = nncli.evaluate([paths[0], paths[0]])  # one split: an ensemble, and the spread of identical models is 0
    assert same.ensemble is not None and same.note is None and same.accuracy_spread[1] == 0.0
    # data.split_seed gives every seed the same split (and still its own initial weights): an ensemble
    config["data"]["split_seed"] = 7
    fixed = nncli.train_seeds(config, 3, out=tmp_path / "fixed")
    report = nncli.evaluate([r.final_checkpoint for r in fixed])
    assert report.ensemble is not None and report.note is None
    weights = [read_checkpoint(r.final_checkpoint).arrays["param/0.dense/W"] for r in fixed]
    assert not np.array_equal(weights[0], weights[1])


def test_gradient_plot_is_drawn_once_at_the_end_even_after_a_signal(tmp_path, digits, monkeypatch):
    import signal

    import nncli.plots
    from nncli.errors import TrainingInterrupted
    from nncli.training import Callback

    drawn = []
    real = nncli.plots.plot_gradients
    monkeypatch.setattr(nncli.plots, "plot_gradients", lambda rows, path: drawn.append(len(rows)) or real(rows, path))
    run = nncli.train(mlp_config(digits, epochs=3, log_gradients=True), out=tmp_path / "r").run_dir
    assert drawn == [6]  # three epochs × two layers, drawn once
    assert len(csv_rows(run, "gradients.csv")) == 6 and (run / "gradients.png").stat().st_size > 1000

    class StopAfterEpoch2(Callback):
        def on_epoch_end(self, trainer, row):
            if row["epoch"] == 2:
                trainer.stop._handle(signal.SIGINT, None)

    drawn.clear()
    with pytest.raises(TrainingInterrupted):
        nncli.train(mlp_config(digits, epochs=5, log_gradients=True), out=tmp_path / "s", callbacks=[StopAfterEpoch2()])
    assert drawn == [4] and (tmp_path / "s" / "gradients.png").is_file()


@pytest.mark.parametrize(
    "damage,fragment",
    [
        (lambda text: text.replace("\n1,", "\nx,", 1), "gradients.csv:2: column 'epoch': 'x' is not an epoch number"),
        (lambda text: text + ",1.dense,0.1,0,0\n", "gradients.csv:6: column 'epoch': '' is not an epoch number"),
        (lambda text: "garbage\n" + text, "gradients.csv:1: not a gradients.csv header (no column 'epoch')"),
        (lambda text: text.encode().replace(b"dense", b"d\xe9nse", 1), "gradients.csv: not readable as CSV"),
    ],
    ids=["bad epoch", "empty epoch", "no header", "not utf-8"],
)
def test_resume_with_a_damaged_gradient_log_is_one_error_line(tmp_path, digits, damage, fragment):
    from helpers import write_config

    run = nncli.train(mlp_config(digits, epochs=2, log_gradients=True), out=tmp_path / "r")
    log = run.run_dir / "gradients.csv"
    damaged = damage(log.read_text())
    log.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
    before = (run.run_dir / "history.csv").read_bytes(), run.final_checkpoint.read_bytes()
    longer = write_config(tmp_path / "longer.yaml", mlp_config(digits, epochs=3, log_gradients=True))
    result = CliRunner().invoke(app, ["train", str(longer), "--resume", str(run.final_checkpoint)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {log}") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert ((run.run_dir / "history.csv").read_bytes(), run.final_checkpoint.read_bytes()) == before


def test_eval_json_says_why_there_is_no_ensemble(tmp_path, table):
    import json

    config = logistic_on_table(table, epochs=2)
    paths = [str(r.final_checkpoint) for r in nncli.train_seeds(config, 2, out=tmp_path / "seeds")]
    result = CliRunner().invoke(app, ["eval", *paths, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["checkpoint"] for r in rows] == paths  # one object per checkpoint, no extra one
    assert all("own test split" in r["note"] for r in rows)
    single = CliRunner().invoke(app, ["eval", paths[0], "--json"])
    assert "note" not in json.loads(single.stdout)
