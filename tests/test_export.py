"""`nncli export CKPT --format onnx`: onnxruntime computes what nncli's evaluation forward computes, to 1e-5 in float32.

Real checkpoints of small models trained for one epoch on tiny data (digits as images and as rows, a
variable-length .ts file whose batches are NaN-padded), the shipped configs' models with random weights,
and the refusals: a model kind that is no layer stack, a layer the exporter cannot map, a bad --format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from helpers import make_digits, mlp_config
from test_sequence_data import write_ts
from typer.testing import CliRunner

import nncli
from nncli.checkpoint import read_checkpoint
from nncli.cli import app
from nncli.data import DATA_SOURCES
from nncli.errors import ConfigError, UsageError
from nncli.export import export_model, export_onnx
from nncli.layers import LAYERS, Layer
from nncli.special import softmax

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
SEED = np.random.SeedSequence(0)


def run_onnx(model_bytes: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"input": x.astype(np.float32)}))}


def max_difference(model, proto, x: np.ndarray, probabilities: bool = True) -> float:
    """max |onnxruntime − nncli| over logits (and probabilities)."""
    expected = np.array(model.forward(x.astype(np.float32), training=False), np.float64)
    got = run_onnx(proto.SerializeToString(), x)
    assert set(got) == ({"logits", "probabilities"} if probabilities else {"logits"})
    assert got["logits"].shape == expected.shape and got["logits"].dtype == np.float32
    worst = float(np.max(np.abs(got["logits"] - expected)))
    if probabilities:
        worst = max(worst, float(np.max(np.abs(got["probabilities"] - softmax(expected)))))
    return worst


def check_checkpoint(checkpoint: Path, x: np.ndarray) -> float:
    """Export through the command, then compare with the checkpoint's own model on x."""
    result = CliRunner().invoke(app, ["export", str(checkpoint)])
    assert result.exit_code == 0, result.output
    written = Path(result.stdout.strip().splitlines()[-1])
    assert written == checkpoint.with_suffix(".onnx") and written.is_file()
    proto = onnx.load(written)
    onnx.checker.check_model(proto)
    model = read_checkpoint(checkpoint).build_model()
    worst = max_difference(model, proto, x)
    assert worst < TOL, worst
    return worst


def train(config: dict, out: Path) -> Path:
    config = {**config, "training": {**config["training"], "epochs": 1}}
    return nncli.train(config, out=out).final_checkpoint


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp("digits"), n_train=48, n_test=16)


@pytest.fixture(scope="module")
def vowels(tmp_path_factory) -> Path:
    """A two-class .ts file of 2 series and 2..9 steps: batches are NaN-padded to 9."""
    folder = tmp_path_factory.mktemp("ts")
    path, _ = write_ts(folder / "toy_TRAIN.ts", [3, 5, 2, 9, 4, 6, 7, 2, 8, 5] * 3)
    write_ts(folder / "toy_TEST.ts", [9, 2, 5, 3, 7, 1])
    return path


def with_layers(base: dict, layers: list) -> dict:
    return {**base, "model": {"layers": layers}}


def test_an_mlp_with_every_activation_matches(digits, tmp_path):
    activations = ["linear", "sigmoid", "tanh", "relu", {"type": "leaky_relu", "alpha": 0.2}, "softmax", {"type": "elu", "alpha": 0.7},
                   "softplus", {"type": "swish", "beta": 1.5}, "gelu", {"type": "gelu", "approximate": True}, "prelu", "rrelu"]
    layers = [{"type": "flatten"}]
    for act in activations:
        layers.append({"type": "dense", "units": 6, "activation": act})
    layers += [{"type": "prelu", "shared": True}, {"type": "elu"}, {"type": "rrelu", "lower": 0.1, "upper": 0.5}, {"type": "dense", "units": 3}]
    ckpt = train(with_layers(mlp_config(digits), layers), tmp_path / "run")
    x = np.random.default_rng(0).normal(scale=3.0, size=(32, 8, 8, 1))  # both sides of every kink
    check_checkpoint(ckpt, x)


CNNS = {
    "seed-like": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},  # its ReLU runs after the pool
        {"type": "maxpool2d", "pool_size": 2},
        {"type": "conv2d", "filters": 5, "kernel_size": 3, "strides": 2, "padding": "same"},
        {"type": "batchnorm"},
        {"type": "avgpool2d", "pool_size": 2, "strides": 1, "padding": "same"},
        {"type": "dropout", "rate": 0.3},
        {"type": "flatten"},
        {"type": "dense", "units": 3},
    ],
    "odd geometry": [
        {"type": "conv2d", "filters": 3, "kernel_size": [2, 3], "strides": [1, 2], "padding": "same", "activation": "prelu"},
        {"type": "maxpool2d", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "batchnorm"},
        {"type": "avgpool2d", "pool_size": 2},
        {"type": "global_avgpool2d"},
        {"type": "dense", "units": 3},
    ],
}


@pytest.mark.parametrize("name", CNNS)
def test_a_small_cnn_matches(digits, tmp_path, name):
    ckpt = train(with_layers(mlp_config(digits), CNNS[name]), tmp_path / "run")
    check_checkpoint(ckpt, np.random.default_rng(1).normal(size=(24, 8, 8, 1)))


RECURRENT = {
    "lstm": [{"type": "lstm", "units": 5}, {"type": "dense", "units": 3}],
    "gru stacked, reset_after true then false": [
        {"type": "gru", "units": 5, "return_sequences": True},
        {"type": "gru", "units": 4, "reset_after": False},
        {"type": "dense", "units": 3},
    ],
    "rnn go_backwards, sequences, avg pool": [
        {"type": "rnn", "units": 4, "go_backwards": True, "return_sequences": True},
        {"type": "global_avgpool1d"},
        {"type": "dense", "units": 3},
    ],
    "lstm go_backwards relu": [{"type": "lstm", "units": 4, "go_backwards": True, "activation": "relu"}, {"type": "dense", "units": 3}],
    "dense on sequences, lstm sequences, max pool": [
        {"type": "dense", "units": 6, "activation": "tanh"},
        {"type": "lstm", "units": 4, "return_sequences": True},
        {"type": "dense", "units": 5},
        {"type": "global_maxpool1d"},
        {"type": "dense", "units": 3},
    ],
    "bidirectional lstm concat": [{"type": "bidirectional", "layer": {"type": "lstm", "units": 4}}, {"type": "dense", "units": 3}],
    "bidirectional gru sum, sequences": [
        {"type": "bidirectional", "merge": "sum", "layer": {"type": "gru", "units": 4, "return_sequences": True}},
        {"type": "global_avgpool1d"},
        {"type": "dense", "units": 3},
    ],
    "bidirectional rnn mul, go_backwards": [
        {"type": "bidirectional", "merge": "mul", "layer": {"type": "rnn", "units": 4, "go_backwards": True, "return_sequences": True}},
        {"type": "global_maxpool1d"},
        {"type": "dense", "units": 3},
    ],
    "bidirectional gru ave, reset_after false, stacked": [
        {"type": "bidirectional", "merge": "ave", "layer": {"type": "gru", "units": 4, "reset_after": False, "return_sequences": True}},
        {"type": "bidirectional", "merge": "concat", "layer": {"type": "lstm", "units": 3}},
        {"type": "dense", "units": 3},
    ],
}


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_models_match_on_rows_of_digits(digits, tmp_path, name):
    config = with_layers(mlp_config(digits), RECURRENT[name])
    config["data"] = {**config["data"], "sequence": "rows"}
    ckpt = train(config, tmp_path / "run")
    check_checkpoint(ckpt, np.random.default_rng(2).normal(size=(16, 8, 8)))


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_models_match_on_nan_padded_sequences(vowels, tmp_path, name):
    layers = [*RECURRENT[name][:-1], {"type": "dense", "units": 2}]  # two classes
    config = with_layers(mlp_config(vowels), layers)
    config["data"] = {"source": "ts", "path": str(vowels), "validation_split": 0.2}
    ckpt = train(config, tmp_path / "run")
    x = DATA_SOURCES.create(config["data"], ("data",)).load(SEED).test.x
    assert x.shape[1:] == tuple(read_checkpoint(ckpt).meta["input_shape"]) and np.isnan(x[:, -1, 0]).sum() >= 4
    lengths = (~np.isnan(x[:, :, 0])).sum(axis=1)
    assert set(lengths) == {9, 2, 5, 3, 7, 1}
    check_checkpoint(ckpt, x)


def shipped(name: str):
    return nncli.load_experiment(REPO / "configs" / name)


@pytest.mark.parametrize("config,shape,classes", [("mnist_cnn.yaml", (28, 28, 1), 10), ("mnist_mlp.yaml", (28, 28, 1), 10),
                                                  ("japanese_vowels.yaml", (29, 12), 9)])
def test_the_shipped_configs_models_match_with_random_weights(config, shape, classes):
    model = shipped(config).build_model(shape, classes)
    rng = np.random.default_rng(3)
    model.initialize(rng)
    model.theta += rng.normal(scale=0.01, size=model.theta.shape).astype(model.dtype)  # non-zero biases too (logits ~2: float32 noise ~1e-6)
    x = rng.random((8, *shape))
    if len(shape) == 2:  # utterances of 7 to 29 frames, padded with NaN
        for i, length in enumerate([7, 29, 12, 20, 8, 29, 15, 10]):
            x[i, length:] = np.nan
    proto = export_model(model, shape, probabilities=True)
    onnx.checker.check_model(proto)
    assert max_difference(model, proto, x) < TOL


def test_export_never_overwrites_and_writes_where_asked(digits, tmp_path):
    ckpt = train(mlp_config(digits), tmp_path / "run")
    first = export_onnx(ckpt)
    again = export_onnx(ckpt)
    assert (first.name, again.name) == ("last.onnx", "last-2.onnx")
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "mlp.onnx")])
    assert result.exit_code == 0 and result.stdout.strip().splitlines()[-1] == str(tmp_path / "mlp.onnx")
    assert export_onnx(ckpt, tmp_path) == tmp_path / "last.onnx"  # a folder: the checkpoint's name in it
    proto = onnx.load(tmp_path / "mlp.onnx")
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["nncli.input_shape"] == "[8, 8, 1]" and "classes" in meta["nncli.preprocessing"]
    mse = {**mlp_config(digits), "loss": "mse"}  # no cross_entropy: logits alone
    proto = onnx.load(export_onnx(train(mse, tmp_path / "mse")))
    assert [o.name for o in proto.graph.output] == ["logits"]


def refused(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and result.stdout == "", result.output
    return lines[0]


def test_a_hopfield_checkpoint_is_refused(tmp_path):
    config = {"name": "mem", "data": {"source": "random_patterns", "neurons": 16, "patterns": 2}, "model": {"type": "hopfield"}}
    stored = nncli.train(config, out=tmp_path / "mem").final_checkpoint
    line = refused(["export", str(stored)])
    assert "a hopfield model; export covers layer-stack models (model.type: sequential) only" in line
    assert not stored.with_suffix(".onnx").exists()


def test_a_bad_format_is_refused_with_a_suggestion(digits, tmp_path):
    ckpt = train(mlp_config(digits), tmp_path / "run")
    assert refused(["export", str(ckpt), "--format", "onx"]) == "error: --format: unknown export format 'onx' (known: onnx). Did you mean 'onnx'?"
    assert "Did you mean" not in refused(["export", str(ckpt), "--format", "tflite"])
    assert not list(ckpt.parent.glob("*.onnx"))


class Doubler(Layer):
    """A plugin layer: y = 2x."""

    independent_samples = True

    def build(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        return 2 * x

    def backward(self, grad_out):
        return 2 * grad_out


@pytest.fixture
def doubler():
    LAYERS.register("doubler")(Doubler)
    yield
    LAYERS.unregister("doubler")


def test_layers_that_cannot_be_exported_are_named_in_one_line_before_anything_is_written(digits, tmp_path, doubler):
    layers = [{"type": "flatten"}, {"type": "doubler"}, {"type": "dense", "units": 4}, {"type": "doubler"}, {"type": "dense", "units": 3}]
    ckpt = train(with_layers(mlp_config(digits), layers), tmp_path / "run")
    line = refused(["export", str(ckpt)])
    assert line.startswith(f"error: {ckpt}: cannot export to ONNX: model.layers.1 doubler, model.layers.3 doubler (export covers ")
    assert not list(ckpt.parent.glob("*.onnx"))
    with pytest.raises(ConfigError, match="model.layers.1 doubler"):
        export_model(read_checkpoint(ckpt).build_model(), (8, 8, 1), probabilities=False)


def test_without_onnx_the_error_says_what_to_install(digits, tmp_path, monkeypatch):
    ckpt = train(mlp_config(digits), tmp_path / "run")
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # `import onnx` raises ImportError
    with pytest.raises(UsageError, match=r'pip install "nncli\[onnx\]"'):
        export_onnx(ckpt)
    assert not list(ckpt.parent.glob("*.onnx"))


def test_a_recurrent_layer_reading_reversed_sequences_is_refused():
    """go_backwards sequences come in reading order (padding first); ONNX's recurrent ops need it at the end."""
    from nncli.errors import ConfigError
    from nncli.export import refuse_unexportable
    from nncli.models import Sequential

    model = Sequential.from_specs([{"type": "gru", "units": 2, "go_backwards": True, "return_sequences": True},
                                   {"type": "dense", "units": 2}, {"type": "lstm", "units": 2}, {"type": "dense", "units": 2}], (5, 3))
    with pytest.raises(ConfigError, match=r"model.layers.2 lstm\(2\) \(reads the reversed sequences of a go_backwards layer\)"):
        refuse_unexportable(model.layers)


def test_a_regression_exports_its_prediction_in_the_targets_units(tmp_path):
    """`prediction` = logits·std + mean: what `nncli predict` writes for the same rows."""
    import csv as csvlib

    import onnxruntime

    import nncli
    from nncli.checkpoint import read_checkpoint
    from nncli.export import export_onnx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    table = tmp_path / "t.csv"
    table.write_text("a,b,c,y\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{50 + 10 * r[0] - 5 * r[1]:.4f}\n" for r in x))
    config = {"name": "reg", "seed": 0, "data": {"source": "csv", "path": str(table), "task": "regression", "target": "y"},
              "model": {"layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 1}]},
              "loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.03}, "training": {"epochs": 3, "batch_size": 16}}
    checkpoint = nncli.train(config, out=tmp_path / "run").final_checkpoint
    onnx_path = export_onnx(checkpoint, tmp_path / "m.onnx")
    predicted = nncli.api.predict(checkpoint, [table], out=tmp_path / "p.csv")
    prep = read_checkpoint(checkpoint).meta["preprocessing"]
    inputs = ((x - np.asarray(prep["mean"])) / np.asarray(prep["std"])).astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (prediction,) = session.run(["prediction"], {"input": inputs})
    with open(tmp_path / "p.csv", newline="") as f:
        expected = [float(r["y"]) for r in csvlib.DictReader(f)]
    np.testing.assert_allclose(prediction[:, 0], expected, rtol=1e-5, atol=1e-4)
    assert len(predicted.rows) == 80
