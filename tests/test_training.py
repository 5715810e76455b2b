"""Training through the Python API: learning, determinism, run-folder files, checkpoints and resume."""

import csv
import json

import numpy as np
import pytest
from helpers import csv_rows, mlp_config, write_config

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.errors import CheckpointError, ConfigError, DivergedError

COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_training_learns_and_writes_the_run_folder(tmp_path, digits, plots):
    config = mlp_config(digits, epochs=4)
    result = nncli.train(config, out=tmp_path / "run")
    run = result.run_dir
    assert (run / "config.yaml").is_file() and (run / "loss.png").stat().st_size > 1000
    assert result.final_checkpoint == run / "checkpoints" / "last.npz"
    assert result.best_checkpoint == run / "checkpoints" / "best.npz"
    with open(run / "history.csv", newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    rows = csv_rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_accuracy"]) > 0.9
    assert float(rows[0]["learning_rate"]) == 0.01
    assert not list(run.glob("**/*.tmp"))


def test_same_seed_same_history_different_seed_different(tmp_path, digits):
    config = mlp_config(digits, epochs=2)
    a = nncli.train(config, out=tmp_path / "a").run_dir
    b = nncli.train(config, out=tmp_path / "b").run_dir
    c = nncli.train(config, out=tmp_path / "c", seed=1).run_dir
    assert without_seconds(csv_rows(a)) == without_seconds(csv_rows(b))
    assert without_seconds(csv_rows(a)) != without_seconds(csv_rows(c))
    np.testing.assert_array_equal(
        read_checkpoint(a / "checkpoints/last.npz").arrays["param/1.dense/W"],
        read_checkpoint(b / "checkpoints/last.npz").arrays["param/1.dense/W"],
    )


def test_checkpoint_follows_the_contract(tmp_path, digits):
    result = nncli.train(mlp_config(digits, epochs=1), out=tmp_path / "run")
    with np.load(result.final_checkpoint, allow_pickle=False) as npz:
        keys = set(npz.files)
        meta = json.loads(str(npz["__nncli__"]))
        assert npz["param/1.dense/W"].shape == (64, 8) and npz["param/1.dense/b"].shape == (8,)
        assert npz["param/2.dense/W"].shape == (8, 3)
    assert {"param/1.dense/W", "param/1.dense/b", "param/2.dense/W", "param/2.dense/b"} <= keys
    assert meta["format"] == "nncli-checkpoint" and meta["version"] == 1 and meta["epoch"] == 1
    assert meta["config"]["model"]["layers"][1]["units"] == 8
    assert meta["preprocessing"]["classes"] == [0, 1, 2] and meta["input_shape"] == [8, 8, 1]


def test_eval_rebuilds_the_model_from_the_checkpoint_alone(tmp_path, digits):
    result = nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "run")
    report = nncli.evaluate([result.final_checkpoint], split="val")
    history_row = result.history[-1]
    assert report.models[0].evaluation.loss == pytest.approx(history_row["val_loss"], rel=1e-6)
    assert report.models[0].evaluation.accuracy == history_row["val_accuracy"]
    assert report.models[0].evaluation.confusion.sum() == report.models[0].evaluation.n


def test_no_validation_means_no_best_checkpoint(tmp_path, digits):
    config = mlp_config(digits, epochs=1)
    config["data"]["validation_split"] = 0.0
    result = nncli.train(config, out=tmp_path / "run")
    assert result.best_checkpoint is None and not (result.run_dir / "checkpoints/best.npz").exists()
    assert csv_rows(result.run_dir)[0]["val_loss"] == ""


def test_existing_run_folder_is_never_reused(tmp_path, digits):
    config = mlp_config(digits, epochs=1)
    first = nncli.train(config, out=tmp_path / "run").run_dir
    before = (first / "history.csv").read_bytes()
    second = nncli.train(config, out=tmp_path / "run").run_dir
    assert second == tmp_path / "run-2"
    assert (first / "history.csv").read_bytes() == before
    default = nncli.train(config).run_dir  # runs/<name> under the current directory
    assert default.name == "tiny" and default.parent.name == "runs"


def test_failed_start_leaves_no_run_folder(tmp_path, digits):
    config = mlp_config(digits)
    config["model"]["layers"][1]["units"] = 0
    with pytest.raises(ConfigError):
        nncli.train(config, out=tmp_path / "run")
    config = mlp_config(tmp_path / "missing")
    with pytest.raises(nncli.NncliError):
        nncli.train(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_at_an_epoch_boundary_equals_an_uninterrupted_run(tmp_path, digits):
    full = nncli.train(mlp_config(digits, epochs=3), out=tmp_path / "full")
    part = nncli.train(mlp_config(digits, epochs=1), out=tmp_path / "part")
    cont = nncli.train(mlp_config(digits, epochs=3), resume=part.final_checkpoint)
    assert cont.run_dir == part.run_dir
    assert without_seconds(csv_rows(cont.run_dir)) == without_seconds(csv_rows(full.run_dir))
    a = read_checkpoint(full.final_checkpoint).arrays
    b = read_checkpoint(cont.final_checkpoint).arrays
    for key in a:
        if key.startswith(("param/", "optim/")):
            np.testing.assert_array_equal(a[key], b[key])


def test_resume_refuses_a_different_config(tmp_path, digits):
    part = nncli.train(mlp_config(digits, epochs=1), out=tmp_path / "part")
    changed = mlp_config(digits, epochs=2)
    changed["optimizer"]["learning_rate"] = 0.5
    with pytest.raises(ConfigError, match="optimizer: differs from the config in"):
        nncli.train(write_config(tmp_path / "c.yaml", changed), resume=part.final_checkpoint)


def test_weights_start_a_new_run_from_trained_weights(tmp_path, digits):
    part = nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "part")
    config = mlp_config(digits, epochs=1)
    config["optimizer"] = {"type": "sgd", "learning_rate": 0.01}
    tuned = nncli.train(config, weights=part.final_checkpoint, out=tmp_path / "tuned")
    assert tuned.run_dir != part.run_dir
    assert float(csv_rows(tuned.run_dir)[0]["train_loss"]) < float(csv_rows(part.run_dir)[0]["train_loss"])
    wrong = mlp_config(digits)
    wrong["model"]["layers"][1]["units"] = 5
    with pytest.raises(CheckpointError, match="has shape"):
        nncli.train(wrong, weights=part.final_checkpoint, out=tmp_path / "bad")


def test_full_batch_gradient_descent_takes_one_step_per_epoch(tmp_path, digits):
    config = mlp_config(digits, epochs=3)
    config["optimizer"] = {"type": "gd", "learning_rate": 0.5}
    result = nncli.train(config, out=tmp_path / "gd")
    assert result.state.step == 3


def test_divergence_stops_before_the_update_and_keeps_the_last_checkpoint(tmp_path, digits):
    config = mlp_config(digits, epochs=3)
    config["optimizer"] = {"type": "sgd", "learning_rate": 1e30}
    with pytest.raises(DivergedError) as err:
        nncli.train(config, out=tmp_path / "boom")
    message = str(err.value)
    assert "training diverged at epoch 1, batch" in message and "learning_rate" in message
    assert "gradient norms" in message


def test_python_api_summary_and_components(digits):
    summary = nncli.summarize(mlp_config(digits))
    assert summary.total_params == 64 * 8 + 8 + 8 * 3 + 3
    names = {(c.kind, c.name) for c in nncli.components()}
    assert ("layer", "dense") in names and ("optimizer", "adam") in names and ("data", "csv") in names


def normalised_config(digits, epochs):
    """The tiny MLP with the issue-5 layers: PReLU, batch norm, dropout and RReLU."""
    config = mlp_config(digits, epochs=epochs)
    config["model"]["layers"] = [
        {"type": "flatten"},
        {"type": "dense", "units": 8, "activation": "prelu"},
        {"type": "batchnorm", "momentum": 0.9},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 8, "activation": "rrelu"},
        {"type": "dense", "units": 3},
    ]
    return config


def test_batchnorm_running_statistics_survive_a_checkpoint(tmp_path, digits):
    result = nncli.train(normalised_config(digits, 1), out=tmp_path / "run")
    checkpoint = read_checkpoint(result.final_checkpoint)
    mean, var = checkpoint.arrays["state/2.batchnorm/running_mean"], checkpoint.arrays["state/2.batchnorm/running_var"]
    assert mean.shape == var.shape == (8,)
    assert not np.allclose(mean, 0.0) and not np.allclose(var, 1.0)  # trained, not the initial values
    assert checkpoint.arrays["param/1.dense/act.alpha"].shape == (8,)
    assert {"param/2.batchnorm/gamma", "param/2.batchnorm/beta"} <= set(checkpoint.arrays)
    model = checkpoint.build_model()
    np.testing.assert_array_equal(model.layers[2].state["running_mean"], mean)
    np.testing.assert_array_equal(model.layers[2].state["running_var"], var)
    report = nncli.evaluate([result.final_checkpoint], split="val")
    assert report.models[0].evaluation.loss == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)
    assert report.models[0].evaluation.accuracy == result.history[-1]["val_accuracy"]


def test_resume_with_random_layers_and_batchnorm_equals_an_uninterrupted_run(tmp_path, digits):
    full = nncli.train(normalised_config(digits, 2), out=tmp_path / "full")
    part = nncli.train(normalised_config(digits, 1), out=tmp_path / "part")
    cont = nncli.train(normalised_config(digits, 2), resume=part.final_checkpoint)
    assert without_seconds(csv_rows(cont.run_dir)) == without_seconds(csv_rows(full.run_dir))
    a = read_checkpoint(full.final_checkpoint).arrays
    b = read_checkpoint(cont.final_checkpoint).arrays
    for key in a:
        if key.startswith(("param/", "state/", "optim/")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# -- the cost of writing a run folder stays linear in the epochs -----------------------------
def test_each_epoch_formats_only_its_own_history_row_and_shares_the_history(tmp_path, digits, monkeypatch):
    import nncli.runfolder as runfolder
    from nncli.training import TrainState

    state = TrainState(history=[{"epoch": 1}])
    assert state.to_meta()["history"] is state.history  # no deep copy per save: serialising copies anyway
    formatted = []
    real = runfolder.history_line
    monkeypatch.setattr(runfolder, "history_line", lambda row: formatted.append(row["epoch"]) or real(row))
    result = nncli.train(mlp_config(digits, epochs=6), out=tmp_path / "run")
    assert formatted == [1, 2, 3, 4, 5, 6]  # not 1 + 2 + ... + 6 rows
    assert without_seconds(csv_rows(result.run_dir)) == without_seconds(
        [dict(zip(COLUMNS, line.split(","))) for line in runfolder.format_history(result.history).splitlines()[1:]]
    )


def test_best_checkpoint_is_the_last_ones_bytes_not_a_second_snapshot(tmp_path, digits, monkeypatch):
    import os

    import nncli.checkpoint

    saves = []
    real = nncli.runfolder.save_checkpoint
    monkeypatch.setattr(nncli.runfolder, "save_checkpoint", lambda path, *a: saves.append(path) or real(path, *a))
    result = nncli.train(mlp_config(digits, epochs=3), out=tmp_path / "run")
    assert result.state.best_epoch == 3  # improved in the last epoch: best is last
    assert [p.name for p in saves] == ["last.npz", "initial.npz", "last.npz", "last.npz"]  # the start joins the first save
    assert os.stat(result.best_checkpoint).st_ino == os.stat(result.final_checkpoint).st_ino  # a hard link
    assert read_checkpoint(result.best_checkpoint).meta["epoch"] == 3
    assert not list(result.run_dir.glob("**/*.tmp"))


def test_best_checkpoint_survives_later_epochs_and_falls_back_to_a_copy(tmp_path, digits, monkeypatch):
    import os

    config = mlp_config(digits, epochs=4, schedule={"type": "step", "step_size": 1, "gamma": 20.0})  # best at epoch 2
    linked = nncli.train(config, out=tmp_path / "linked")
    assert linked.state.best_epoch == 2

    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    copied = nncli.train(config, out=tmp_path / "copied")
    for run in (linked, copied):
        best, last = read_checkpoint(run.best_checkpoint), read_checkpoint(run.final_checkpoint)
        assert best.meta["epoch"] == 2 and last.meta["epoch"] == 4
        assert best.meta["train_state"]["history"] == last.meta["train_state"]["history"][:2]
    assert os.stat(copied.best_checkpoint).st_ino != os.stat(copied.final_checkpoint).st_ino
    assert not list(copied.run_dir.glob("**/*.tmp"))


def test_one_csv_writer_for_every_result_file():
    import math

    from nncli import api, files
    from nncli.runfolder import format_history

    row = {"epoch": 3, "train_loss": 0.1 + 0.2, "train_accuracy": 1.0, "val_loss": None, "val_accuracy": math.nan,
           "learning_rate": np.float64(1e-3), "seconds": math.inf}
    assert format_history([row]) == (
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,seconds\n3,0.30000000000000004,1.0,,,0.001,inf\n"
    )
    columns = ["name", "a", "b", "c", "d", "e"]
    rows = [{"name": 'adam, "fast"', "a": True, "b": np.int64(7), "c": -math.inf, "d": math.nan, "e": None}, {"name": "x"}]
    expected = 'name,a,b,c,d,e\n"adam, ""fast""",true,7,-inf,,\nx,,,,,\n'  # what compare.py's own writer gave
    assert files.csv_text(columns, rows) == expected
    assert api.csv_text is files.csv_text  # summary.csv, runs.csv and curves.csv use it too
