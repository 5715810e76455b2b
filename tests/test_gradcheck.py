"""`nncli gradcheck`: backprop against finite differences on a configured model."""

import json

import pytest
from conftest import REPO
from helpers import cli, mlp_config, one_error_line, write_config
from test_plugins import write_plugin

from nncli import plugins
from nncli.gradcheck import gradcheck


@pytest.fixture(autouse=True)
def _forget_plugins():
    yield
    plugins.unload_all()


def test_a_small_mlp_passes_with_a_table_and_json(tmp_path, digits):
    config = mlp_config(digits)
    config["model"]["layers"][1]["kernel_regularizer"] = {"type": "l2", "l2": 0.01}  # penalties are in the objective
    path = write_config(tmp_path / "mlp.yaml", config)
    result = cli("gradcheck", path, "--entries", "8")
    assert result.exit_code == 0, result.output
    for fragment in ("1.dense", "input", "ok"):
        assert fragment in result.stdout
    rows = json.loads(cli("gradcheck", path, "--json", "--entries", "8").stdout)
    assert rows["passed"] and rows["worst_relative_error"] < 1e-6
    assert [(r["layer"], r["array"]) for r in rows["rows"]] == [("1.dense", "W"), ("1.dense", "b"), ("2.dense", "W"), ("2.dense", "b"), ("0.flatten", "input")]
    assert rows["rows"][0]["checked"] == 8 and rows["rows"][3]["checked"] == 3  # all entries of a 3-vector


def test_dropout_and_batchnorm_are_checked_in_training_mode(tmp_path, digits):
    config = mlp_config(digits)
    config["model"]["layers"][1:1] = [{"type": "dense", "units": 6, "activation": "tanh"}, {"type": "batchnorm"}, {"type": "dropout", "rate": 0.3}]
    result = gradcheck(write_config(tmp_path / "c.yaml", config), entries=6)
    assert result.passed, [r.to_json() for r in result.rows]
    assert any(r.array == "gamma" and r.checked for r in result.rows)


def plugin_model(tmp_path, digits, factor):
    write_plugin(tmp_path, factor=factor)
    config = mlp_config(digits)
    config["plugins"] = ["my_layers.py"]
    config["model"]["layers"].insert(2, {"type": "square", "scale": 0.5})
    return write_config(tmp_path / "plugged.yaml", config)


def test_a_correct_plugin_layer_passes_and_a_wrong_backward_fails(tmp_path, digits):
    good = cli("gradcheck", plugin_model(tmp_path, digits, factor=2.0), "--entries", "6")
    assert good.exit_code == 0, good.output
    plugins.unload_all()
    bad = cli("gradcheck", plugin_model(tmp_path, digits, factor=1.0), "--entries", "6")  # d(x²)/dx missing its 2
    line = one_error_line(bad, code=1)
    assert "FAIL" in bad.stdout
    assert line.startswith("error: gradcheck: the backward of 2.square is wrong; worst: "), line
    assert json.loads(cli("gradcheck", tmp_path / "plugged.yaml", "--entries", "6", "--json").stdout)["culprit"] == "2.square"
    assert "tolerance 1e-06" in line


def test_entries_at_a_relu_kink_are_skipped_not_passed(tmp_path, digits):
    # relu straight on the pixels: the digits' background has exact zeros, so perturbing one crosses the kink
    config = mlp_config(digits)
    config["model"]["layers"].insert(1, {"type": "relu"})
    result = gradcheck(write_config(tmp_path / "kink.yaml", config), samples=8, entries=10_000)
    (row,) = [r for r in result.rows if r.array == "input"]
    assert row.skipped > 0 and row.checked + row.skipped == row.size and row.status == "ok"
    assert result.passed
    text = cli("gradcheck", tmp_path / "kink.yaml", "--samples", "8", "--entries", "10000").stdout
    assert "skipped at kinks" in text


def test_hopfield_is_one_line(tmp_path):
    config = {"name": "h", "data": {"source": "random_patterns", "neurons": 16, "patterns": 2}, "model": {"type": "hopfield"}}
    line = one_error_line(cli("gradcheck", write_config(tmp_path / "h.yaml", config)))
    assert "gradcheck does not apply" in line and "hopfield" in line


def test_bad_options_are_one_line(tmp_path, mlp_yaml):
    assert "--samples" in one_error_line(cli("gradcheck", mlp_yaml, "--samples", "0"))
    assert "--tolerance" in one_error_line(cli("gradcheck", mlp_yaml, "--tolerance", "-1"))


SHIPPED = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("hopfield"))


@pytest.mark.parametrize("config", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_pass(config):
    """Every shipped layer-stack config (classifiers, the regression, conv and recurrent nets), a few entries each."""
    from nncli.experiment import load_experiment

    path = load_experiment(config).data.spec["path"]
    result = cli("gradcheck", config, "--set", f"data.path={REPO / path}", "--samples", "2", "--entries", "3")
    assert result.exit_code == 0, result.output
