"""The command line through typer's CliRunner (and one real subprocess)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import mlp_config, write_config
from typer.testing import CliRunner

import nncli
from nncli.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_train_prints_progress_lines_and_ends_with_the_checkpoint(tmp_path, mlp_yaml):
    result = invoke("train", mlp_yaml, "--out", tmp_path / "run", "--quiet", "--set", "training.epochs=3")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "run" / "checkpoints" / "last.npz")
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert "val_acc" in epoch_lines[0] and "samples/s" in epoch_lines[0]
    assert "13,002" not in result.stdout and "parameters" in result.stdout
    params = nncli.summarize(mlp_yaml).total_params
    assert re.search(rf"parameters\W+{params:,}\b", result.stdout), result.stdout  # the summary counts this model


def test_non_terminal_output_is_plain_lines_even_without_quiet(tmp_path, mlp_yaml):
    result = invoke("train", mlp_yaml, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("epoch ") for line in result.stderr.splitlines()) == 2


def test_eval_json_and_ensemble(tmp_path, mlp_yaml):
    for name, seed in (("a", 0), ("b", 1)):
        assert invoke("train", mlp_yaml, "--out", tmp_path / name, "--seed", seed).exit_code == 0
    ckpts = [tmp_path / n / "checkpoints" / "last.npz" for n in ("a", "b")]
    result = invoke("eval", *ckpts, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["checkpoint"] for r in rows] == [str(ckpts[0]), str(ckpts[1]), "ensemble"]
    for row in rows:
        assert {"checkpoint", "split", "n", "loss", "accuracy", "confusion_matrix"} <= set(row)
        assert row["split"] == "test" and row["n"] == 60
        assert sum(map(sum, row["confusion_matrix"])) == 60
    assert 0 <= rows[2]["vote_accuracy"] <= 1
    assert all(r["majority_baseline"] == rows[0]["majority_baseline"] for r in rows)


def test_eval_tables_and_split(tmp_path, mlp_yaml):
    invoke("train", mlp_yaml, "--out", tmp_path / "a")
    result = invoke("eval", tmp_path / "a" / "checkpoints" / "best.npz", "--split", "val")
    assert result.exit_code == 0, result.output
    assert "evaluation on the val split" in result.stdout and "precision" in result.stdout


def test_eval_data_path_override(tmp_path, mlp_yaml, digits):
    invoke("train", mlp_yaml, "--out", tmp_path / "a")
    moved = digits.rename(tmp_path / "moved")
    ckpt = tmp_path / "a" / "checkpoints" / "last.npz"
    assert_usage_error(invoke("eval", ckpt), f"{ckpt} (embedded config): data.path: {digits}: no such folder")
    assert_usage_error(invoke("eval", ckpt, "--data-path", tmp_path / "gone"), f"--data-path: data.path: {tmp_path / 'gone'}: no such folder")
    assert invoke("eval", ckpt, "--data-path", moved).exit_code == 0


def test_summary_and_components():
    from conftest import REPO

    result = invoke("summary", REPO / "configs" / "mnist_mlp.yaml", "--set", f"data.path={REPO / 'datasets/mnist'}")
    assert result.exit_code == 0, result.output
    assert "13,002" in result.stdout
    listing = invoke("components", "optimizer")
    assert listing.exit_code == 0 and "adam" in listing.stdout and "learning_rate" in listing.stdout
    assert_usage_error(invoke("components", "optimiser"), "unknown component kind 'optimiser'")


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "{cfg}", "--set", "training.epoch=1"], ["--set training.epoch=1: training.epoch: unknown option 'epoch'. Did you mean 'epochs'?"]),
        (["train", "{cfg}", "--set", "optimizer.type=adma"], ["optimizer.type: unknown optimizer 'adma'. Did you mean 'adam'?"]),
        (["train", "{tmp}/nope.yaml"], ["nope.yaml: file not found"]),
        (["train", "{cfg}", "--set", "data.path={tmp}/none"], ["none: no such folder"]),
        (["train", "{cfg}", "--set", "model.layers.2.units=5"], ["loss: the last layer has 5 outputs but the data has 3 classes"]),
        (["train", "{cfg}", "--seed", "-1"], ["--seed: must be a non-negative integer"]),
        (["eval", "{tmp}/missing.npz"], ["missing.npz: no such file"]),
        (["eval", "{cfg}"], ["not an nncli checkpoint"]),
        (["summary", "{cfg}", "--set", "model.layers.0.type=dense"], ["model.layers.0: dense: missing required option 'units'"]),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, mlp_yaml, args, fragments):
    args = [a.format(cfg=mlp_yaml, tmp=tmp_path) for a in args]
    result = invoke(*args)
    assert_usage_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_config_error_line_numbers_reach_the_terminal(tmp_path, digits):
    path = write_config(tmp_path / "c.yaml", mlp_config(digits))
    text = path.read_text().replace("learning_rate: 0.01", "learning_rte: 0.01")
    path.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "learning_rte" in l)
    assert_usage_error(invoke("train", path), f"c.yaml:{line}: optimizer.learning_rte: adam: unknown option 'learning_rte'. Did you mean 'learning_rate'?")


def test_diverged_run_exits_1(tmp_path, mlp_yaml):
    result = invoke("train", mlp_yaml, "--set", "optimizer={type: sgd, learning_rate: 1e30}", "--out", tmp_path / "r")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: training diverged at epoch 1")
    assert "Traceback" not in result.output


def test_python_dash_m_matches_the_script():
    result = subprocess.run([sys.executable, "-m", "nncli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout and "compare" not in result.stderr
    script = Path(sys.executable).with_name("nncli")
    if script.exists():  # the installed console script prints the same help (only the program name differs)
        direct = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
        body = lambda text: [line for line in text.splitlines() if "Usage:" not in line]  # noqa: E731
        assert direct.returncode == 0 and body(direct.stdout) == body(result.stdout)


def test_rich_progress_on_a_terminal(tmp_path, mlp_yaml):
    import io

    from rich.console import Console

    import nncli
    from nncli.console import RichProgress, progress_for, PlainProgress

    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    nncli.train(mlp_yaml, out=tmp_path / "run", callbacks=[RichProgress(terminal)])
    shown = terminal.file.getvalue()
    assert "epoch 1/2" in shown and "epoch 2/2" in shown
    assert isinstance(progress_for(quiet=True), PlainProgress)


def test_eval_data_path_with_columns_in_another_order(tmp_path, table):
    config = {
        "name": "tab", "data": {"source": "csv", "path": str(table), "target": "label"},
        "model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "binary_cross_entropy",
        "optimizer": {"type": "gd", "learning_rate": 0.5}, "training": {"epochs": 5},
    }
    assert invoke("train", write_config(tmp_path / "tab.yaml", config), "--out", tmp_path / "r").exit_code == 0
    ckpt = tmp_path / "r" / "checkpoints" / "last.npz"
    rows = [line.split(",") for line in table.read_text().splitlines()]
    swapped = tmp_path / "swapped.csv"  # label,c,a,b
    swapped.write_text("".join(",".join(row[i] for i in (3, 2, 0, 1)) + "\n" for row in rows))
    same = invoke("eval", ckpt, "--json")
    moved = invoke("eval", ckpt, "--json", "--data-path", swapped)
    assert moved.exit_code == 0, moved.output
    drop = lambda text: {k: v for k, v in json.loads(text).items() if k != "checkpoint"}
    assert drop(moved.stdout) == drop(same.stdout)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(table.read_text().replace("a,b,c,label", "a,b,see,label", 1))
    assert_usage_error(invoke("eval", ckpt, "--data-path", renamed), "renamed.csv: no column named 'c'")


def _compare_config(table, **data):
    return {
        "name": "table", "data": {"source": "csv", "path": str(table), "test_split": 0.25, "validation_split": 0.0, **data},
        "model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "binary_cross_entropy", "optimizer": "newton",
        "training": {"dtype": "float64"}, "compare": {"max_iterations": 5, "optimizers": ["gd", "newton"]},
    }


def test_compare_optimizers_refuses_a_bad_out_before_running_anything(tmp_path, table, monkeypatch):
    import nncli

    monkeypatch.setattr("nncli.plots.plot_curves", lambda runs, path, title="": path.write_bytes(b"skipped"))
    finished = []
    with pytest.raises(nncli.NncliError, match="cannot write"):
        nncli.compare_optimizers(_compare_config(table), out=table / "o", on_run_end=finished.append)
    assert finished == []  # refused before the work, not after it
    result = invoke("compare-optimizers", write_config(tmp_path / "c.yaml", _compare_config(table)), "--out", table / "o")
    assert_usage_error(result, "cannot write")
    # a comparison that fails on its data leaves no folder behind; one that works fills the reserved one
    assert_usage_error(invoke("compare-optimizers", write_config(tmp_path / "d.yaml", _compare_config(tmp_path / "none.csv")),
                              "--out", tmp_path / "o"), "none.csv: no such file")
    assert not (tmp_path / "o").exists()
    assert invoke("compare-optimizers", tmp_path / "c.yaml", "--out", tmp_path / "o").exit_code == 0
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"config.yaml", "summary.csv", "runs.csv", "curves.csv", "curves.png"}


def test_eval_on_data_of_another_shape(tmp_path, mlp_yaml):
    from helpers import make_digits

    invoke("train", mlp_yaml, "--out", tmp_path / "a")
    bigger = make_digits(tmp_path / "bigger", n_train=30, n_test=9, size=10)
    ckpt = tmp_path / "a" / "checkpoints" / "last.npz"
    assert_usage_error(invoke("eval", ckpt, "--data-path", bigger), f"{ckpt}: trained on inputs of shape (8, 8, 1), this data has (10, 10, 1)")


def test_plot_to_a_missing_folder_is_a_usage_error(tmp_path, mlp_yaml):
    invoke("train", mlp_yaml, "--out", tmp_path / "a")
    target = tmp_path / "missing" / "dir" / "p.png"
    assert_usage_error(invoke("plot", tmp_path / "a", "--out", target), f"{target}: cannot write (no such folder)")
    assert not (tmp_path / "missing").exists()


def test_unique_path_reserves_each_name_once(tmp_path):
    from nncli.files import unique_path

    (tmp_path / "p.png").write_bytes(b"earlier")
    names = [unique_path(tmp_path / "p.png") for _ in range(3)]
    assert [n.name for n in names] == ["p-2.png", "p-3.png", "p-4.png"]  # each reserved, so never handed out twice
    assert (tmp_path / "p.png").read_bytes() == b"earlier"


def test_a_failed_plot_leaves_no_reserved_file(tmp_path, mlp_yaml, monkeypatch):
    import nncli

    invoke("train", mlp_yaml, "--out", tmp_path / "a")

    def broken(*args):
        raise RuntimeError("matplotlib broke")

    monkeypatch.setattr("nncli.plots.plot_history", broken)
    with pytest.raises(RuntimeError):
        nncli.plot_runs([tmp_path / "a"], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_stop_reasons_are_shown_in_words_with_their_counts():
    from nncli.console import _stop

    assert _stop("gradient_tolerance ×3, max_iterations ×2") == "max|∇f| ≤ tol ×3, iteration budget ×2"
    assert _stop("change_tolerance") == "|Δf| ≤ tol" and _stop("something new ×1") == "something new ×1"


@pytest.mark.parametrize("kind", ["losses", "layers", "activations", "schedules", "sections", "Optimizers", "data"])
def test_components_accepts_plural_kinds(kind):
    result = invoke("components", kind)
    assert result.exit_code == 0, result.output


def test_components_of_an_unknown_plural_suggests_the_kind():
    assert_usage_error(invoke("components", "lossess"), "unknown component kind 'lossess'. Did you mean 'loss'?")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_train_with_too_few_seeds_is_one_error_line(tmp_path, mlp_yaml, value):
    assert_usage_error(invoke("train", mlp_yaml, "--seeds", value), f"--seeds: must be at least 1, got {value}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "damage,fragment",
    [
        (lambda text: text.replace("\n2,", "\ntwo,", 1), "history.csv:3: column 'epoch': 'two' is not a number"),
        (lambda text: text + "3,1,1,1,1,1,1,1\n", "history.csv:4: more cells than the header's 7 columns"),
        (lambda text: text.encode().replace(b"epoch", b"\xe9poch"), "history.csv: not readable as CSV"),
    ],
    ids=["bad value", "extra cells", "not utf-8"],
)
def test_plot_of_a_damaged_history_names_the_line_and_column(tmp_path, mlp_yaml, damage, fragment):
    invoke("train", mlp_yaml, "--out", tmp_path / "a")
    history = tmp_path / "a" / "history.csv"
    damaged = damage(history.read_text())
    history.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
    assert_usage_error(invoke("plot", tmp_path / "a", "--out", tmp_path / "p.png"), f"{history}", fragment)
    assert not (tmp_path / "p.png").exists()
