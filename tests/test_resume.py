"""Exact resume: interrupted anywhere (in-process or by a real signal), a resumed run matches an uninterrupted one bit for bit."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import assert_same_run, history_lines, make_digits, mlp_config, run_arrays, write_config

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.errors import TrainingInterrupted
from nncli.training import Callback


class InterruptAt(Callback):
    """Raise a stop request, as a signal handler would, after the given update."""

    def __init__(self, step: int, signum=signal.SIGINT):
        self.step, self.signum = step, signum

    def on_batch_end(self, trainer):
        if trainer.state.step == self.step:
            trainer.stop._handle(self.signum, None)


RANDOM_LAYERS = [  # dropout and rrelu draw random numbers every batch; batchnorm keeps running statistics
    {"type": "flatten"},
    {"type": "dense", "units": 8, "activation": "rrelu"},
    {"type": "batchnorm"},
    {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 3},
]


def minibatch_config(digits, epochs=3):
    """Mini-batch Adam with a schedule, augmentation, early stopping, dropout, rrelu and batchnorm: every kind of state a run keeps."""
    config = mlp_config(digits, epochs=epochs, batch_size=20,
                        schedule={"type": "warmup", "epochs": 1, "then": {"type": "reduce_on_plateau", "patience": 1}},
                        early_stopping={"patience": 5})
    config["data"]["augment"] = {"shift": 1.0, "rotation": 5}
    config["model"]["layers"] = RANDOM_LAYERS
    return config


def interrupted_then_resumed(config, tmp_path, steps, signum=signal.SIGINT):
    """Run, stopping after each of `steps` in turn and resuming from last.npz, until done."""
    out = tmp_path / "resumed"
    resume = None
    for step in steps:
        with pytest.raises(TrainingInterrupted) as err:
            nncli.train(config, out=None if resume else out, resume=resume, callbacks=[InterruptAt(step, signum)])
        assert err.value.exit_code == 128 + signum
        resume = err.value.checkpoint
        assert "--resume" in str(err.value) and resume in str(err.value)
    return nncli.train(config, resume=resume)


@pytest.mark.parametrize("steps", [[3], [10], [7, 15], [1, 2, 25]], ids=["mid-epoch", "epoch-boundary", "twice", "three-times"])
def test_minibatch_resume_is_bitwise_identical(tmp_path, digits, steps):
    config = minibatch_config(digits)  # 192 training samples / 20 = 10 batches per epoch
    straight = nncli.train(config, out=tmp_path / "straight")
    assert straight.state.step == 30
    assert_same_run(straight, interrupted_then_resumed(config, tmp_path, steps))


def test_sigterm_exit_code(tmp_path, digits):
    config = minibatch_config(digits)
    with pytest.raises(TrainingInterrupted) as err:
        nncli.train(config, out=tmp_path / "r", callbacks=[InterruptAt(4, signal.SIGTERM)])
    assert err.value.exit_code == 143 and "SIGTERM" in str(err.value)


def test_full_batch_resume_is_bitwise_identical(tmp_path, digits):
    config = mlp_config(digits, epochs=6)
    config["optimizer"] = {"type": "gd", "learning_rate": 0.5}
    straight = nncli.train(config, out=tmp_path / "straight")
    assert_same_run(straight, interrupted_then_resumed(config, tmp_path, [2, 4]))


def test_resume_can_extend_a_finished_run(tmp_path, digits):
    config = mlp_config(digits, epochs=4)
    straight = nncli.train(config, out=tmp_path / "straight")
    short = nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "short")
    assert_same_run(straight, nncli.train(config, resume=short.final_checkpoint))


# -- real signals to a real process -------------------------------------------------
def _start(config_path, out, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nncli", "train", str(config_path), "--out", str(out), "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _wait_for_epochs(out, count, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = out / "history.csv"
        if path.exists() and len(path.read_text().splitlines()) > count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("training did not progress")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_training_process_saves_and_resumes_exactly(tmp_path, signum):
    data = make_digits(tmp_path / "data", n_train=1500, n_test=50)
    config = mlp_config(data, epochs=400, batch_size=8, schedule={"type": "step", "step_size": 2, "gamma": 0.7})
    config["data"]["augment"] = {"shift": 1.0}
    config["model"]["layers"] = RANDOM_LAYERS
    path = write_config(tmp_path / "c.yaml", config)
    out = tmp_path / "run"
    proc = _start(path, out)
    _wait_for_epochs(out, 1, proc)
    time.sleep(0.05)  # somewhere inside an epoch, most likely
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("error: interrupted by") and "--resume" in message and "Traceback" not in stderr
    checkpoint = out / "checkpoints" / "last.npz"
    state = read_checkpoint(checkpoint).meta["train_state"]
    stop_epoch = state["epoch"] + 2
    # finish a couple of epochs past the interruption and compare with a straight run of that length
    resumed = subprocess.run(
        [sys.executable, "-m", "nncli", "train", str(path), "--resume", str(checkpoint), "-q", "--set", f"training.epochs={stop_epoch}"],
        capture_output=True, text=True, timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    config["training"]["epochs"] = stop_epoch
    straight = nncli.train(config, out=tmp_path / "straight")
    assert history_lines(out) == history_lines(straight.run_dir)
    for key, value in run_arrays(straight.final_checkpoint).items():
        np.testing.assert_array_equal(value, run_arrays(checkpoint)[key], err_msg=key)


def test_a_second_ctrl_c_during_the_save_does_not_corrupt_it(tmp_path):
    data = make_digits(tmp_path / "data", n_train=1500, n_test=50)
    path = write_config(tmp_path / "c.yaml", mlp_config(data, epochs=400, batch_size=8))
    out = tmp_path / "run"
    proc = _start(path, out)
    _wait_for_epochs(out, 1, proc)
    for _ in range(5):  # a burst of Ctrl-C
        proc.send_signal(signal.SIGINT)
        time.sleep(0.002)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    read_checkpoint(out / "checkpoints" / "last.npz")  # loads and verifies
    assert not list((out / "checkpoints").glob("*.tmp"))


@pytest.mark.parametrize("minimiser", ["bfgs", "lbfgs", "cg", "newton"])
def test_second_order_resume_is_bitwise_identical(tmp_path, table, minimiser):
    config = {
        "name": "tab", "seed": 0,
        "data": {"source": "csv", "path": str(table), "target": "label", "validation_split": 0.2},
        "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "optimizer": {"type": minimiser, "tolerance_grad": 0.0, "tolerance_change": 0.0},
        "training": {"epochs": 8, "dtype": "float64"},
    }
    straight = nncli.train(config, out=tmp_path / "straight")
    assert straight.state.step == 8
    assert_same_run(straight, interrupted_then_resumed(config, tmp_path, [3, 5]))


# -- where a resumed run writes ------------------------------------------------------
def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["sub/mine.npz", "checkpoints/last.npz", "checkpoints/mine.npz"])
def test_resume_from_a_checkpoint_outside_its_run_folder_starts_a_new_one(tmp_path, digits, where):
    """Only <run>/checkpoints/last.npz of a real run folder continues in place; elsewhere nothing is overwritten."""
    config = mlp_config(digits, epochs=4)
    straight = nncli.train(config, out=tmp_path / "straight")
    short = nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "short")
    mine = tmp_path / "mine"
    (mine / where).parent.mkdir(parents=True)
    (mine / where).write_bytes(short.final_checkpoint.read_bytes())
    (mine / "config.yaml").write_text("my own notes\n")
    if where != "checkpoints/last.npz":  # a complete-looking run folder around the copy
        (mine / "history.csv").write_text("epoch,train_loss\n1,2\n")
    (mine / ".draft.tmp").write_text("keep me")
    before = _files(mine)
    resumed = nncli.train(config, resume=mine / where)
    assert resumed.run_dir.resolve() == (tmp_path / "runs" / "tiny").resolve()
    assert _files(mine) == before
    assert_same_run(straight, resumed)


def test_resume_from_best_does_not_overwrite_the_later_epochs(tmp_path, digits):
    run = nncli.train(mlp_config(digits, epochs=4, schedule={"type": "step", "step_size": 1, "gamma": 20.0}), out=tmp_path / "run")
    best = read_checkpoint(run.best_checkpoint).meta["epoch"]
    assert best < 4, "the test needs a best epoch before the last"
    before = _files(run.run_dir)
    resumed = nncli.train(read_checkpoint(run.best_checkpoint).config, resume=run.best_checkpoint)
    assert resumed.run_dir != run.run_dir and _files(run.run_dir) == before
    assert len(resumed.history) == 4


def test_resume_in_place_from_inside_the_checkpoints_folder(tmp_path, digits, monkeypatch):
    config = mlp_config(digits, epochs=3)
    straight = nncli.train(config, out=tmp_path / "straight")
    nncli.train(mlp_config(digits, epochs=2), out=tmp_path / "short")
    monkeypatch.chdir(tmp_path / "short" / "checkpoints")
    resumed = nncli.train(config, resume="last.npz")
    assert resumed.run_dir.resolve() == (tmp_path / "short").resolve()
    assert history_lines(tmp_path / "short") == history_lines(straight.run_dir)


# -- how to continue -----------------------------------------------------------------
def _continue_command(message: str) -> list[str]:
    import shlex

    argv = shlex.split(message.split("continue with: ", 1)[1])
    assert argv[:2] == ["nncli", "train"]
    return argv[2:]


def test_the_continue_command_repeats_overrides_and_seed(tmp_path, digits):
    from typer.testing import CliRunner

    from nncli.cli import app

    path = write_config(tmp_path / "my config.yaml", mlp_config(digits, epochs=2))
    overrides = ["training.batch_size=20", "optimizer={type: adam, learning_rate: 0.02}"]
    with pytest.raises(TrainingInterrupted) as err:
        nncli.train(path, overrides, seed=3, out=tmp_path / "r", callbacks=[InterruptAt(4)])
    argv = _continue_command(str(err.value))
    assert argv[0] == str(path) and "--seed" in argv and argv[argv.index("--seed") + 1] == "3"
    result = CliRunner().invoke(app, ["train", *argv, "--quiet"])
    assert result.exit_code == 0, result.output
    straight = nncli.train(path, overrides, seed=3, out=tmp_path / "straight")
    assert history_lines(tmp_path / "r") == history_lines(straight.run_dir)


def test_the_continue_command_of_a_seeds_run_resumes_that_seed(tmp_path, digits):
    from typer.testing import CliRunner

    from nncli.cli import app

    path = write_config(tmp_path / "c.yaml", mlp_config(digits, epochs=2))
    with pytest.raises(TrainingInterrupted) as err:
        nncli.train_seeds(path, 2, ["training.batch_size=20"], out=tmp_path / "s", seed=5, callbacks=[InterruptAt(3)])
    argv = _continue_command(str(err.value))
    assert argv[argv.index("--seed") + 1] == "5" and str(tmp_path / "s" / "seed-5") in argv[-1]
    result = CliRunner().invoke(app, ["train", *argv, "--quiet"])
    assert result.exit_code == 0, result.output


def test_resume_with_another_config_names_the_differing_key_and_both_values(tmp_path, digits):
    from typer.testing import CliRunner

    from nncli.cli import app

    run = nncli.train(mlp_config(digits), out=tmp_path / "run")
    changed = mlp_config(digits, epochs=5)  # epochs may differ; the learning rate may not
    changed["optimizer"]["learning_rate"] = 0.02
    path = write_config(tmp_path / "c.yaml", changed)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "learning_rate" in text)
    result = CliRunner().invoke(app, ["train", str(path), "--resume", str(run.final_checkpoint)])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith(f"error: {path}:{line}: optimizer: differs from the config in {run.final_checkpoint}")
    assert "optimizer.learning_rate is 0.02 here, 0.01 in the checkpoint" in message
    layers = CliRunner().invoke(app, ["train", str(path), "--resume", str(run.final_checkpoint), "--set", "optimizer.learning_rate=0.01",
                                      "--set", "model.layers.1.units=9"])
    assert "model.layers.1.units is 9 here, 8 in the checkpoint" in layers.stderr


def test_recurrent_resume_is_bitwise_identical(tmp_path, digits):
    """An LSTM and a bidirectional GRU, both with dropout and recurrent dropout (masks drawn every batch), on
    8×8 digits read as 8 rows of 8 pixels: interrupted mid-epoch and resumed, the run is the uninterrupted one."""
    config = mlp_config(digits, epochs=2, batch_size=20, schedule="cosine")
    config["data"]["sequence"] = "rows"
    config["model"]["layers"] = [
        {"type": "lstm", "units": 6, "return_sequences": True, "dropout": 0.2, "recurrent_dropout": 0.3},
        {"type": "bidirectional", "layer": {"type": "gru", "units": 4, "dropout": 0.1, "recurrent_dropout": 0.2}},
        {"type": "dense", "units": 3},
    ]
    straight = nncli.train(config, out=tmp_path / "straight")
    assert_same_run(straight, interrupted_then_resumed(config, tmp_path, [4, 13]))
