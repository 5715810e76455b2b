"""nncli visualize: the pictures show the checkpoint's own numbers (weights, the loss along the line from the
initial weights, the model's own mistakes), recurrent and Hopfield views, and one-line refusals."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import nncli
from conftest import REPO
from helpers import make_csv, make_digits, write_config
from nncli.cli import app

runner = CliRunner()
MNIST = ["data.path=" + str(REPO / "datasets" / "mnist"), "data.limit=600", "training.epochs=1"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """configs/mnist_mlp.yaml (784-16-16-10), trained for one epoch on 540 digits."""
    folder = tmp_path_factory.mktemp("mnist") / "run"
    return nncli.train(REPO / "configs" / "mnist_mlp.yaml", MNIST, out=folder)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def files_of(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def checkpoint_data(path):
    """The checkpoint's data, preprocessed as it was trained, through the Python API."""
    ckpt = nncli.read_checkpoint(path)
    experiment = ckpt.experiment()
    return ckpt, experiment, experiment.data.load(experiment.seeds("data"), ckpt.meta["preprocessing"])


def decode(png, cmap="RdBu_r"):
    """A unit's PNG back to colour-map positions 0..255 (the nearest entry of the map for every pixel)."""
    rgb = np.asarray(Image.open(png).convert("RGB"), np.float64)
    lut = matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255
    nearest = np.argmin(((rgb.reshape(-1, 1, 3) - lut[None]) ** 2).sum(axis=2), axis=1)
    return nearest.reshape(rgb.shape[:2])


def test_weights_are_the_first_dense_layers_columns_as_28x28_pictures(mnist_run, tmp_path):
    before = files_of(mnist_run.run_dir)
    result = invoke("visualize", mnist_run.final_checkpoint, "--what", "weights", "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "v" / "weights.png")]
    units = sorted((tmp_path / "v" / "units").glob("unit-*.png"))
    assert len(units) == 16
    W = nncli.read_checkpoint(mnist_run.final_checkpoint).arrays["param/1.dense/W"].astype(np.float64)  # (784, 16)
    for k, png in enumerate(units):
        picture = decode(png)
        w = W[:, k].reshape(28, 28)
        assert picture.shape == (28, 28)
        assert picture.flat[np.argmax(w)] == picture.max() and picture.flat[np.argmin(w)] == picture.min()
        assert np.corrcoef(picture.ravel(), w.ravel())[0, 1] > 0.99  # every pixel where W[:, k] puts it
        assert abs(np.corrcoef(picture.T.ravel(), w.ravel())[0, 1]) < 0.5  # a transposed picture would not pass
        assert picture.max() == 255 or picture.min() == 0  # centred on zero: ±max|w| are the map's ends
    assert Image.open(tmp_path / "v" / "weights.png").size[0] > 500
    assert files_of(mnist_run.run_dir) == before  # nothing written into the run folder


def test_landscape_ends_are_the_initial_weights_and_the_checkpoint(mnist_run, tmp_path):
    out = tmp_path / "land"
    result = invoke("visualize", mnist_run.final_checkpoint, "--what", "landscape", "--samples", "300", "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out / "landscape.csv")))
    line = {float(r["alpha"]): float(r["loss"]) for r in rows if r["kind"] == "line"}
    about = json.loads((out / "landscape.json").read_text())
    assert about["samples"] == 300 and about["start"].endswith("initial.npz")
    ckpt, experiment, data = checkpoint_data(mnist_run.final_checkpoint)
    index = np.array(about["sample"])
    x, y = data.train.x[index], data.train.y[index]
    # independently: the initial weights drawn from the config's seed, as train does, and the checkpoint's
    start = experiment.build_model(data.input_shape, data.num_classes)
    start.initialize(np.random.default_rng(experiment.seeds("init")))
    stored = nncli.read_checkpoint(mnist_run.run_dir / "checkpoints" / "initial.npz").build_model()
    assert np.array_equal(stored.theta, start.theta)  # the run kept the weights it started from
    end = ckpt.build_model()
    for alpha, model in ((0.0, start), (1.0, end)):
        expected = float(experiment.loss.forward(model.forward(x), y))
        assert line[alpha] == pytest.approx(expected, rel=1e-5), alpha
    assert line[0.0] > line[1.0]  # one epoch of training lowered it
    assert len([r for r in rows if r["kind"] == "plane"]) == 17 * 17

    # an older run without initial.npz: the start is rebuilt from the seed, the same weights
    alone = tmp_path / "alone" / "last.npz"
    alone.parent.mkdir()
    shutil.copy(mnist_run.final_checkpoint, alone)
    result = invoke("visualize", alone, "--what", "landscape", "--samples", "300", "--out", tmp_path / "land2")
    assert result.exit_code == 0, result.output
    again = {float(r["alpha"]): float(r["loss"]) for r in csv.DictReader(open(tmp_path / "land2" / "landscape.csv")) if r["kind"] == "line"}
    assert "rebuilt" in json.loads((tmp_path / "land2" / "landscape.json").read_text())["start"]
    assert again[0.0] == line[0.0] and again[1.0] == line[1.0]

    # --from: the line starts at another checkpoint of the same architecture (here the run's last, so it is flat)
    result = invoke("visualize", alone, "--what", "landscape", "--samples", "300", "--from", mnist_run.final_checkpoint, "--out", tmp_path / "land3")
    assert result.exit_code == 0, result.output
    flat = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "land3" / "landscape.csv")) if r["kind"] == "line"]
    assert flat == [line[1.0]] * len(flat)


def test_errors_are_exactly_the_models_own_misclassifications(mnist_run, tmp_path):
    out = tmp_path / "err"
    result = invoke("visualize", mnist_run.final_checkpoint, "--what", "errors", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / "errors.png"), str(out / "confusion.png")]
    rows = list(csv.DictReader(open(out / "errors.csv")))
    ckpt, _, data = checkpoint_data(mnist_run.final_checkpoint)
    predicted = np.argmax(ckpt.build_model().forward(data.test.x), axis=1)
    wrong = np.flatnonzero(predicted != data.test.y)
    assert sorted(int(r["index"]) for r in rows) == wrong.tolist()
    assert all(int(r["predicted"]) == predicted[int(r["index"])] and int(r["true"]) == data.test.y[int(r["index"])] for r in rows)
    confidence = [float(r["probability"]) for r in rows]
    assert confidence == sorted(confidence, reverse=True)  # most confident first, as errors.png shows them
    evaluation = nncli.evaluate([mnist_run.final_checkpoint]).models[0].evaluation
    assert len(rows) == evaluation.confusion.sum() - np.trace(evaluation.confusion)


def test_every_view_that_applies_by_default_in_a_folder_of_the_current_directory(mnist_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("visualize", mnist_run.final_checkpoint, "--index", "3", "--samples", "100")
    assert result.exit_code == 0, result.output
    out = tmp_path / "mnist_mlp-visualize"
    assert {Path(p).parent.resolve() for p in result.stdout.split()} == {out.resolve()}
    names = [Path(p).name for p in result.stdout.split()]
    assert names == ["weights.png", "activations-3.png", "errors.png", "confusion.png", "embedding.png", "landscape.png"]
    embedding = list(csv.DictReader(open(out / "embedding.csv")))
    assert len(embedding) == 10_000 and {r["label"] for r in embedding} == {str(k) for k in range(10)}
    assert invoke("visualize", mnist_run.final_checkpoint, "--what", "activations", "--index", "10000").exit_code == 2
    assert (tmp_path / "mnist_mlp-visualize-2").exists() is False  # refused before any folder was made


def test_recurrent_states_and_hopfield_patterns(tmp_path):
    digits = make_digits(tmp_path / "digits", n_train=60, n_test=12)
    lstm = write_config(tmp_path / "lstm.yaml", {
        "name": "rows", "data": {"source": "idx", "path": str(digits), "sequence": "rows"},
        "model": {"layers": [{"type": "lstm", "units": 5, "return_sequences": True}, {"type": "gru", "units": 4}, {"type": "dense", "units": 3}]},
        "training": {"epochs": 1},
    })
    run = nncli.train(lstm, out=tmp_path / "lstm")
    result = invoke("visualize", run.final_checkpoint, "--index", "2", "--out", tmp_path / "v")
    assert result.exit_code == 0, result.output
    names = [p.rsplit("/", 1)[1] for p in result.stdout.split()]
    assert "states-2.png" in names and "weights.png" not in names  # the first layer with weights is an lstm
    result = invoke("visualize", run.final_checkpoint, "--what", "weights", "--out", tmp_path / "w")
    assert result.exit_code == 2 and result.stderr.startswith("error:") and "first dense or conv2d" in result.stderr

    memory = write_config(tmp_path / "mem.yaml", {"name": "mem", "data": {"source": "random_patterns", "neurons": 25, "patterns": 3},
                                                  "model": {"type": "hopfield"}})
    stored = nncli.train(memory, out=tmp_path / "mem").final_checkpoint
    result = invoke("visualize", stored, "--index", "1", "--out", tmp_path / "h")
    assert result.exit_code == 0, result.output
    assert [p.rsplit("/", 1)[1] for p in result.stdout.split()] == ["patterns.png", "recall-1.png"]
    result = invoke("visualize", stored, "--what", "landscape", "--out", tmp_path / "h2")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Hopfield" in result.stderr


def test_conv_kernels_and_feature_maps(tmp_path):
    digits = make_digits(tmp_path / "digits", n_train=60, n_test=12)
    config = write_config(tmp_path / "conv.yaml", {
        "name": "conv", "data": {"source": "idx", "path": "nowhere"},
        "model": {"layers": [{"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu"}, {"type": "maxpool2d"},
                             {"type": "flatten"}, {"type": "dense", "units": 3}]},
        "training": {"epochs": 1},
    })
    run = nncli.train(config, ["data.path=" + str(digits)], out=tmp_path / "conv")
    moved = digits.rename(tmp_path / "moved")  # the data are elsewhere now: --data-path says where
    assert invoke("visualize", run.final_checkpoint, "--out", tmp_path / "v").exit_code == 2
    result = invoke("visualize", run.final_checkpoint, "--what", "weights,activations", "--out", tmp_path / "v", "--data-path", moved)
    assert result.exit_code == 0, result.output
    assert [Path(p).name for p in result.stdout.split()] == ["weights.png", "activations-0.png"]
    assert not (tmp_path / "v" / "units").exists()  # kernels are drawn as a grid only
    assert "3 filters of 3×3" in result.stderr


def test_options_that_do_not_fit_the_model_are_one_error_line(tmp_path):
    table = make_csv(tmp_path / "table.csv")
    config = write_config(tmp_path / "tab.yaml", {
        "name": "tab", "data": {"source": "csv", "path": str(table), "target": "label"},
        "model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "binary_cross_entropy", "training": {"epochs": 1},
    })
    run = nncli.train(config, out=tmp_path / "run")
    for args, words in (
        (["--what", "weights"], "3 features, not an image"),
        (["--what", "embedding"], "hidden layer"),
        (["--what", "wieghts"], "Did you mean 'weights'"),
        (["--what", "patterns"], "Hopfield"),
        (["--what", "errors", "--from", run.final_checkpoint], "--from"),
    ):
        result = invoke("visualize", run.final_checkpoint, *args, "--out", tmp_path / "v")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert not (tmp_path / "v").exists()
    result = invoke("visualize", run.final_checkpoint, "--out", tmp_path / "v")  # what applies: activations, errors, landscape
    assert result.exit_code == 0, result.output
    assert [p.rsplit("/", 1)[1] for p in result.stdout.split()] == ["activations-0.png", "confusion.png", "landscape.png"]
