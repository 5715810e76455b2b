"""compare-optimizers: the command, its files and JSON, its errors, and the comparison's semantics."""

import csv
import json
from pathlib import Path
from unittest.mock import patch

import pytest
from helpers import write_config
from typer.testing import CliRunner

import nncli
from nncli import api
from nncli.cli import app
from nncli.config import dump_yaml
from nncli.experiment import load_experiment

REPO = Path(__file__).resolve().parent.parent
CONTRACT_SUMMARY = ["optimizer", "final_loss", "train_accuracy", "test_accuracy", "iterations", "seconds", "converged"]
PIMA_OPTIMIZERS = ["gd", "sgd", "momentum", "adagrad", "adadelta", "rmsprop", "adam", "newton", "bfgs", "dfp", "lbfgs", "cg"]
SECOND_ORDER = ["newton", "bfgs", "dfp", "lbfgs", "cg"]


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch, request):
    """curves.png costs more than a tiny comparison; tests that check it opt back in with `plots`."""
    if "plots" not in request.fixturenames:
        monkeypatch.setattr("nncli.plots.plot_curves", lambda runs, path, title="": path.write_bytes(b"skipped"))


@pytest.fixture
def plots():
    """Marker fixture: draw the real curves.png."""


def tiny(table: Path, optimizers=None, **compare) -> dict:
    """Logistic regression on the tiny CSV, with a short comparison."""
    return {
        "name": "table",
        "seed": 0,
        "data": {"source": "csv", "path": str(table), "test_split": 0.25, "validation_split": 0.0},
        "model": {"layers": [{"type": "dense", "units": 1}]},
        "loss": "binary_cross_entropy",
        "optimizer": "newton",
        "training": {"dtype": "float64", "batch_size": 16},
        "compare": {
            "max_iterations": 40,
            "optimizers": optimizers if optimizers is not None else [{"type": "gd", "learning_rate": 1.0}, {"type": "sgd", "learning_rate": 0.1}, "newton", "bfgs", "cg"],
            **compare,
        },
    }


def invoke(*args):
    return CliRunner().invoke(app, ["compare-optimizers", *map(str, args)])


def read_csv(path: Path):
    with path.open() as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


# -- the acceptance run on Pima ------------------------------------------------------------
def test_pima_comparison_end_to_end(monkeypatch, tmp_path, plots):
    monkeypatch.chdir(REPO)
    out = tmp_path / "pima"
    result = invoke("configs/pima.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    for name in ("summary.csv", "curves.csv", "curves.png", "runs.csv", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    header, rows = read_csv(out / "summary.csv")
    assert header[:7] == CONTRACT_SUMMARY
    assert [r["optimizer"] for r in rows] == PIMA_OPTIMIZERS
    by_name = {r["optimizer"]: r for r in rows}
    assert int(by_name["newton"]["iterations"]) <= 15
    finals = [float(by_name[n]["final_loss"]) for n in SECOND_ORDER]
    assert max(finals) - min(finals) <= 1e-6
    assert all(by_name[n]["converged"] == "true" for n in SECOND_ORDER)
    assert float(by_name["newton"]["test_accuracy"]) >= 0.74
    assert all(0.5 < float(r["train_accuracy"]) <= 1 for r in rows)

    curve_header, curve = read_csv(out / "curves.csv")
    assert curve_header[:3] == ["optimizer", "iteration", "loss"]
    starts = {r["optimizer"]: float(r["loss"]) for r in curve if r["iteration"] == "0"}
    assert set(starts) == set(PIMA_OPTIMIZERS) and len(set(starts.values())) == 1  # the same initial weights
    for name in PIMA_OPTIMIZERS:  # one curve point per iteration, 0..iterations
        points = [int(r["iteration"]) for r in curve if r["optimizer"] == name]
        assert points == list(range(int(by_name[name]["iterations"]) + 1))

    for name in PIMA_OPTIMIZERS:
        assert name in result.stdout
    assert "majority-class baseline (always predict 0)" in result.stdout
    assert "second-order methods (newton, bfgs, dfp, lbfgs, cg) agree on the final loss" in result.stdout


def test_json_prints_only_the_summary_rows(tmp_path, table):
    config = write_config(tmp_path / "c.yaml", tiny(table))
    result = invoke(config, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # the whole of stdout is one JSON list
    assert [r["optimizer"] for r in rows] == ["gd", "sgd", "newton", "bfgs", "cg"]
    assert all(list(r)[:7] == CONTRACT_SUMMARY for r in rows)
    assert all(isinstance(r["converged"], bool) and isinstance(r["iterations"], int) for r in rows)
    _, csv_rows = read_csv(tmp_path / "out" / "summary.csv")
    assert [float(r["final_loss"]) for r in csv_rows] == [r["final_loss"] for r in rows]  # full precision both ways
    assert "newton" in result.stderr  # progress goes to stderr


def test_every_optimizer_starts_from_the_same_weights_and_runs_on_its_own_state(tmp_path, table):
    result = nncli.compare_optimizers(tiny(table, optimizers=["bfgs", "bfgs", "newton"]), out=tmp_path / "o")
    runs = result.comparison.runs
    assert [r.optimizer for r in runs] == ["bfgs", "bfgs-2", "newton"]
    assert runs[0].losses == runs[1].losses  # a fresh optimizer each time: identical runs
    assert len({r.losses[0] for r in runs}) == 1


def test_mini_batch_methods_count_updates_and_report_epochs(tmp_path, table):
    config = tiny(table, optimizers=[{"type": "sgd", "learning_rate": 0.05}, {"type": "gd", "learning_rate": 0.5}], max_iterations=30, batch_size=10)
    result = nncli.compare_optimizers(config, out=tmp_path / "o")
    sgd, gd = result.rows
    n_train = result.comparison.n_train
    assert (sgd.iterations, sgd.gradient_evaluations, sgd.stop_reason) == (30, 30, "max_iterations")
    assert sgd.epochs == pytest.approx(30 * 10 / n_train)
    # gd, like every first-order method, counts the gradients its 30 updates used (each at the point it steps
    # from); the full objective after each update feeds only the curve and the stopping rule
    assert (gd.iterations, gd.gradient_evaluations) == (30, 30) and gd.epochs == pytest.approx(30)
    assert not sgd.converged


def test_stopping_rules_and_their_precedence(tmp_path, table):
    config = tiny(
        table,
        optimizers=[{"type": "gd", "learning_rate": 1.0}, {"type": "bfgs"}, {"type": "cg", "tolerance_grad": 1e-9, "tolerance_change": 0.0}],
        max_iterations=2000,
        tolerance_grad=1e-2,
        tolerance_change=0.0,
    )
    experiment = load_experiment(config)
    specs = {run.label: run.spec for run in experiment.compare.runs()}
    assert (specs["bfgs"]["tolerance_grad"], specs["bfgs"]["tolerance_change"]) == (1e-2, 0.0)  # the section's
    assert specs["cg"]["tolerance_grad"] == 1e-9  # its own wins
    assert "tolerance_grad" not in specs["gd"]  # first-order methods have no such option: the driver applies it
    result = nncli.compare_optimizers(config, out=tmp_path / "o")
    by = {r.optimizer: r for r in result.comparison.runs}
    for name in ("gd", "bfgs", "cg"):
        assert by[name].stop_reason == "gradient_tolerance" and by[name].converged
    assert by["bfgs"].final_loss - by["cg"].final_loss > 0  # stopped earlier, at the looser tolerance
    config["compare"]["tolerance_grad"], config["compare"]["tolerance_change"] = 0.0, 1e-4
    result = nncli.compare_optimizers(config, out=tmp_path / "o2")
    assert {r.optimizer: r.stop_reason for r in result.comparison.runs}["gd"] == "change_tolerance"


def test_a_start_within_the_gradient_tolerance_is_iteration_zero(tmp_path, table):
    # minimisers apply the rule themselves (a step with no evaluations), first-order methods through the driver
    config = tiny(table, optimizers=[{"type": "gd", "learning_rate": 1.0}, {"type": "sgd", "learning_rate": 0.1}, "newton", "lbfgs"], tolerance_grad=1e3)
    result = nncli.compare_optimizers(config, out=tmp_path / "o")
    # the gradient at the start is the minimisers' own; a first-order method (gd too) has taken no update
    evaluations = {"gd": 0, "sgd": 0, "newton": 1, "lbfgs": 1}
    for run in result.comparison.runs:
        assert (run.iterations, run.stop_reason, run.converged) == (0, "gradient_tolerance", True), run.optimizer
        assert run.function_evaluations == run.gradient_evaluations == evaluations[run.optimizer], run.optimizer
        assert len(run.times) == 1


@pytest.mark.filterwarnings("error::RuntimeWarning")  # detected and reported, not warned about
def test_mini_batch_methods_apply_the_change_rule_per_epoch(tmp_path, table):
    # a loose change rule: any change passes; a mini-batch method still runs to the end of its first epoch
    config = tiny(table, optimizers=[{"type": "sgd", "learning_rate": 0.05}, {"type": "gd", "learning_rate": 0.5}], batch_size=16, tolerance_change=1.0)
    result = nncli.compare_optimizers(config, out=tmp_path / "o")
    sgd, gd = result.rows
    updates_per_epoch = -(-result.comparison.n_train // 16)
    assert (sgd.iterations, sgd.stop_reason) == (updates_per_epoch, "change_tolerance")
    assert sgd.epochs == pytest.approx(1.0)
    assert (gd.iterations, gd.stop_reason) == (1, "change_tolerance")


def test_a_diverging_optimizer_is_reported_not_fatal(tmp_path, table):
    config = tiny(table, optimizers=[{"type": "gd", "learning_rate": 1e6}, "newton"], max_iterations=200)
    config["loss"], config["optimizer"] = "mse", "newton"
    result = invoke(write_config(tmp_path / "c.yaml", config), "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["optimizer"]: r for r in json.loads(result.stdout)}
    assert rows["gd"]["stop_reason"] == "diverged" and rows["gd"]["converged"] is False
    assert rows["newton"]["converged"] is True


def test_seeds_report_mean_and_sd(tmp_path, table):
    result = invoke(write_config(tmp_path / "c.yaml", tiny(table, optimizers=["newton", "lbfgs"])), "--out", tmp_path / "o", "--seeds", "3")
    assert result.exit_code == 0, result.output
    header, rows = read_csv(tmp_path / "o" / "summary.csv")
    assert [r["seeds"] for r in rows] == ["3", "3"]
    assert all(r["final_loss_sd"] != "" and float(r["final_loss_sd"]) > 0 for r in rows)  # different splits
    _, runs = read_csv(tmp_path / "o" / "runs.csv")
    assert sorted((r["optimizer"], r["seed"]) for r in runs) == sorted((o, s) for o in ("newton", "lbfgs") for s in ("0", "1", "2"))
    mean = sum(float(r["final_loss"]) for r in runs if r["optimizer"] == "newton") / 3
    assert float(rows[0]["final_loss"]) == pytest.approx(mean, rel=1e-12)
    _, curve = read_csv(tmp_path / "o" / "curves.csv")
    assert {r["seed"] for r in curve} == {"0", "1", "2"}
    assert "±" in result.stdout and "mean ± sd over 3 seeds" in result.stdout


def test_default_out_folder_never_overwrites(tmp_path, table):
    config = write_config(tmp_path / "c.yaml", tiny(table, optimizers=["newton"]))
    first, second = invoke(config), invoke(config)
    assert first.exit_code == second.exit_code == 0
    assert (tmp_path / "runs" / "table-compare" / "summary.csv").is_file()
    assert (tmp_path / "runs" / "table-compare-2" / "summary.csv").is_file()


def test_resolved_config_is_written_and_idempotent(tmp_path, table):
    result = nncli.compare_optimizers(tiny(table, optimizers=["adam", "adam", {"type": "cg", "label": "PR+"}]), out=tmp_path / "o")
    resolved = result.experiment.resolved()
    assert [s.get("label", s["type"]) for s in resolved["compare"]["optimizers"]] == ["adam", "adam-2", "PR+"]
    again = load_experiment(resolved).resolved()
    assert again == resolved
    assert (tmp_path / "o" / "config.yaml").read_text() == dump_yaml(resolved)


def test_cli_passes_its_arguments_to_the_api(tmp_path):
    with patch.object(api, "compare_optimizers", side_effect=nncli.NncliError("stop here")) as called:
        result = invoke("c.yaml", "--set", "compare.max_iterations=5", "--out", tmp_path / "o", "--seeds", "4")
    assert result.exit_code == 1 and result.stderr.startswith("error: stop here")
    args, kwargs = called.call_args
    assert args == (Path("c.yaml"), ["compare.max_iterations=5"])
    assert kwargs["out"] == tmp_path / "o" and kwargs["seeds"] == 4


# -- errors: exit 2 and one located line --------------------------------------------------------
COMPARE_YAML = """\
name: table
data: {{source: csv, path: {table}, test_split: 0.25, validation_split: 0.0}}
model:
  layers:
    - {{type: dense, units: {units}{activation}}}
    - {{type: dense, units: 1}}
loss: binary_cross_entropy
optimizer: newton
compare:
  max_iterations: 10
  optimizers:
    - {{type: gd, learning_rate: 1.0}}
    - {optimizer_2}
    - {{type: cg}}
"""


def compare_file(tmp_path, table, optimizer_2="{type: newton}", units=4, activation=", activation: tanh", extra=""):
    path = tmp_path / "bad.yaml"
    path.write_text(COMPARE_YAML.format(table=table, optimizer_2=optimizer_2, units=units, activation=activation) + extra)
    return path


def assert_one_error_line(result, starts):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "optimizer_2,expected",
    [
        ("{type: adma}", "compare.optimizers.1.type: unknown optimizer 'adma'. Did you mean 'adam'?"),
        ("{type: adam, learning_rte: 0.1}", "compare.optimizers.1.learning_rte: adam: unknown option 'learning_rte'. Did you mean 'learning_rate'?"),
        ("{type: lbfgs, history_size: 0}", "compare.optimizers.1.history_size: must be >= 1, got 0"),
        ("{type: bfgs, c1: 0.5, c2: 0.1}", "compare.optimizers.1: bfgs: the line search needs c1 < c2"),
        ("{type: newton, label: cg}", "compare.optimizers.2.label: label 'cg' is used twice"),
    ],
)
def test_bad_optimizer_specs_are_located_errors(tmp_path, table, optimizer_2, expected):
    path = compare_file(tmp_path, table, optimizer_2=optimizer_2)
    if "label: cg" in optimizer_2:  # the clash is reported at the second use
        path.write_text(path.read_text().replace("- {type: cg}", "- {type: cg, label: cg}"))
    line = assert_one_error_line(invoke(path, "--out", tmp_path / "o"), f"error: {path}:")
    where = "14" if "label" in optimizer_2 else "13"
    assert line == f"error: {path}:{where}: {expected}" or line.startswith(f"error: {path}:{where}: {expected}")
    assert not (tmp_path / "o").exists()


def test_a_second_order_method_on_a_model_too_large_for_it(tmp_path, table):
    path = compare_file(tmp_path, table, optimizer_2="{type: bfgs}", units=2000)
    line = assert_one_error_line(invoke(path, "--out", tmp_path / "o"), f"error: {path}:13: compare.optimizers.1: bfgs needs a 10,001×10,001")
    assert "(800 MB)" in line and "max_parameters=5,000" in line and "cg or lbfgs" in line
    assert not (tmp_path / "o").exists()


def test_the_same_through_set(tmp_path, table):
    path = compare_file(tmp_path, table)
    result = invoke(path, "--set", "compare.optimizers.1.type=dfp", "--set", "model.layers.0.units=2000")
    assert_one_error_line(result, f"error: {path}:13: compare.optimizers.1: dfp needs a 10,001×10,001")


@pytest.mark.parametrize(
    "extra,expected",
    [
        ("  max_iteration: 5\n", "compare.max_iteration: unknown option 'max_iteration'. Did you mean 'max_iterations'?"),
        ("  tolerance_grad: -1\n", "compare.tolerance_grad: must be >= 0, got -1"),
    ],
)
def test_bad_compare_settings(tmp_path, table, extra, expected):
    path = compare_file(tmp_path, table, extra=extra)
    assert_one_error_line(invoke(path), f"error: {path}:15: {expected}")


def test_a_config_without_a_compare_section(tmp_path, table):
    config = tiny(table)
    del config["compare"]
    path = write_config(tmp_path / "c.yaml", config)
    assert_one_error_line(invoke(path), f"error: {path}: compare: missing: add a compare: section")


def test_empty_optimizer_list(tmp_path, table):
    path = write_config(tmp_path / "c.yaml", tiny(table, optimizers=[]))
    line = assert_one_error_line(invoke(path), f"error: {path}:")
    assert "compare.optimizers: list at least one optimizer" in line


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_seeds(tmp_path, table, value):
    path = write_config(tmp_path / "c.yaml", tiny(table))
    assert_one_error_line(invoke(path, "--seeds", value), f"error: --seeds: must be a positive integer, got {value}")
