"""nncli sweep on the serial engine: the grid, the files, the scores, validation before anything runs, resume.

The Ray engine's tests (real processes, a real cluster, killed workers) are in test_sweep_ray.py.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import nncli
from nncli.experiment import load_experiment
from helpers import cli, csv_rows, history_lines, make_digits, mlp_config, one_error_line, write_config


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def config(tmp_path, digits):
    return write_config(tmp_path / "tiny.yaml", mlp_config(digits, epochs=3))


def sweep(*args):
    return cli("sweep", *args)


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_grid_of_two_rates_and_two_seeds_gives_ordinary_trials_ranked_by_their_best_validation_loss(tmp_path, config):
    out = tmp_path / "sw"
    result = sweep(config, "--grid", "optimizer.learning_rate=0.01,0.1", "--seeds", "2", "--engine", "serial", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    runs = read(out / "runs.csv")
    assert [r["trial"] for r in runs] == ["t000", "t001", "t002", "t003"]
    assert [(r["optimizer.learning_rate"], r["seed"]) for r in runs] == [("0.01", "0"), ("0.01", "1"), ("0.1", "0"), ("0.1", "1")]
    assert {r["status"] for r in runs} == {"ok"} and {r["attempts"] for r in runs} == {"1"}
    assert {r["pid"] for r in runs} == {str(os.getpid())}  # serial: this process
    for row in runs:  # each trial is the run `nncli train --set ... --seed` makes, and its score the best val_loss
        reference = nncli.train(config, [f"optimizer.learning_rate={row['optimizer.learning_rate']}"], seed=int(row["seed"]),
                                out=tmp_path / "ref" / row["trial"])
        assert history_lines(out / "trials" / row["trial"]) == history_lines(reference.run_dir)
        history = csv_rows(out / "trials" / row["trial"])
        best = min(history, key=lambda h: float(h["val_loss"]))
        assert (float(row["score"]), row["best_epoch"]) == (float(best["val_loss"]), best["epoch"])
        assert row["train_loss"] == history[-1]["train_loss"] and row["epochs"] == "3"
    summary = read(out / "summary.csv")
    assert [s["rank"] for s in summary] == ["1", "2"]
    assert float(summary[0]["score"]) <= float(summary[1]["score"])
    for point in summary:
        scores = [float(r["score"]) for r in runs if r["optimizer.learning_rate"] == point["optimizer.learning_rate"]]
        assert float(point["score"]) == pytest.approx(sum(scores) / 2, rel=1e-12)
        assert float(point["score_sd"]) == pytest.approx(abs(scores[0] - scores[1]) / 2**0.5, rel=1e-9)
    best_rate = float(summary[0]["optimizer.learning_rate"])
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best == load_experiment(config, [f"optimizer.learning_rate={best_rate}"]).resolved()
    assert (out / "scores.png").stat().st_size > 1000
    assert "best point: optimizer.learning_rate=" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("t0")]
    assert len(lines) == 4 and all(" ok " in line for line in lines)


def test_the_sweep_section_is_the_default_and_a_grid_flag_replaces_one_key(tmp_path, digits):
    raw = mlp_config(digits, epochs=1)
    raw["sweep"] = {"grid": {"optimizer.learning_rate": [0.001, 0.01], "training.batch_size": [8, 16]}, "seeds": 1,
                    "engine": "serial", "metric": "train_loss"}
    config = write_config(tmp_path / "c.yaml", raw)
    result = nncli.sweep(config, grid=["training.batch_size=32"], out=tmp_path / "s")
    assert [(r["optimizer.learning_rate"], r["training.batch_size"]) for r in result.rows] == [("0.001", "32"), ("0.01", "32")]
    assert result.plan.metric == "train_loss" and result.plan.mode == "min"
    assert yaml.safe_load((tmp_path / "s" / "trials" / "t001" / "config.yaml").read_text())["training"]["batch_size"] == 32
    assert result.best == result.summary[0] and result.best["score"] == min(r["score"] for r in result.rows)


def test_accuracy_is_maximised_and_a_diverged_trial_is_a_result_not_a_failure_of_the_sweep(tmp_path, config):
    result = sweep(config, "--grid", "optimizer.learning_rate=0.01,1e30", "--metric", "val_accuracy", "--engine", "serial",
                   "--out", tmp_path / "s", "--quiet")
    assert result.exit_code == 0, result.output
    rows = read(tmp_path / "s" / "runs.csv")
    assert [r["status"] for r in rows] == ["ok", "diverged"]
    assert "training diverged" in rows[1]["error"] and rows[1]["score"] == ""
    summary = read(tmp_path / "s" / "summary.csv")
    assert summary[0]["optimizer.learning_rate"] == "0.01" and summary[1]["ok"] == "0" and summary[1]["score"] == ""
    assert "1 trial(s) did not finish ok: t001 diverged" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--grid", "optimizer.learning_rat=0.1,0.2"], ["--grid optimizer.learning_rat=0.1", "learning_rate"]),
        (["--grid", "model.layers.1.units=4,-1"], ["--grid model.layers.1.units=-1"]),
        (["--grid", "optimizer.learning_rate"], ["--grid", "expected KEY=V1,V2"]),
        (["--grid", "optimizer.learning_rate=0.1,0.1"], ["lists a value twice"]),
        (["--grid", "optimizer.learning_rate=0.1", "--set", "data.validation_split=0", "--metric", "val_loss"], ["--metric", "validation"]),
        (["--grid", "optimizer.learning_rate=0.1", "--metric", "val_los"], ["--metric", "val_loss"]),
        (["--grid", "optimizer.learning_rate=0.1", "--engine", "spark"], ["--engine", "serial or ray"]),
        (["--grid", "optimizer.learning_rate=0.1", "--engine", "serial", "--address", "auto"], ["--address", "ray engine"]),
        (["--grid", "optimizer.learning_rate=0.1", "--seeds", "0"], ["--seeds", "positive"]),
        (["--grid", "optimizer.learning_rate=0.1", "--workers", "0"], ["--workers", "positive"]),
    ],
)
def test_every_trial_is_validated_before_any_folder_exists(tmp_path, config, args, fragments, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folder would be runs/ here
    result = sweep(config, *args, *([] if "--engine" in args else ["--engine", "serial"]))
    one_error_line(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_resume_runs_only_the_unfinished_trials_and_refuses_new_plans(tmp_path, config):
    out = tmp_path / "s"
    first = nncli.sweep(config, grid=["optimizer.learning_rate=0.01,0.1"], engine="serial", out=out)
    done = (out / "trials" / "t000" / "history.csv").stat().st_mtime_ns
    runs = (out / "runs.csv").read_text().splitlines()
    runs[2] = runs[2].replace(",ok,", ",pending,")  # t001 as a stopped sweep leaves a trial that never started
    (out / "runs.csv").write_text("\n".join(runs) + "\n")
    import shutil

    shutil.rmtree(out / "trials" / "t001")
    again = cli("sweep", "--resume", out, "--engine", "serial", "--quiet")
    assert again.exit_code == 0, again.output
    assert "1 trial(s) to run, 2 in all" in again.stderr
    assert (out / "trials" / "t000" / "history.csv").stat().st_mtime_ns == done  # finished: untouched
    resumed = read(out / "runs.csv")
    assert [r["status"] for r in resumed] == ["ok", "ok"]
    for before, after in zip(first.rows, resumed):
        assert float(after["score"]) == before["score"] and int(after["best_epoch"]) == before["best_epoch"]
    one_error_line(cli("sweep", "--resume", out, "--grid", "optimizer.learning_rate=1"), "--resume", "--grid")
    one_error_line(cli("sweep", "--resume", tmp_path), "not a sweep folder")
    write_config(config, {**yaml.safe_load(config.read_text()), "seed": 5})  # the experiment changed under the sweep
    one_error_line(cli("sweep", "--resume", out, "--engine", "serial"), "config changed", "seed")


def test_without_ray_the_ray_engine_is_one_line_saying_how_to_install_it_and_the_default_runs_here(tmp_path, config, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    one_error_line(sweep(config, "--grid", "optimizer.learning_rate=0.1", "--engine", "ray"), "--engine", "pip install", "nncli[sweep]")
    one_error_line(cli("train", config, "--seeds", "2", "--engine", "ray", "--out", tmp_path / "t"), "ray is not installed")
    assert not (tmp_path / "t").exists()
    result = sweep(config, "--grid", "optimizer.learning_rate=0.1", "--out", tmp_path / "s", "--quiet")
    assert result.exit_code == 0, result.output
    assert "ray is not installed" in result.stderr and "one at a time" in result.stderr


def test_sigint_stops_a_serial_sweep_with_130_and_its_resume_line(tmp_path, digits):
    """The running trial saves its checkpoint; the others stay pending; --resume finishes them."""
    slow = make_digits(tmp_path / "slow", n_train=3000, n_test=30)
    config = write_config(tmp_path / "slow.yaml", mlp_config(slow, epochs=3, batch_size=1))
    out = tmp_path / "s"
    process = subprocess.Popen(
        [sys.executable, "-m", "nncli", "sweep", config, "--grid", "optimizer.learning_rate=0.01,0.02", "--engine", "serial",
         "--out", out, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    history = out / "trials" / "t000" / "history.csv"
    deadline = time.monotonic() + 60
    while not (history.exists() and len(history.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"continue with: nncli sweep --resume {out}" in err.splitlines()[-1]
    rows = read(out / "runs.csv")
    assert [r["status"] for r in rows] == ["interrupted", "pending"]
    assert (out / "trials" / "t000" / "checkpoints" / "last.npz").exists() and not (out / "summary.csv").exists()
    result = nncli.sweep(resume=out, engine="serial")
    assert [r["status"] for r in result.rows] == ["ok", "ok"]
    reference = nncli.train(config, ["optimizer.learning_rate=0.01"], seed=0, out=tmp_path / "ref")
    assert history_lines(out / "trials" / "t000") == history_lines(reference.run_dir)
