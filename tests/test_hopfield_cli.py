"""The hopfield model kind through the command line: train (store), eval (probe), recall, capacity, summary,
its checkpoints and its one-line refusals. The dynamics themselves are tested in test_hopfield.py."""

import csv
import json

import numpy as np
import pytest
from helpers import cli, make_digits, one_error_line, write_config

from nncli.checkpoint import read_checkpoint


def random_config(tmp_path, **model):
    config = {"name": "mem", "seed": 0, "data": {"source": "random_patterns", "neurons": 64, "patterns": 5},
              "model": {"type": "hopfield", **model}}
    return write_config(tmp_path / "mem.yaml", config)


@pytest.fixture
def stored(tmp_path):
    """A trained (stored) Hopfield checkpoint of 5 random patterns of 64 neurons."""
    result = cli("train", random_config(tmp_path), "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return tmp_path / "run" / "checkpoints" / "last.npz"


def test_train_stores_the_patterns_and_reports_the_load_and_capacity(tmp_path, stored):
    folder = stored.parent.parent
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "config.yaml", "history.csv", "storage.json"]
    storage = json.loads((folder / "storage.json").read_text())
    assert storage["neurons N"] == 64 and storage["patterns P"] == 5 and storage["load P/N"] == pytest.approx(5 / 64)
    assert storage["capacity (patterns)"]["0.138·N"] == pytest.approx(0.138 * 64)
    checkpoint = read_checkpoint(stored)
    W = checkpoint.arrays["param/weights"]
    x = checkpoint.experiment().data.load(checkpoint.experiment().seeds("data")).train.x
    expected = x.T.astype(np.float64) @ x / 64
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(W, expected, atol=1e-12)  # the Hebbian rule, zero diagonal
    (row,) = list(csv.DictReader(open(folder / "history.csv")))
    assert float(row["train_accuracy"]) == 1.0  # 5 patterns in 64 neurons: all fixed points


def test_train_prints_n_p_load_and_capacity(tmp_path):
    result = cli("train", random_config(tmp_path), "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 0, result.output
    for fragment in ("neurons N", "64", "patterns P", "load P/N", "0.07812", "capacity", "0.138·N = 8.832"):
        assert fragment in result.stdout, fragment


def test_eval_probes_the_stored_patterns(stored):
    result = cli("eval", stored, "--json", "--noise", "0.1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert set(report) >= {"checkpoint", "split", "n", "accuracy", "overlap", "bit_error_rate", "outcomes"}
    assert "confusion_matrix" not in report
    assert report["split"] == "train" and report["n"] == 5 and report["accuracy"] == 1.0 and report["overlap"] == 1.0
    assert report["outcomes"]["recalled"] == 5 and sum(report["outcomes"].values()) == 5
    many = json.loads(cli("eval", stored, "--json", "--probes", "12", "--mask", "lower_half").stdout.splitlines()[0])
    assert many["n"] == 12 and sum(many["outcomes"].values()) == 12
    table = cli("eval", stored, "--noise", "0.1")
    assert table.exit_code == 0 and "exact recall" in table.stdout and "10% of bits flipped" in table.stdout


def test_eval_options_are_checked_in_one_line(stored, tmp_path, mlp_yaml):
    one_error_line(cli("eval", stored, "--noise", "2"), "--noise", "[0, 1]")
    one_error_line(cli("eval", stored, "--noise", "0.1", "--mask", "lower_half"), "--mask", "not both")
    one_error_line(cli("eval", stored, "--mask", "upper"), "--mask", "lower_half")
    one_error_line(cli("eval", stored, "--split", "test"), "--split", "stored")
    trained = cli("train", mlp_yaml, "--out", tmp_path / "mlp", "--quiet")
    classifier = tmp_path / "mlp" / "checkpoints" / "last.npz"
    one_error_line(cli("eval", classifier, "--noise", "0.1"), "--noise", "Hopfield")
    one_error_line(cli("eval", classifier, stored), "Hopfield", "apart")
    assert trained.exit_code == 0


def test_one_shot_storage_refuses_epochs_resume_weights_seeds_and_compare(tmp_path, stored):
    config = random_config(tmp_path)
    one_error_line(cli("train", config, "--resume", stored), "--resume", "one shot")
    one_error_line(cli("train", config, "--weights", stored), "--weights", "one shot")
    one_error_line(cli("train", config, "--seeds", "3"), "--seeds", "one shot")
    one_error_line(cli("compare-optimizers", config), "model.type", "hopfield is not trained by gradient descent")
    for key, value, where in (("optimizer", "adam", "optimizer"), ("training", {"epochs": 3}, "training.epochs")):
        text = json.loads(json.dumps({"name": "m", "data": {"source": "random_patterns", "neurons": 8, "patterns": 2},
                                      "model": {"type": "hopfield"}, key: value}))
        one_error_line(cli("train", write_config(tmp_path / "bad.yaml", text), "--out", tmp_path / "never"), f"{where}:", "hopfield")
    assert not (tmp_path / "never").exists()


def test_digits_must_be_binarised_and_all_stored(tmp_path):
    digits = make_digits(tmp_path / "digits")
    config = {"name": "d", "data": {"source": "idx", "path": str(digits), "validation_split": 0.0}, "model": {"type": "hopfield"}}
    one_error_line(cli("train", write_config(tmp_path / "a.yaml", config), "--out", tmp_path / "a"), "bipolar", "data.binarize")
    config["data"].update(binarize=0.5, validation_split=0.2)
    one_error_line(cli("train", write_config(tmp_path / "b.yaml", config), "--out", tmp_path / "b"), "data.validation_split", "every training pattern")
    config["data"].update(validation_split=0.0, limit=12)
    result = cli("train", write_config(tmp_path / "c.yaml", config), "--out", tmp_path / "c", "--quiet")
    assert result.exit_code == 0, result.output
    meta = read_checkpoint(tmp_path / "c" / "checkpoints" / "last.npz").meta
    assert meta["preprocessing"]["binarize"] == 0.5 and meta["input_shape"] == [8, 8, 1]


def test_modern_rule_keeps_the_patterns_and_its_checkpoint_rebuilds(tmp_path):
    result = cli("train", random_config(tmp_path, rule="modern", beta=2.0), "--out", tmp_path / "m", "--quiet")
    assert result.exit_code == 0, result.output
    last = tmp_path / "m" / "checkpoints" / "last.npz"
    checkpoint = read_checkpoint(last)
    assert checkpoint.arrays["param/patterns"].shape == (5, 64)
    model = checkpoint.build_model()
    np.testing.assert_array_equal(model.patterns, checkpoint.arrays["param/patterns"])
    report = json.loads(cli("eval", last, "--json", "--mask", "lower_half").stdout.splitlines()[0])
    assert report["accuracy"] == 1.0


def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, stored):
    from helpers import rewrite_checkpoint

    def poison(arrays):
        arrays["param/weights"] = arrays["param/weights"].copy()
        arrays["param/weights"][0, 1] = np.nan

    bad = rewrite_checkpoint(stored, tmp_path / "bad.npz", change_arrays=poison)
    one_error_line(cli("eval", bad), "bad.npz", "param/weights", "non-finite")
    resized = rewrite_checkpoint(stored, tmp_path / "small.npz", change_arrays=lambda a: a.update({"param/weights": np.zeros((3, 3))}))
    one_error_line(cli("eval", resized), "small.npz", "param/weights", "(3, 3)")


def test_recall_follows_one_probe_and_writes_its_files(tmp_path, stored):
    result = cli("recall", stored, "--index", "2", "--noise", "0.2", "--out", tmp_path / "rec")
    assert result.exit_code == 0, result.output
    assert "recalled" in result.stdout
    energy = list(csv.DictReader(open(tmp_path / "rec" / "energy.csv")))
    values = [float(r["energy"]) for r in energy]
    assert len(values) >= 2 and all(b <= a + 1e-12 for a, b in zip(values, values[1:]))  # async: never rises
    overlaps = list(csv.DictReader(open(tmp_path / "rec" / "overlaps.csv")))
    assert len(overlaps) == 5 * len(values)  # every stored pattern, every sweep
    last = [r for r in overlaps if int(r["sweep"]) == len(values) - 1 and r["pattern"] == "2"]
    assert float(last[0]["overlap"]) == 1.0
    assert (tmp_path / "rec" / "states.png").stat().st_size > 0
    one_error_line(cli("recall", stored, "--index", "5"), "--index", "0 … 4")
    one_error_line(cli("recall", stored, "--update", "both"), "--update", "async or sync")


def test_capacity_writes_the_curve_and_refuses_bad_counts(tmp_path):
    config = random_config(tmp_path)
    result = cli("capacity", config, "--patterns", "4:12:4", "--trials", "2", "--rules", "hebbian,storkey", "--out", tmp_path / "cap", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["neurons"] == 64 and [(r["rule"], r["patterns"]) for r in data["rows"]] == [
        (rule, p) for rule in ("hebbian", "storkey") for p in (4, 8, 12)
    ]
    rows = list(csv.DictReader(open(tmp_path / "cap" / "capacity.csv")))
    assert len(rows) == 6 and float(rows[0]["fixed_point_fraction"]) >= float(rows[2]["fixed_point_fraction"])
    assert (tmp_path / "cap" / "capacity.png").stat().st_size > 0
    one_error_line(cli("capacity", config, "--patterns", "10:x"), "--patterns", "START:STOP")
    one_error_line(cli("capacity", config, "--rules", "hebian"), "--rules", "Did you mean 'hebbian'")


def test_summary_and_components_describe_the_kind(tmp_path):
    result = cli("summary", random_config(tmp_path, rule="storkey"))
    assert result.exit_code == 0, result.output
    assert "hopfield(storkey, async, zero diagonal)" in result.stdout and "4,096" in result.stdout
    listing = cli("components", "model")
    assert "hopfield" in listing.stdout


def test_too_few_neurons_and_update_on_the_modern_rule_are_one_line(tmp_path):
    config = write_config(tmp_path / "one.yaml", {"name": "one", "data": {"source": "random_patterns", "neurons": 1, "patterns": 2},
                                                  "model": {"type": "hopfield"}})
    one_error_line(cli("train", config, "--out", tmp_path / "t"), "data:", "at least 2 neurons")
    one_error_line(cli("capacity", config, "--out", tmp_path / "c"), "data:", "at least 2 neurons")
    assert not (tmp_path / "t").exists() and not (tmp_path / "c").exists()
    modern = cli("train", random_config(tmp_path, rule="modern"), "--out", tmp_path / "m", "--quiet")
    assert modern.exit_code == 0, modern.output
    one_error_line(cli("recall", tmp_path / "m" / "checkpoints" / "last.npz", "--update", "sync"), "--update", "modern")
